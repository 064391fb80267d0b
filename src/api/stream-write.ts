// Long-lived responses (the NDJSON watches, the sessions' SSE stream): the reply is taken from
// fastify, headed once, and written with backpressure — a write the socket cannot take at once
// waits for `drain` (or for the client to go), so a slow reader slows the stream instead of
// growing the server's buffers.
import type { FastifyReply, FastifyRequest } from 'fastify'

export interface OpenStream {
  /** The client went away (writes are dropped from then on). */
  readonly closed: boolean
  /** Writes `text`; resolves once the socket took it or closed. */
  write(text: string): Promise<void>
  /** Called once when the client goes away. */
  onClose(listener: () => void): void
  end(): void
}

export function openStream(request: FastifyRequest, reply: FastifyReply, contentType: string): OpenStream {
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, {
    'content-type': contentType,
    'cache-control': 'no-cache',
    'x-request-id': String(request.id),
  })
  let closed = false
  const listeners: Array<() => void> = []
  res.once('close', () => {
    closed = true
    for (const l of listeners) l()
  })
  return {
    get closed() {
      return closed
    },
    async write(text) {
      if (closed || res.write(text)) return
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done)
          res.off('close', done)
          resolve()
        }
        res.on('drain', done)
        res.on('close', done)
      })
    },
    onClose(listener) {
      listeners.push(listener)
    },
    end() {
      res.end()
    },
  }
}
