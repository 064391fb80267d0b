// Root-filesystem snapshots of a sandbox (create, list, get, delete), restore onto a paused
// sandbox, and fork (a new paused sandbox). All O(1) for a paused sandbox; a running one is frozen
// while what changed since its last capture is captured.
import type { FastifyPluginAsync } from 'fastify'
import type { SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import { createSnapshotBody, forkBody, restoreBody, snapshotIdParams } from '../schemas/sandboxes.js'
import type { PluginOptions } from '../services.js'
import { rootfsSnapshotJson, sandboxJson } from '../wire/sandboxes.js'

type SnapshotBody = { name?: string; description?: string; expires_at?: string } | null | undefined

export const sandboxSnapshotRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.post<{ Params: IdParams; Body: SnapshotBody }>(
    '/sandboxes/:id/snapshots',
    { schema: { params: idParams, body: createSnapshotBody } },
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

  app.get<{ Params: IdParams }>(
    '/sandboxes/:id/snapshots',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      // Snapshots outlive their sandbox: listing those of a deleted one works too.
      const snapshots = (await svc.listSnapshots(teamId, request.params.id)).map(rootfsSnapshotJson)
      return ok({ snapshots, count: snapshots.length })
    },
  )

  app.get<{ Params: { snapshot_id: string } }>(
    '/sandbox-rootfs-snapshots/:snapshot_id',
    { schema: { params: snapshotIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(rootfsSnapshotJson(await svc.getSnapshot(teamId, request.params.snapshot_id)))
    },
  )

  app.delete<{ Params: { snapshot_id: string } }>(
    '/sandbox-rootfs-snapshots/:snapshot_id',
    { schema: { params: snapshotIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await svc.deleteSnapshot(teamId, request.params.snapshot_id)
      return ok({ deleted: true })
    },
  )

  app.post<{ Params: IdParams; Body: { snapshot_id: string } }>(
    '/sandboxes/:id/rootfs/restore',
    { schema: { params: idParams, body: restoreBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const row = await svc.restore(teamId, request.params.id, request.body.snapshot_id)
      return ok({ sandbox_id: row.id, snapshot_id: request.body.snapshot_id, status: row.status })
    },
  )

  app.post<{ Params: IdParams; Body: { config?: { ttl?: number; hard_ttl?: number } } | null | undefined }>(
    '/sandboxes/:id/fork',
    { schema: { params: idParams, body: forkBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const child = await svc.fork(teamId, request.params.id, request.body?.config ?? {})
      return reply.code(201).send(ok({ source_sandbox_id: request.params.id, sandbox: sandboxJson(child) }))
    },
  )
}
