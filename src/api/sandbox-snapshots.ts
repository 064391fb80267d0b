// The Sandbox0 root-filesystem snapshot API: snapshots of a sandbox (create, list, get, delete),
// restore onto a paused sandbox, and fork (a new paused sandbox). All are O(1) for a paused
// sandbox; a running one is frozen while what changed since its last capture is captured.
import type { FastifyInstance } from 'fastify'
import type { RootfsSnapshotRow } from './sandbox-rootfs.js'
import { sandboxLimitsApi } from './sandbox-rows.js'
import type { SandboxService } from './sandbox-service.js'
import { sandboxIdParams, sandboxJson } from './sandboxes.js'
import { ok, requireAuth } from './server.js'

const idParams = sandboxIdParams
const snapshotParams = {
  type: 'object',
  required: ['snapshot_id'],
  properties: { snapshot_id: { type: 'string', maxLength: 64 } },
} as const
const ttlSchema = { type: 'integer', minimum: 0, maximum: sandboxLimitsApi.ttlSecMax } as const

export function rootfsSnapshotJson(s: RootfsSnapshotRow): Record<string, unknown> {
  return {
    id: s.id,
    sandbox_id: s.sandboxId,
    ...(s.name ? { name: s.name } : {}),
    ...(s.description ? { description: s.description } : {}),
    created_at: s.createdAt.toISOString(),
    ...(s.expiresAt ? { expires_at: s.expiresAt.toISOString() } : {}),
  }
}

export function registerSandboxSnapshotRoutes(app: FastifyInstance, svc: SandboxService): void {
  app.post<{
    Params: { id: string }
    Body: { name?: string; description?: string; expires_at?: string } | null | undefined
  }>(
    '/api/v1/sandboxes/:id/snapshots',
    {
      schema: {
        params: idParams,
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', maxLength: 255 },
            description: { type: 'string', maxLength: 4096 },
            expires_at: { type: 'string', format: 'date-time' },
          },
        },
      },
    },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = request.body ?? {}
      const s = await svc.createSnapshot(teamId, request.params.id, {
        ...(b.name !== undefined ? { name: b.name } : {}),
        ...(b.description !== undefined ? { description: b.description } : {}),
        ...(b.expires_at !== undefined ? { expiresAt: new Date(b.expires_at) } : {}),
      })
      return reply.code(201).send(ok(rootfsSnapshotJson(s)))
    },
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sandboxes/:id/snapshots',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      // Snapshots outlive their sandbox: listing those of a deleted one works too.
      const snapshots = (await svc.listSnapshots(teamId, request.params.id)).map(rootfsSnapshotJson)
      return ok({ snapshots, count: snapshots.length })
    },
  )

  app.get<{ Params: { snapshot_id: string } }>(
    '/api/v1/sandbox-rootfs-snapshots/:snapshot_id',
    { schema: { params: snapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(rootfsSnapshotJson(await svc.getSnapshot(teamId, request.params.snapshot_id)))
    },
  )

  app.delete<{ Params: { snapshot_id: string } }>(
    '/api/v1/sandbox-rootfs-snapshots/:snapshot_id',
    { schema: { params: snapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await svc.deleteSnapshot(teamId, request.params.snapshot_id)
      return ok({ deleted: true })
    },
  )

  app.post<{ Params: { id: string }; Body: { snapshot_id: string } }>(
    '/api/v1/sandboxes/:id/rootfs/restore',
    {
      schema: {
        params: idParams,
        body: {
          type: 'object',
          required: ['snapshot_id'],
          additionalProperties: false,
          properties: { snapshot_id: { type: 'string', minLength: 1, maxLength: 64 } },
        },
      },
    },
    async (request) => {
      const { teamId } = requireAuth(request)
      const row = await svc.restore(teamId, request.params.id, request.body.snapshot_id)
      return ok({ sandbox_id: row.id, snapshot_id: request.body.snapshot_id, status: row.status })
    },
  )

  app.post<{
    Params: { id: string }
    Body: { config?: { ttl?: number; hard_ttl?: number } } | null | undefined
  }>(
    '/api/v1/sandboxes/:id/fork',
    {
      schema: {
        params: idParams,
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: {
            config: {
              type: 'object',
              additionalProperties: false,
              properties: { ttl: ttlSchema, hard_ttl: ttlSchema },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const child = await svc.fork(teamId, request.params.id, request.body?.config ?? {})
      return reply.code(201).send(ok({ source_sandbox_id: request.params.id, sandbox: sandboxJson(child) }))
    },
  )
}
