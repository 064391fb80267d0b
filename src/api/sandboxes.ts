// The Sandbox0 sandboxes API (/api/v1/sandboxes): claim, list, get, update, delete, status,
// refresh, pause, resume, in the SDK's wire shapes. Team-scoped: another team's sandbox is a 404.
// Rootfs snapshots, fork and restore are in sandbox-snapshots.ts.
import type { FastifyInstance } from 'fastify'
import type { SandboxService } from './sandbox-service.js'
import {
  isoOrNull,
  sandboxLimitsApi,
  type ClaimRequest,
  type SandboxConfig,
  type SandboxRow,
} from './sandbox-rows.js'
import { ok, requireAuth } from './server.js'

export const sandboxIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 64 } },
} as const
const idParams = sandboxIdParams
const ttlSchema = { type: 'integer', minimum: 0, maximum: sandboxLimitsApi.ttlSecMax } as const
const envVarsSchema = {
  type: ['object', 'null'],
  maxProperties: 1000,
  propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 256 },
  additionalProperties: { type: 'string', maxLength: 65536 },
} as const
const resourcesSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { memory: { type: 'string', maxLength: 32 } },
} as const
const networkSchema = {
  type: 'object',
  required: ['mode'],
  properties: { mode: { type: 'string', enum: ['allow-all', 'block-all'] } },
} as const

const configProperties = {
  env_vars: envVarsSchema,
  resources: resourcesSchema,
  ttl: ttlSchema,
  hard_ttl: ttlSchema,
  network: networkSchema,
  auto_resume: { type: 'boolean' },
} as const

const claimBody = {
  type: 'object',
  required: ['template'],
  additionalProperties: false,
  properties: {
    template: { type: 'string', minLength: 1, maxLength: 128 },
    snapshot_id: { type: 'string', maxLength: 128 },
    mounts: {
      type: 'array',
      maxItems: 16,
      items: {
        type: 'object',
        required: ['sandboxvolume_id', 'mount_point'],
        additionalProperties: false,
        properties: {
          sandboxvolume_id: { type: 'string', maxLength: 64 },
          mount_point: { type: 'string', maxLength: 4096 },
          // s0 extension (a template's volumeMounts[].readOnly also makes a mount read-only).
          read_only: { type: 'boolean' },
        },
      },
    },
    config: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ...configProperties,
        webhook: { type: 'object' },
        services: { type: 'array', maxItems: 64 },
      },
    },
  },
} as const

export function sandboxJson(s: SandboxRow): Record<string, unknown> {
  return {
    id: s.id,
    template_id: s.templateId,
    team_id: s.teamId,
    user_id: '',
    status: s.status,
    paused: s.status === 'paused',
    auto_resume: s.config.auto_resume ?? true,
    resources: {
      memory: s.config.resources?.memory ?? `${Math.round(s.config.memory_bytes / 1024 / 1024)}Mi`,
    },
    mounts: (s.config.mounts ?? []).map((m) => ({
      sandboxvolume_id: m.sandboxvolume_id,
      mount_point: m.mount_point,
      ...(m.read_only ? { read_only: true } : {}),
    })),
    pod_name: s.id,
    runtime_generation: s.runtimeGeneration,
    expires_at: isoOrNull(s.expiresAt),
    hard_expires_at: isoOrNull(s.hardExpiresAt),
    claimed_at: s.claimedAt.toISOString(),
    created_at: s.createdAt.toISOString(),
    updated_at: s.updatedAt.toISOString(),
    // s0 extensions: which OCI runtime runs it, and why it is failed or stopped.
    runtime: { driver: s.driver },
    ...(s.statusReason ? { status_reason: s.statusReason } : {}),
  }
}

function summaryJson(s: SandboxRow): Record<string, unknown> {
  return {
    id: s.id,
    template_id: s.templateId,
    status: s.status,
    paused: s.status === 'paused',
    runtime_generation: s.runtimeGeneration,
    created_at: s.createdAt.toISOString(),
    expires_at: isoOrNull(s.expiresAt),
    hard_expires_at: isoOrNull(s.hardExpiresAt),
    updated_at: s.updatedAt.toISOString(),
    runtime: { driver: s.driver },
  }
}

export function registerSandboxRoutes(app: FastifyInstance, svc: SandboxService): void {
  app.post<{ Body: ClaimRequest }>(
    '/api/v1/sandboxes',
    { schema: { body: claimBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const s = await svc.claim(teamId, request.body)
      return reply.code(201).send(
        ok({
          sandbox_id: s.id,
          template: s.templateId,
          status: s.status,
          pod_name: s.id,
          cluster_id: null,
          bootstrap_mounts: svc.mountStatus(s.id),
        }),
      )
    },
  )

  app.get<{
    Querystring: { status?: string; template_id?: string; paused?: string; limit?: number; offset?: number }
  }>(
    '/api/v1/sandboxes',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            status: { type: 'string', enum: ['starting', 'running', 'paused', 'terminating', 'failed'] },
            template_id: { type: 'string', maxLength: 128 },
            paused: { type: 'string', enum: ['true', 'false'] },
            limit: { type: 'integer', minimum: 1, maximum: sandboxLimitsApi.listLimitMax },
            offset: { type: 'integer', minimum: 0, maximum: 1_000_000 },
          },
        },
      },
    },
    async (request) => {
      const { teamId } = requireAuth(request)
      const q = request.query
      const offset = q.offset ?? 0
      const { rows, count } = await svc.list(teamId, {
        ...(q.status !== undefined ? { status: q.status } : {}),
        ...(q.template_id !== undefined ? { templateId: q.template_id } : {}),
        ...(q.paused !== undefined ? { paused: q.paused === 'true' } : {}),
        ...(q.limit !== undefined ? { limit: q.limit } : {}),
        offset,
      })
      return ok({ sandboxes: rows.map(summaryJson), count, has_more: offset + rows.length < count })
    },
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sandboxes/:id',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(sandboxJson(await svc.get(teamId, request.params.id)))
    },
  )

  app.put<{ Params: { id: string }; Body: { config?: SandboxConfig } }>(
    '/api/v1/sandboxes/:id',
    {
      schema: {
        params: idParams,
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            config: { type: 'object', additionalProperties: false, properties: configProperties },
          },
        },
      },
    },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(sandboxJson(await svc.update(teamId, request.params.id, request.body.config ?? {})))
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/api/v1/sandboxes/:id',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await svc.delete(teamId, request.params.id)
      return ok({ message: `sandbox ${request.params.id} deleted` })
    },
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sandboxes/:id/status',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const s = await svc.get(teamId, request.params.id)
      return ok({
        sandbox_id: s.id,
        template_id: s.templateId,
        team_id: s.teamId,
        user_id: '',
        pod_name: s.id,
        status: s.status,
        claimed_at: s.claimedAt.toISOString(),
        expires_at: isoOrNull(s.expiresAt),
        hard_expires_at: isoOrNull(s.hardExpiresAt),
        created_at: s.createdAt.toISOString(),
        ...(s.statusReason ? { status_reason: s.statusReason } : {}),
      })
    },
  )

  app.post<{ Params: { id: string }; Body: { duration?: number } | undefined }>(
    '/api/v1/sandboxes/:id/refresh',
    {
      schema: {
        params: idParams,
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: { duration: { type: 'integer', minimum: 1, maximum: sandboxLimitsApi.ttlSecMax } },
        },
      },
    },
    async (request) => {
      const { teamId } = requireAuth(request)
      const s = await svc.refresh(teamId, request.params.id, request.body?.duration)
      return ok({
        sandbox_id: s.id,
        expires_at: isoOrNull(s.expiresAt),
        hard_expires_at: isoOrNull(s.hardExpiresAt),
      })
    },
  )

  // Pause answers once the checkpoint is committed (paused: true), or after a bounded wait with
  // paused: false while it goes on (GET reports `running` until it is in). `keep_memory=true`
  // (s0 extension, runsc) saves the processes too.
  app.post<{ Params: { id: string }; Querystring: { keep_memory?: string } }>(
    '/api/v1/sandboxes/:id/pause',
    {
      schema: {
        params: idParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { keep_memory: { type: 'string', enum: ['true', 'false'] } },
        },
      },
    },
    async (request) => {
      const { teamId } = requireAuth(request)
      const { row, paused } = await svc.pause(teamId, request.params.id, {
        keepMemory: request.query.keep_memory === 'true',
      })
      return ok({ sandbox_id: row.id, paused, status: row.status })
    },
  )

  app.post<{ Params: { id: string } }>(
    '/api/v1/sandboxes/:id/resume',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const row = await svc.resume(teamId, request.params.id)
      return ok({ sandbox_id: row.id, resumed: row.status === 'running' })
    },
  )
}
