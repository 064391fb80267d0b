// `/api-keys` (the SDK's account surface: no /api/v1 prefix): list, create, the current key,
// deactivate and delete. Admin keys manage keys; any key reads `/api-keys/current`. A key's
// secret is shown once, in the create answer: only its sha256 is stored.
import type { FastifyPluginAsync } from 'fastify'
import {
  createApiKey,
  deleteApiKey,
  getApiKey,
  listApiKeys,
  revokeApiKey,
  visibleTeam,
} from '../../accounts/index.js'
import { S0Error } from '../../core/errors.js'
import type { TeamId } from '../../core/ids.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { requireAdmin } from '../roles.js'
import { createApiKeyBody, teamIdQuery, type CreateApiKeyBody } from '../schemas/accounts.js'
import type { PluginOptions } from '../services.js'
import { apiKeyJson, createdApiKeyJson, currentApiKeyJson, KEY_SCOPE } from '../wire/accounts.js'

const UNIT_S = { s: 1, m: 60, h: 3600, d: 86_400 } as const
// Ten years: beyond that a key is as good as unexpiring and Date arithmetic stays sane.
const EXPIRES_IN_S_MAX = 10 * 365 * 86_400

function expiresAtOf(expiresIn: string | undefined): Date | undefined {
  if (expiresIn === undefined) return undefined
  const n = Number(expiresIn.slice(0, -1)) * UNIT_S[expiresIn.slice(-1) as keyof typeof UNIT_S]
  if (n <= 0 || n > EXPIRES_IN_S_MAX)
    throw new S0Error('invalid_request', `expires_in must be from 1s to ${EXPIRES_IN_S_MAX / 86_400}d`)
  return new Date(Date.now() + n * 1000)
}

export const apiKeyRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const { db } = services

  app.get<{ Querystring: { team_id?: string } }>(
    '/api-keys',
    { schema: { querystring: teamIdQuery } },
    async (request) => {
      const auth = requireAdmin(request, 'listing API keys')
      const team = request.query.team_id
        ? (await visibleTeam(db, auth.teamId, request.query.team_id)).id
        : auth.teamId
      return ok({ api_keys: (await listApiKeys(db, team)).map(apiKeyJson) })
    },
  )

  app.post<{ Body: CreateApiKeyBody }>(
    '/api-keys',
    { schema: { body: createApiKeyBody } },
    async (request, reply) => {
      const auth = requireAdmin(request, 'creating API keys')
      const body = request.body
      if (body.scope !== undefined && body.scope !== KEY_SCOPE)
        throw new S0Error('invalid_request', `scope must be "${KEY_SCOPE}" (every key belongs to one team)`)
      // Another team is one the caller's team made (anything else is not found).
      const teamId: TeamId = body.team_id
        ? (await visibleTeam(db, auth.teamId, body.team_id)).id
        : auth.teamId
      const expiresAt = expiresAtOf(body.expires_in)
      const { id, key } = await createApiKey(db, {
        teamId,
        name: body.name,
        role: body.roles?.[0] ?? 'member',
        createdBy: auth.keyId,
        ...(expiresAt ? { expiresAt } : {}),
      })
      return reply.code(201).send(ok(createdApiKeyJson(await getApiKey(db, teamId, id), key)))
    },
  )

  app.get('/api-keys/current', async (request) => {
    const auth = requireAuth(request)
    return ok(currentApiKeyJson(auth, await getApiKey(db, auth.teamId, auth.keyId)))
  })

  app.post<{ Params: { id: string } }>('/api-keys/:id/deactivate', async (request) => {
    const auth = requireAdmin(request, 'deactivating API keys')
    await revokeApiKey(db, request.params.id, auth.teamId)
    return ok({ message: `API key ${request.params.id} deactivated` })
  })

  app.delete<{ Params: { id: string } }>('/api-keys/:id', async (request) => {
    const auth = requireAdmin(request, 'deleting API keys')
    await deleteApiKey(db, auth.teamId, request.params.id)
    return ok({ message: `API key ${request.params.id} deleted` })
  })
}
