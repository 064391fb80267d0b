// Quota checks that run before a route: api_requests on every authenticated request (counted in
// memory, flushed in batches: accounts/quotas.ts) and volume_storage_gb when a volume is created.
// Claims are admitted by the sandbox service itself (sandboxes/claim-quota.ts).
import type { FastifyInstance } from 'fastify'
import { checkVolumeStorage, type ApiRequestMeter } from '../accounts/index.js'
import type { Db } from '../core/db.js'
import { requireAuth } from './auth-hook.js'

// The routes that make a volume (a fork counts at its source's size: storage is counted logically).
const VOLUME_CREATE_ROUTES = new Set(['/api/v1/sandboxvolumes', '/api/v1/sandboxvolumes/:id/fork'])

/** Adds the hooks to `scope`, after its auth hook (hooks run in the order they are added). */
export function addQuotaHook(scope: FastifyInstance, db: Db, meter: ApiRequestMeter): void {
  scope.addHook('onRequest', async (request) => {
    const { teamId } = requireAuth(request)
    if (request.forwarded) return // the API replica that forwarded it admitted it
    await meter.admit(teamId)
  })
  scope.addHook('preHandler', async (request) => {
    if (request.method === 'POST' && VOLUME_CREATE_ROUTES.has(request.routeOptions.url ?? ''))
      await checkVolumeStorage(db, requireAuth(request).teamId)
  })
}
