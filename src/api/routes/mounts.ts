// Volume mounts on the server's host (an s0 extension; Sandbox0 mounts volumes only at claim):
// POST/GET/DELETE /api/v1/sandboxvolumes/{id}/mounts. The server picks the host directory under
// S0_MOUNT_DIR, so the API never names an arbitrary host path.
import type { FastifyPluginAsync } from 'fastify'
import type { MountManager } from '../../fuse/mounts.js'
import { unmountUserMount } from '../../fuse/user-mounts.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { createMountBody, mountIdParams } from '../schemas/volumes.js'
import type { PluginOptions } from '../services.js'
import { mountJson } from '../wire/volumes.js'

const volumeIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: mountIdParams.properties.id },
} as const

export const mountRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const mounts = services.mounts as MountManager

  app.post<{ Params: { id: string }; Body: { read_only?: boolean; durability?: 'close' | 'fsync' } | null }>(
    '/sandboxvolumes/:id/mounts',
    { schema: { params: volumeIdParams, body: createMountBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = request.body ?? {}
      await mounts.engine.catalog.getUserVolume(teamId, request.params.id)
      const info = await mounts.mount(teamId, request.params.id, {
        ...(b.read_only !== undefined ? { readOnly: b.read_only } : {}),
        ...(b.durability !== undefined ? { durability: b.durability } : {}),
      })
      return reply.code(201).send(ok(mountJson(info)))
    },
  )

  app.get<{ Params: { id: string } }>(
    '/sandboxvolumes/:id/mounts',
    { schema: { params: volumeIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await mounts.engine.catalog.getUserVolume(teamId, request.params.id)
      return ok(mounts.list(teamId, request.params.id).map(mountJson))
    },
  )

  app.delete<{ Params: { id: string; mount_id: string } }>(
    '/sandboxvolumes/:id/mounts/:mount_id',
    { schema: { params: mountIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await unmountUserMount(mounts, teamId, request.params.id, request.params.mount_id)
      return ok({ unmounted: true })
    },
  )
}
