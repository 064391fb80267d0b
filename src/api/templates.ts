// The Sandbox0 templates API (/api/v1/templates): list, get, create, update, delete. Top level
// snake_case, `spec` camelCase. Built-in templates are public and read-only; a team's own
// templates are invisible to other teams.
import type { FastifyInstance } from 'fastify'
import { S0Error } from '../core/errors.js'
import { DRIVER_NAMES } from '../runtime/driver.js'
import { REPLS } from './context-manager.js'
import { ok, requireAuth } from './server.js'
import { TEMPLATE_ID, templateJson, type TemplateCatalog, type TemplateSpec } from './template-catalog.js'

const shortText = { type: 'string', maxLength: 1024 } as const
const envVarsSchema = {
  type: 'object',
  maxProperties: 1000,
  additionalProperties: { type: 'string', maxLength: 65536 },
} as const

/** The wire TemplateSpec, plus two s0 extensions: `resources.cpu` / `resources.pids` and `runtime.driver`. */
export const templateSpecSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    description: shortText,
    displayName: { type: 'string', maxLength: 256 },
    tags: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 64 } },
    mainContainer: {
      type: 'object',
      required: ['image', 'resources'],
      additionalProperties: false,
      properties: {
        image: { type: 'string', minLength: 1, maxLength: 4096 },
        imagePullPolicy: { type: 'string', maxLength: 32 },
        env: {
          type: 'array',
          maxItems: 1000,
          items: {
            type: 'object',
            required: ['name'],
            additionalProperties: false,
            properties: {
              name: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 256 },
              value: { type: 'string', maxLength: 65536 },
            },
          },
        },
        resources: {
          type: 'object',
          required: ['memory'],
          additionalProperties: false,
          properties: {
            memory: { type: 'string', maxLength: 32 },
            ephemeralStorage: { type: 'string', maxLength: 32 },
            cpu: { type: 'string', maxLength: 32 },
            pids: { type: 'integer', minimum: 8, maximum: 32768 },
          },
        },
        securityContext: { type: 'object' },
      },
    },
    volumeMounts: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        required: ['name', 'mountPath'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', maxLength: 253 },
          mountPath: { type: 'string', minLength: 1, maxLength: 4096 },
          readOnly: { type: 'boolean' },
        },
      },
    },
    pod: { type: 'object' },
    // The egress policy (camelCase subtree); stored and reported, enforced by a later issue.
    network: {
      type: 'object',
      required: ['mode'],
      properties: { mode: { type: 'string', enum: ['allow-all', 'block-all'] } },
    },
    pool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        minIdle: { type: 'integer', minimum: 0, maximum: 1000 },
        maxIdle: { type: 'integer', minimum: 0, maximum: 1000 },
      },
    },
    envVars: envVarsSchema,
    clusterId: { type: 'string', maxLength: 256 },
    runtime: {
      type: 'object',
      additionalProperties: false,
      properties: { driver: { type: 'string', enum: [...DRIVER_NAMES] } },
    },
    // s0 extension: processes each warm sandbox runs before it is claimed.
    warmProcesses: {
      type: 'array',
      maxItems: 8,
      items: {
        type: 'object',
        required: ['type'],
        additionalProperties: false,
        properties: {
          type: { type: 'string', enum: ['repl', 'cmd'] },
          alias: { type: 'string', enum: Object.keys(REPLS) },
          command: {
            type: 'array',
            minItems: 1,
            maxItems: 256,
            items: { type: 'string', minLength: 1, maxLength: 4096 },
          },
          readiness: {
            type: 'object',
            required: ['type'],
            additionalProperties: false,
            properties: {
              type: { type: 'string', enum: ['process', 'delay', 'output'] },
              delayMs: { type: 'integer', minimum: 0, maximum: 60_000 },
              output: { type: 'string', minLength: 1, maxLength: 1024 },
              timeoutMs: { type: 'integer', minimum: 100, maximum: 300_000 },
            },
          },
        },
      },
    },
  },
} as const

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 128 } },
} as const

export function registerTemplateRoutes(app: FastifyInstance, catalog: TemplateCatalog): void {
  app.get('/api/v1/templates', async (request) => {
    const { teamId } = requireAuth(request)
    const templates = (await catalog.list(teamId)).map(templateJson)
    return ok({ templates, count: templates.length })
  })

  app.get<{ Params: { id: string } }>(
    '/api/v1/templates/:id',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(templateJson(await catalog.get(teamId, request.params.id)))
    },
  )

  app.post<{ Body: { template_id: string; spec: TemplateSpec } }>(
    '/api/v1/templates',
    {
      schema: {
        body: {
          type: 'object',
          required: ['template_id', 'spec'],
          additionalProperties: false,
          properties: {
            template_id: { type: 'string', pattern: TEMPLATE_ID.source },
            spec: templateSpecSchema,
          },
        },
      },
    },
    async (request, reply) => {
      const auth = requireAuth(request)
      checkImageRole(request.body.spec, auth.role)
      const t = await catalog.create(auth.teamId, request.body.template_id, request.body.spec)
      return reply.code(201).send(ok(templateJson(t)))
    },
  )

  app.put<{ Params: { id: string }; Body: { spec: TemplateSpec } }>(
    '/api/v1/templates/:id',
    {
      schema: {
        params: idParams,
        body: {
          type: 'object',
          required: ['spec'],
          additionalProperties: false,
          properties: { spec: templateSpecSchema },
        },
      },
    },
    async (request) => {
      const auth = requireAuth(request)
      checkImageRole(request.body.spec, auth.role)
      return ok(templateJson(await catalog.update(auth.teamId, request.params.id, request.body.spec)))
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/api/v1/templates/:id',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await catalog.delete(teamId, request.params.id)
      return ok({ message: `template ${request.params.id} deleted` })
    },
  )
}

/** Importing an image reads a path on the server's disk: admins only. */
function checkImageRole(spec: TemplateSpec, role: string): void {
  const image = spec.mainContainer?.image ?? ''
  if (/^(oci-archive|docker-archive|oci):/.test(image) && role !== 'admin')
    throw new S0Error('forbidden', 'only admin keys may import images from the server disk')
}
