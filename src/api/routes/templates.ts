// /api/v1/templates: list, get, create, update, delete. Built-in templates are public and
// read-only; a team's own templates are invisible to other teams.
import type { FastifyPluginAsync } from 'fastify'
import type { SandboxService, TemplateSpec } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { createTemplateBody, templateIdParams, updateTemplateBody } from '../schemas/templates.js'
import type { PluginOptions } from '../services.js'
import { templateJson } from '../wire/templates.js'

export const templateRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const catalog = (services.sandboxes as SandboxService).catalog

  app.get('/templates', async (request) => {
    const { teamId } = requireAuth(request)
    const templates = (await catalog.list(teamId)).map(templateJson)
    return ok({ templates, count: templates.length })
  })

  app.get<{ Params: { id: string } }>(
    '/templates/:id',
    { schema: { params: templateIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(templateJson(await catalog.get(teamId, request.params.id)))
    },
  )

  app.post<{ Body: { template_id: string; spec: TemplateSpec } }>(
    '/templates',
    { schema: { body: createTemplateBody } },
    async (request, reply) => {
      const auth = requireAuth(request)
      const t = await catalog.create(auth.teamId, request.body.template_id, request.body.spec, auth)
      return reply.code(201).send(ok(templateJson(t)))
    },
  )

  app.put<{ Params: { id: string }; Body: { spec: TemplateSpec } }>(
    '/templates/:id',
    { schema: { params: templateIdParams, body: updateTemplateBody } },
    async (request) => {
      const auth = requireAuth(request)
      return ok(templateJson(await catalog.update(auth.teamId, request.params.id, request.body.spec, auth)))
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/templates/:id',
    { schema: { params: templateIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await catalog.delete(teamId, request.params.id)
      return ok({ message: `template ${request.params.id} deleted` })
    },
  )
}
