// `/users/me` (the SDK's account surface): s0 has API keys, not user accounts, so the calling key
// stands for its user (`id` is the key's id, `is_admin` its role).
import type { FastifyPluginAsync } from 'fastify'
import { getApiKey } from '../../accounts/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import type { PluginOptions } from '../services.js'
import { userJson } from '../wire/accounts.js'

export const userRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  app.get('/users/me', async (request) => {
    const auth = requireAuth(request)
    return ok(userJson(await getApiKey(services.db, auth.teamId, auth.keyId)))
  })
}
