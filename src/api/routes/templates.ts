// /api/v1/templates: list, get, create, update, delete, and from-sandbox. Built-in templates are
// public and read-only; a team's own templates are invisible to other teams. A template from a
// registry image or from a sandbox is answered at once, `status.creation` creating, and built in
// the background (the SDK's waitUntilReady polls GET).
import type { FastifyPluginAsync } from 'fastify'
import type { FromSandboxRequest, SandboxService, TemplateSpec } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import {
  createTemplateBody,
  fromSandboxBody,
  idempotencyHeaders,
  templateIdParams,
  updateTemplateBody,
} from '../schemas/templates.js'
import type { PluginOptions } from '../services.js'
import { templateJson } from '../wire/templates.js'

export const templateRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService
  const catalog = svc.catalog

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

  app.post<{ Body: FromSandboxRequest; Headers: { 'idempotency-key'?: string } }>(
    '/templates/from-sandbox',
    { schema: { body: fromSandboxBody, headers: idempotencyHeaders } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const t = await svc.templatesFromSandbox.create(
        teamId,
        request.body,
        request.headers['idempotency-key'],
      )
      return reply.code(202).send(ok(templateJson(t)))
    },
  )
}
