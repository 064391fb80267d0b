// `/api/v1/sandboxvolumes/{id}/files/watch`: file watch over WebSocket (watch-protocol.ts) on a
// volume's change events (snapshots/volume-watch.ts).
import type { FastifyPluginAsync } from 'fastify'
import type { WebSocket } from 'ws'
import { limits } from '../../core/limits.js'
import type { VolumeEngine } from '../../snapshots/engine.js'
import type { Vfs } from '../../snapshots/vfs.js'
import { watchVolume } from '../../snapshots/volume-watch.js'
import { requireAuth } from '../auth-hook.js'
import type { IdParams } from '../schemas/common.js'
import type { PluginOptions } from '../services.js'
import { serveWatch } from '../watch-protocol.js'

export const volumeWatchRoute: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const engine = services.volumes as VolumeEngine

  app.get<{ Params: IdParams }>('/sandboxvolumes/:id/files/watch', { websocket: true }, (socket, request) => {
    const ws = socket as unknown as WebSocket
    let vfs: Vfs | undefined
    serveWatch(ws, async (path, recursive, emit) => {
      const { teamId } = requireAuth(request)
      if (!vfs) {
        await engine.catalog.getUserVolume(teamId, request.params.id)
        vfs = await engine.vfs(teamId, request.params.id)
      }
      const stop = await watchVolume(vfs, {
        path,
        recursive,
        pendingMax: limits.watchPendingEventsMax,
        emit,
        onOverflow: () => ws.close(1013, 'too many pending events'),
      })
      return { close: stop }
    })
  })
}
