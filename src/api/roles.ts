// Roles of API keys: `admin` manages keys, teams, quotas and credential sources; `member` uses
// sandboxes and volumes. A member calling an admin route gets 403 `forbidden`.
import type { FastifyRequest } from 'fastify'
import type { AuthContext } from '../accounts/index.js'
import { S0Error } from '../core/errors.js'
import { requireAuth } from './auth-hook.js'

export function requireAdmin(request: FastifyRequest, what: string): AuthContext {
  const auth = requireAuth(request)
  if (auth.role !== 'admin')
    throw new S0Error('forbidden', `${what} needs an admin API key (this key ${auth.keyId} is a member key)`)
  return auth
}
