// /api/v1/sandboxes/{id}/network: the sandbox's egress policy (`SandboxNetworkPolicy`, camelCase),
// read and replaced whole; a replacement applies to the sandbox's new connections at once.
import type { FastifyPluginAsync } from 'fastify'
import type { SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import { networkPolicySchema } from '../schemas/network.js'
import type { PluginOptions } from '../services.js'

export const networkRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.get<{ Params: IdParams }>(
    '/sandboxes/:id/network',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(await svc.networkPolicy(teamId, request.params.id))
    },
  )

  app.put<{ Params: IdParams; Body: unknown }>(
    '/sandboxes/:id/network',
    { schema: { params: idParams, body: networkPolicySchema } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(await svc.setNetworkPolicy(teamId, request.params.id, request.body))
    },
  )
}
