// /api/v1/sandboxes/{id}/services: the sandbox's app services with their publishability and
// public URLs, read and replaced whole (the SDK's getServices / updateServices / clearServices).
import type { FastifyPluginAsync } from 'fastify'
import type { AppService, SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { exposureOf } from '../exposure.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import { servicesBody } from '../schemas/services.js'
import type { PluginOptions } from '../services.js'
import { servicesJson } from '../wire/services.js'

export const serviceRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService
  const exposure = (): ReturnType<typeof exposureOf> => exposureOf(services.config, app.server)

  app.get<{ Params: IdParams }>(
    '/sandboxes/:id/services',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(servicesJson(await svc.services.list(teamId, request.params.id, exposure())))
    },
  )

  app.put<{ Params: IdParams; Body: { services: AppService[] } }>(
    '/sandboxes/:id/services',
    { schema: { params: idParams, body: servicesBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const view = await svc.services.update(teamId, request.params.id, request.body.services, exposure())
      return ok(servicesJson(view))
    },
  )
}
