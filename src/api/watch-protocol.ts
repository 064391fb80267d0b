// The file-watch WebSocket, shared by the volume and sandbox watch routes so the two speak exactly
// one protocol: client messages {"action":"subscribe","path","recursive"} and
// {"action":"unsubscribe","watch_id"}; server frames `subscribed`, `event`, `unsubscribed` and
// `error`. A connection subscribes within watchSubscribeTimeoutMs, holds at most
// watchSubscriptionsMax subscriptions, and is dropped when it falls watchBufferedBytesMax behind.
import type { WebSocket } from 'ws'
import { crashOnBug } from '../core/assert.js'
import { isS0Error, S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'

export function sendFrame(ws: WebSocket, frame: Record<string, unknown>): void {
  if (ws.readyState !== ws.OPEN) return
  if (ws.bufferedAmount > limits.watchBufferedBytesMax) return ws.close(1013, 'client too slow')
  ws.send(JSON.stringify(frame))
}

/** One subscription's source of events, as the domain gives it. */
export interface WatchSource {
  close(): void
}

/** Opens a watch of `path`; `emit` sends one event (the source calls it). */
export type OpenWatch = (
  path: string,
  recursive: boolean,
  emit: (event: string, path: string) => void,
) => Promise<WatchSource>

/** Serves the watch protocol on `ws` until it closes. */
export function serveWatch(ws: WebSocket, open: OpenWatch): void {
  const subs = new Map<string, WatchSource>()
  let counter = 0
  const timer = setTimeout(() => {
    if (subs.size > 0) return
    sendFrame(ws, {
      type: 'error',
      error: `no subscribe message within ${limits.watchSubscribeTimeoutMs} ms`,
    })
    ws.close(1008)
  }, limits.watchSubscribeTimeoutMs)

  const subscribe = async (path: string, recursive: boolean): Promise<void> => {
    if (subs.size >= limits.watchSubscriptionsMax)
      throw new S0Error('quota_exceeded', 'too many subscriptions on one connection')
    const id = `w${++counter}`
    const source = await open(path, recursive, (event, p) =>
      sendFrame(ws, { type: 'event', watch_id: id, event, path: p }),
    )
    if (ws.readyState !== ws.OPEN) return source.close() // the client left while it opened
    subs.set(id, source)
    sendFrame(ws, { type: 'subscribed', watch_id: id, path })
  }

  ws.on('message', (raw: Buffer) => {
    let msg: { action?: unknown; path?: unknown; recursive?: unknown; watch_id?: unknown }
    try {
      if (raw.length > limits.webSocketMessageBytesMax) throw new Error('message too large')
      msg = JSON.parse(raw.toString('utf8')) as typeof msg
    } catch {
      return sendFrame(ws, { type: 'error', error: 'messages must be JSON objects' })
    }
    if (msg.action === 'subscribe' && typeof msg.path === 'string') {
      subscribe(msg.path, msg.recursive === true).catch((err: unknown) => {
        crashOnBug(err)
        sendFrame(ws, {
          type: 'error',
          error: isS0Error(err) ? `${err.code}: ${err.message}` : 'subscribe failed',
        })
      })
    } else if (msg.action === 'unsubscribe' && typeof msg.watch_id === 'string') {
      subs.get(msg.watch_id)?.close()
      subs.delete(msg.watch_id)
      sendFrame(ws, { type: 'unsubscribed', watch_id: msg.watch_id })
    } else {
      sendFrame(ws, {
        type: 'error',
        error: 'expected {"action":"subscribe","path":...} or {"action":"unsubscribe","watch_id":...}',
      })
    }
  })
  ws.on('close', () => {
    clearTimeout(timer)
    for (const s of subs.values()) s.close()
    subs.clear()
  })
}
