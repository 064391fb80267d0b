// Bearer authentication for the `/api/v1` scope: an onRequest hook that resolves the API key to
// its team before any route (WebSocket upgrades included) runs, and `requireAuth` for handlers.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { authenticate, parseBearer, type AuthContext } from '../accounts/index.js'
import type { Db } from '../core/db.js'
import { unauthorized } from './reply.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every /api/v1 route; null elsewhere. */
    auth: AuthContext | null
  }
}

/** Adds the hook to `scope` (and so to every route registered in it). */
export function addAuthHook(scope: FastifyInstance, db: Db): void {
  scope.addHook('onRequest', async (request) => {
    request.auth = await authenticate(db, parseBearer(request.headers.authorization))
  })
}

/** The caller of an /api/v1 route; the auth hook guarantees it is set there. */
export function requireAuth(request: FastifyRequest): AuthContext {
  if (!request.auth) throw unauthorized()
  return request.auth
}
