// /api/v1/sandboxvolumes: volumes, snapshots, fork and restore, in the SDK's wire shapes (bare
// arrays for lists). Team-scoped: another team's volume is a 404. Files are volume-files.ts.
import type { FastifyPluginAsync } from 'fastify'
import { S0Error } from '../../core/errors.js'
import type { VolumeEngine } from '../../snapshots/engine.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import {
  createVolumeBody,
  createVolumeSnapshotBody,
  deleteVolumeQuery,
  forkVolumeBody,
  volumeSnapshotParams,
  type VolumeOptionsBody,
  type VolumeSnapshotParams,
} from '../schemas/volumes.js'
import type { PluginOptions } from '../services.js'
import { volumeJson, volumeSnapshotJson } from '../wire/volumes.js'

function volumeOptions(b: VolumeOptionsBody): {
  defaultPosixUid?: number
  defaultPosixGid?: number
  accessMode?: 'RWO' | 'ROX' | 'RWX'
} {
  return {
    ...(b.default_posix_uid !== undefined ? { defaultPosixUid: b.default_posix_uid } : {}),
    ...(b.default_posix_gid !== undefined ? { defaultPosixGid: b.default_posix_gid } : {}),
    ...(b.access_mode !== undefined ? { accessMode: b.access_mode } : {}),
  }
}

export const volumeRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const engine = services.volumes as VolumeEngine
  const mounts = services.mounts

  app.post<{ Body: VolumeOptionsBody | null | undefined }>(
    '/sandboxvolumes',
    { schema: { body: createVolumeBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = request.body ?? {}
      const v = await engine.create(teamId, {
        ...(b.snapshot_id !== undefined ? { snapshotId: b.snapshot_id } : {}),
        ...volumeOptions(b),
      })
      return reply.code(201).send(ok(volumeJson(v)))
    },
  )

  app.get('/sandboxvolumes', async (request) => {
    const { teamId } = requireAuth(request)
    return ok((await engine.catalog.list(teamId)).map(volumeJson))
  })

  app.get<{ Params: IdParams }>('/sandboxvolumes/:id', { schema: { params: idParams } }, async (request) => {
    const { teamId } = requireAuth(request)
    return ok(volumeJson(await engine.catalog.getUserVolume(teamId, request.params.id)))
  })

  app.delete<{ Params: IdParams; Querystring: { force?: string } }>(
    '/sandboxvolumes/:id',
    { schema: { params: idParams, querystring: deleteVolumeQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await engine.catalog.getUserVolume(teamId, request.params.id) // 404 first
      if (mounts?.isMounted(request.params.id)) {
        if (request.query.force !== 'true')
          throw new S0Error(
            'conflict',
            `volume ${request.params.id} is mounted; unmount it or pass force=true`,
          )
        await mounts.unmountVolume(teamId, request.params.id)
      }
      await engine.delete(teamId, request.params.id)
      return ok({ deleted: true })
    },
  )

  app.post<{ Params: IdParams; Body: VolumeOptionsBody | null | undefined }>(
    '/sandboxvolumes/:id/fork',
    { schema: { params: idParams, body: forkVolumeBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      await engine.catalog.getUserVolume(teamId, request.params.id)
      const v = await engine.fork(teamId, request.params.id, volumeOptions(request.body ?? {}))
      return reply.code(201).send(ok(volumeJson(v)))
    },
  )

  app.post<{ Params: IdParams; Body: { name: string; description?: string } }>(
    '/sandboxvolumes/:id/snapshots',
    { schema: { params: idParams, body: createVolumeSnapshotBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      await engine.catalog.getUserVolume(teamId, request.params.id)
      const s = await engine.snapshot(teamId, request.params.id, {
        name: request.body.name,
        ...(request.body.description !== undefined ? { description: request.body.description } : {}),
      })
      return reply.code(201).send(ok(volumeSnapshotJson(s)))
    },
  )

  app.get<{ Params: IdParams }>(
    '/sandboxvolumes/:id/snapshots',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await engine.catalog.getUserVolume(teamId, request.params.id)
      return ok((await engine.catalog.listSnapshots(teamId, request.params.id)).map(volumeSnapshotJson))
    },
  )

  app.get<{ Params: VolumeSnapshotParams }>(
    '/sandboxvolumes/:id/snapshots/:snapshot_id',
    { schema: { params: volumeSnapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await engine.catalog.getUserVolume(teamId, request.params.id)
      const s = await engine.catalog.getSnapshot(teamId, request.params.id, request.params.snapshot_id)
      return ok(volumeSnapshotJson(s))
    },
  )

  app.delete<{ Params: VolumeSnapshotParams }>(
    '/sandboxvolumes/:id/snapshots/:snapshot_id',
    { schema: { params: volumeSnapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await engine.catalog.getUserVolume(teamId, request.params.id)
      await engine.catalog.deleteSnapshot(teamId, request.params.id, request.params.snapshot_id)
      return ok({ deleted: true })
    },
  )

  app.post<{ Params: VolumeSnapshotParams }>(
    '/sandboxvolumes/:id/snapshots/:snapshot_id/restore',
    { schema: { params: volumeSnapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await engine.catalog.getUserVolume(teamId, request.params.id)
      await engine.restore(teamId, request.params.id, request.params.snapshot_id)
      return ok({ status: 'restored' })
    },
  )
}
