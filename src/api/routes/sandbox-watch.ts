// `/api/v1/sandboxes/{id}/files/watch`: file watch over WebSocket in the volume watch's frames,
// on the sandbox's tree as its processes see it (sandboxes/files/watch.ts).
import type { FastifyPluginAsync } from 'fastify'
import type { WebSocket } from 'ws'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { SandboxTree, TreeWatch, type SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import type { IdParams } from '../schemas/common.js'
import type { PluginOptions } from '../services.js'
import { onWatchMessages } from '../watch-protocol.js'

function send(ws: WebSocket, frame: Record<string, unknown>): void {
  if (ws.readyState !== ws.OPEN) return
  if (ws.bufferedAmount > limits.watchBufferedBytesMax) return ws.close(1013, 'client too slow')
  ws.send(JSON.stringify(frame))
}

export const sandboxWatchRoute: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.get<{ Params: IdParams }>('/sandboxes/:id/files/watch', { websocket: true }, (socket, request) => {
    const ws = socket as unknown as WebSocket
    const subs = new Map<string, TreeWatch>()
    const budget = { dirs: 0 }
    let counter = 0
    const timer = setTimeout(() => {
      if (subs.size === 0) {
        send(ws, { type: 'error', error: `no subscribe message within ${limits.watchSubscribeTimeoutMs} ms` })
        ws.close(1008)
      }
    }, limits.watchSubscribeTimeoutMs)

    const subscribe = async (p: string, recursive: boolean): Promise<void> => {
      const { teamId } = requireAuth(request)
      if (subs.size >= limits.watchSubscriptionsMax)
        throw new S0Error('quota_exceeded', 'too many subscriptions on one connection')
      const tree = await SandboxTree.open(await svc.view(teamId, request.params.id))
      const id = `w${++counter}`
      const watch = await TreeWatch.start({
        tree,
        path: p,
        recursive,
        budget,
        emit: (event, path) => send(ws, { type: 'event', watch_id: id, event, path }),
      })
      subs.set(id, watch)
      send(ws, { type: 'subscribed', watch_id: id, path: p })
    }

    onWatchMessages(ws, {
      subscribe,
      unsubscribe: (watchId) => {
        subs.get(watchId)?.close()
        subs.delete(watchId)
      },
    })
    ws.on('close', () => {
      clearTimeout(timer)
      for (const s of subs.values()) s.close()
      subs.clear()
    })
  })
}
