// `/api/v1/sandboxvolumes/{id}/files/watch`: file watch over WebSocket in the Sandbox0 frame format;
// the client subscribes to a path, the server confirms, then streams change events.
import type { FastifyPluginAsync } from 'fastify'
import type { WebSocket } from 'ws'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { VolumeEngine } from '../../snapshots/engine.js'
import type { Vfs } from '../../snapshots/vfs.js'
import { watchVolume } from '../../snapshots/volume-watch.js'
import { requireAuth } from '../auth-hook.js'
import type { IdParams } from '../schemas/common.js'
import type { PluginOptions } from '../services.js'
import { onWatchMessages, sendFrame as send } from '../watch-protocol.js'

export const volumeWatchRoute: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const engine = services.volumes as VolumeEngine

  app.get<{ Params: IdParams }>('/sandboxvolumes/:id/files/watch', { websocket: true }, (socket, request) => {
    const ws = socket as unknown as WebSocket
    const subs = new Map<string, () => void>()
    let vfs: Vfs | undefined
    let counter = 0
    const timer = setTimeout(() => {
      if (subs.size === 0) {
        send(ws, { type: 'error', error: `no subscribe message within ${limits.watchSubscribeTimeoutMs} ms` })
        ws.close(1008)
      }
    }, limits.watchSubscribeTimeoutMs)

    const subscribe = async (path: string, recursive: boolean): Promise<void> => {
      const { teamId } = requireAuth(request)
      if (subs.size >= limits.watchSubscriptionsMax)
        throw new S0Error('quota_exceeded', 'too many subscriptions on one connection')
      if (!vfs) {
        await engine.catalog.getUserVolume(teamId, request.params.id)
        vfs = await engine.vfs(teamId, request.params.id)
      }
      const id = `w${++counter}`
      const stop = await watchVolume(vfs, {
        path,
        recursive,
        pendingMax: limits.watchPendingEventsMax,
        emit: (event, p) => send(ws, { type: 'event', watch_id: id, event, path: p }),
        onOverflow: () => ws.close(1013, 'too many pending events'),
      })
      subs.set(id, stop)
      send(ws, { type: 'subscribed', watch_id: id, path })
    }

    onWatchMessages(ws, {
      subscribe,
      unsubscribe: (watchId) => {
        subs.get(watchId)?.()
        subs.delete(watchId)
      },
    })
    ws.on('close', () => {
      clearTimeout(timer)
      for (const stop of subs.values()) stop()
      subs.clear()
    })
  })
}
