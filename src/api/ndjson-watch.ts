// `watch=true` of the observability routes: one JSON object per line (`application/x-ndjson`),
// first what is stored after the cursor, then what arrives, woken by this server's writers and
// polled for other writers' rows; a heartbeat when nothing happens; ends when the client goes.
// Rows are read by cursor (`seq > cursor`), and writers commit in cursor order, so a watch that
// resumes from the last cursor it saw gets every later row once.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { limits } from '../core/limits.js'
import { openStream } from './stream-write.js'

export interface WatchSource<T> {
  /** Rows after `after`, oldest first, at most one page. */
  fetch(after: number): Promise<T[]>
  cursorOf(row: T): number
  /** The line for one row. */
  line(row: T): Record<string, unknown>
  /** Calls `wake` when this server may have written new rows; returns the unsubscribe. */
  subscribe(wake: () => void): () => void
  pageMax: number
}

export async function serveWatch<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  source: WatchSource<T>,
  after: number,
): Promise<void> {
  const stream = openStream(request, reply, 'application/x-ndjson; charset=utf-8')
  let wake: (() => void) | undefined
  const rouse = (): void => {
    const w = wake
    wake = undefined
    w?.()
  }
  stream.onClose(rouse)
  const unsubscribe = source.subscribe(rouse)
  const write = (obj: Record<string, unknown>): Promise<void> => stream.write(`${JSON.stringify(obj)}\n`)
  let cursor = after
  let lastSent = Date.now()
  try {
    let caughtUp = false
    while (!stream.closed) {
      let rows: T[]
      try {
        rows = await source.fetch(cursor)
      } catch (err) {
        await write({ type: 'error', error: (err as Error).message, time: new Date().toISOString() })
        break
      }
      for (const row of rows) {
        cursor = source.cursorOf(row)
        await write({ ...source.line(row), cursor: String(cursor) })
      }
      if (rows.length > 0) lastSent = Date.now()
      if (rows.length >= source.pageMax) continue // more is stored: no waiting
      if (!caughtUp) {
        // The backlog is out: everything up to `cursor` has been seen.
        caughtUp = true
        await write({
          type: 'watermark',
          watermark: String(cursor),
          cursor: String(cursor),
          time: new Date().toISOString(),
        })
      }
      const untilHeartbeat = Math.max(0, lastSent + limits.watchHeartbeatMs - Date.now())
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(limits.watchPollMs, untilHeartbeat))
        wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
      wake = undefined
      if (!stream.closed && Date.now() - lastSent >= limits.watchHeartbeatMs) {
        await write({ type: 'heartbeat', cursor: String(cursor), time: new Date().toISOString() })
        lastSent = Date.now()
      }
    }
  } finally {
    unsubscribe()
    stream.end()
  }
}
