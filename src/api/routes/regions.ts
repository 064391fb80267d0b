// `/regions` (authenticated) and `/metadata` (public): an s0 server is one region, its own
// gateway, in direct mode (no global gateway in front).
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { S0Error } from '../../core/errors.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import type { PluginOptions } from '../services.js'
import { regionJson } from '../wire/accounts.js'

function gatewayUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`
}

export const regionRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const region = services.config.regionId
  app.get('/regions', async (request) => {
    requireAuth(request)
    return ok({ regions: [regionJson(region, gatewayUrl(request))] })
  })

  app.get<{ Params: { id: string } }>('/regions/:id', async (request) => {
    requireAuth(request)
    if (request.params.id !== region) throw new S0Error('not_found', `region ${request.params.id} not found`)
    return ok(regionJson(region, gatewayUrl(request)))
  })
}

export const metadataRoute: FastifyPluginAsync<PluginOptions> = async (app) => {
  app.get('/metadata', async () => ok({ gateway_mode: 'direct', service: 's0' }))
}
