// `/api/v1/sandboxes/{id}/files/watch`: file watch over WebSocket (watch-protocol.ts), on the
// sandbox's tree as its processes see it (sandboxes/files/watch.ts).
import type { FastifyPluginAsync } from 'fastify'
import type { WebSocket } from 'ws'
import type { SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import type { IdParams } from '../schemas/common.js'
import type { PluginOptions } from '../services.js'
import { serveWatch } from '../watch-protocol.js'

export const sandboxWatchRoute: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.get<{ Params: IdParams }>('/sandboxes/:id/files/watch', { websocket: true }, (socket, request) => {
    const ws = socket as unknown as WebSocket
    const budget = { dirs: 0 } // directories watched by this connection, over its subscriptions
    serveWatch(ws, async (path, recursive, emit) => {
      const { teamId } = requireAuth(request)
      return svc.watchFiles(teamId, request.params.id, {
        path,
        recursive,
        budget,
        emit,
        onOverflow: () => ws.close(1013, 'too many pending events'),
      })
    })
  })
}
