// /api/v1/usage/windows: the team's hourly usage windows, newest first, cursor-paged
// (accounts/usage.ts bills them; docs/ACCOUNTS.md lists the window types).
import type { FastifyPluginAsync } from 'fastify'
import { listUsageWindows } from '../../accounts/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { usageQuery } from '../schemas/accounts.js'
import type { PluginOptions } from '../services.js'
import { usageWindowJson } from '../wire/accounts.js'

export const usageRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  app.get<{ Querystring: { cursor?: string; limit?: number; window_type?: string } }>(
    '/usage/windows',
    { schema: { querystring: usageQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const q = request.query
      const page = await listUsageWindows(services.db, teamId, {
        ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
        ...(q.limit !== undefined ? { limit: q.limit } : {}),
        ...(q.window_type !== undefined ? { windowType: q.window_type } : {}),
      })
      return ok({
        windows: page.windows.map((w) => usageWindowJson(w, services.config.regionId)),
        next_cursor: page.nextCursor,
      })
    },
  )
}
