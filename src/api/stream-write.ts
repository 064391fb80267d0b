// Writing to a long-lived response (NDJSON and SSE streams) with backpressure: a write the socket
// cannot take at once waits for `drain` (or for the client to go), so a slow reader slows the
// stream instead of growing the server's buffers.
import type { ServerResponse } from 'node:http'

/** Writes `text`; resolves once the socket took it or closed. */
export async function writeDrained(res: ServerResponse, text: string): Promise<void> {
  if (res.write(text)) return
  await new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}
