// Bearer authentication for the `/api/v1` scope: an onRequest hook that resolves the API key to
// its team before any route (WebSocket upgrades included) runs, and `requireAuth` for handlers.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { authenticate, parseBearer, type AuthContext } from '../accounts/index.js'
import type { Db } from '../core/db.js'
import { clusterPrincipal } from './cluster-auth.js'
import { unauthorized } from './reply.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every /api/v1 route; null elsewhere. */
    auth: AuthContext | null
    /** An API replica forwarded it (an agent's listener): the replica metered it already. */
    forwarded: boolean
  }
}

/**
 * Adds the hook to `scope` (and so to every route registered in it). With `clusterToken` (an
 * agent, `s0 agent`), only requests an API replica forwarded are served: the principal is the
 * one the replica authenticated, and a user's API key is refused.
 */
export function addAuthHook(scope: FastifyInstance, db: Db, clusterToken?: string): void {
  scope.addHook('onRequest', async (request) => {
    if (clusterToken !== undefined) {
      request.auth = clusterPrincipal(request.headers, clusterToken)
      request.forwarded = true
      return
    }
    request.auth = await authenticate(db, parseBearer(request.headers.authorization))
  })
}

/** The caller of an /api/v1 route; the auth hook guarantees it is set there. */
export function requireAuth(request: FastifyRequest): AuthContext {
  if (!request.auth) throw unauthorized()
  return request.auth
}
