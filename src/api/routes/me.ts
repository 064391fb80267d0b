// /api/v1/me: who the caller is (team, key, role).
import type { FastifyPluginAsync } from 'fastify'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import type { PluginOptions } from '../services.js'

export const meRoute: FastifyPluginAsync<PluginOptions> = async (app) => {
  app.get('/me', async (request) => {
    const auth = requireAuth(request)
    return ok({ team_id: auth.teamId, key_id: auth.keyId, role: auth.role })
  })
}
