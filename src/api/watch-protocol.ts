// The watch WebSocket's client messages, shared by the volume and sandbox watch routes so the
// two speak exactly one protocol: {"action":"subscribe","path","recursive"} and
// {"action":"unsubscribe","watch_id"}; anything else is answered with an error frame.
import type { WebSocket } from 'ws'
import { crashOnBug } from '../core/assert.js'
import { isS0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'

export function sendFrame(ws: WebSocket, frame: Record<string, unknown>): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame))
}

/** Dispatches every message of `ws` to `subscribe` / `unsubscribe`; replies to the rest. */
export function onWatchMessages(
  ws: WebSocket,
  handlers: {
    subscribe(path: string, recursive: boolean): Promise<void>
    unsubscribe(watchId: string): void
  },
): void {
  ws.on('message', (raw: Buffer) => {
    let msg: { action?: unknown; path?: unknown; recursive?: unknown; watch_id?: unknown }
    try {
      if (raw.length > limits.webSocketMessageBytesMax) throw new Error('message too large')
      msg = JSON.parse(raw.toString('utf8')) as typeof msg
    } catch {
      return sendFrame(ws, { type: 'error', error: 'messages must be JSON objects' })
    }
    if (msg.action === 'subscribe' && typeof msg.path === 'string') {
      handlers.subscribe(msg.path, msg.recursive === true).catch((err: unknown) => {
        crashOnBug(err)
        sendFrame(ws, {
          type: 'error',
          error: isS0Error(err) ? `${err.code}: ${err.message}` : 'subscribe failed',
        })
      })
    } else if (msg.action === 'unsubscribe' && typeof msg.watch_id === 'string') {
      handlers.unsubscribe(msg.watch_id)
      sendFrame(ws, { type: 'unsubscribed', watch_id: msg.watch_id })
    } else {
      sendFrame(ws, {
        type: 'error',
        error: 'expected {"action":"subscribe","path":...} or {"action":"unsubscribe","watch_id":...}',
      })
    }
  })
}
