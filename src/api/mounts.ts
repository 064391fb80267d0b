// Volume mounts on the server's host (an s0 extension; Sandbox0 mounts volumes only at claim):
// POST/GET/DELETE /api/v1/sandboxvolumes/{id}/mounts. The server picks the host directory under
// S0_MOUNT_DIR, so the API never names an arbitrary host path.
import type { FastifyInstance } from 'fastify'
import { S0Error } from '../core/errors.js'
import type { MountInfo, MountManager } from '../fuse/mounts.js'
import { ok, requireAuth } from './server.js'
import { userVolume } from './volumes.js'

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' } },
} as const

const mountParams = {
  type: 'object',
  required: ['id', 'mount_id'],
  properties: {
    id: idParams.properties.id,
    mount_id: { type: 'string', minLength: 1, maxLength: 64, pattern: '^mnt-[a-f0-9]+$' },
  },
} as const

export function mountJson(m: MountInfo): Record<string, unknown> {
  return {
    id: m.id,
    sandboxvolume_id: m.volumeId,
    host_path: m.dir,
    read_only: m.readOnly,
    durability: m.durability,
    mounted_at: m.mountedAt.toISOString(),
    ...(m.sandboxId ? { sandbox_id: m.sandboxId } : {}),
  }
}

export function registerMountRoutes(app: FastifyInstance, mounts: MountManager): void {
  app.post<{ Params: { id: string }; Body: { read_only?: boolean; durability?: 'close' | 'fsync' } | null }>(
    '/api/v1/sandboxvolumes/:id/mounts',
    {
      schema: {
        params: idParams,
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: {
            read_only: { type: 'boolean' },
            durability: { type: 'string', enum: ['close', 'fsync'] },
          },
        },
      },
    },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = request.body ?? {}
      await userVolume(mounts.engine, teamId, request.params.id)
      const info = await mounts.mount(teamId, request.params.id, {
        ...(b.read_only !== undefined ? { readOnly: b.read_only } : {}),
        ...(b.durability !== undefined ? { durability: b.durability } : {}),
      })
      return reply.code(201).send(ok(mountJson(info)))
    },
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/sandboxvolumes/:id/mounts',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await userVolume(mounts.engine, teamId, request.params.id)
      return ok(mounts.list(teamId, request.params.id).map(mountJson))
    },
  )

  app.delete<{ Params: { id: string; mount_id: string } }>(
    '/api/v1/sandboxvolumes/:id/mounts/:mount_id',
    { schema: { params: mountParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const m = mounts.get(teamId, request.params.mount_id)
      if (m.volumeId !== request.params.id) mounts.get(teamId, '') // not this volume's: 404
      if (m.sandboxId)
        throw new S0Error(
          'conflict',
          `mount ${m.id} belongs to sandbox ${m.sandboxId}; it goes when the sandbox pauses or is deleted`,
        )
      await mounts.unmount(teamId, m.id)
      return ok({ unmounted: true })
    },
  )
}
