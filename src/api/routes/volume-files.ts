// /api/v1/sandboxvolumes/{id}/files: read, write, mkdir, delete, stat, list, move in a volume
// (snapshots/volume-files.ts). Bodies stream in and out; nothing holds a whole file in memory.
import { Readable } from 'node:stream'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { VolumeEngine } from '../../snapshots/engine.js'
import * as volumeFiles from '../../snapshots/volume-files.js'
import type { VolumeRow } from '../../snapshots/volume-catalog.js'
import type { Vfs } from '../../snapshots/vfs.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import {
  idParams,
  moveBody,
  pathQuery,
  type IdParams,
  type MoveBody,
  type PathQuery,
} from '../schemas/common.js'
import type { PluginOptions } from '../services.js'
import { fileInfoJson } from '../wire/files.js'

export const volumeFileRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const engine = services.volumes as VolumeEngine
  // File bodies are streams consumed by the handlers (bounded by fileUploadBytesMax, not bodyLimit).
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload))

  const vfsOf = async (
    request: FastifyRequest<{ Params: IdParams }>,
  ): Promise<{ vfs: Vfs; volume: VolumeRow }> => {
    const { teamId } = requireAuth(request)
    const volume = await engine.catalog.getUserVolume(teamId, request.params.id)
    return { vfs: await engine.vfs(teamId, request.params.id), volume }
  }
  const schema = { params: idParams, querystring: pathQuery }

  app.get<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxvolumes/:id/files',
    { schema },
    async (request, reply) => {
      const { vfs } = await vfsOf(request)
      const a = await volumeFiles.openForRead(vfs, request.query.path)
      const accept = request.headers.accept ?? ''
      if (accept.includes('application/json') && !accept.includes('*/*'))
        return ok({ content: (await vfs.read(a.ino, 0, a.size)).toString('base64'), encoding: 'base64' })
      return reply
        .type('application/octet-stream')
        .header('content-length', a.size)
        .send(Readable.from(volumeFiles.readPieces(vfs, a)))
    },
  )

  app.post<{ Params: IdParams; Querystring: PathQuery; Body: unknown }>(
    '/sandboxvolumes/:id/files',
    { schema },
    async (request, reply) => {
      const { vfs, volume } = await vfsOf(request)
      const owner = { uid: volume.defaultPosixUid, gid: volume.defaultPosixGid }
      if (request.query.mkdir === 'true') {
        await volumeFiles.makeDirectory(vfs, request.query.path, request.query.recursive === 'true', owner)
        return reply.code(201).send(ok({ created: true }))
      }
      const body = request.body
      const stream =
        body instanceof Readable
          ? body
          : Readable.from(body === undefined || body === null ? [] : [Buffer.from(JSON.stringify(body))])
      try {
        await volumeFiles.writeFile(vfs, request.query.path, owner, stream)
      } finally {
        // The rest of a refused upload is read and dropped, so the client finishes and reads the reply.
        if (!stream.readableEnded) stream.resume()
      }
      return ok({ written: true })
    },
  )

  app.delete<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxvolumes/:id/files',
    { schema },
    async (request) => {
      const { vfs } = await vfsOf(request)
      await volumeFiles.remove(vfs, request.query.path)
      return ok({ deleted: true })
    },
  )

  app.get<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxvolumes/:id/files/stat',
    { schema },
    async (request) => {
      const { vfs } = await vfsOf(request)
      return ok(fileInfoJson(await volumeFiles.stat(vfs, request.query.path)))
    },
  )

  app.get<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxvolumes/:id/files/list',
    { schema },
    async (request) => {
      const { vfs } = await vfsOf(request)
      return ok({ entries: (await volumeFiles.list(vfs, request.query.path)).map(fileInfoJson) })
    },
  )

  app.post<{ Params: IdParams; Body: MoveBody }>(
    '/sandboxvolumes/:id/files/move',
    { schema: { params: idParams, body: moveBody } },
    async (request) => {
      const { vfs } = await vfsOf(request)
      await volumeFiles.move(vfs, request.body.source, request.body.destination)
      return ok({ moved: true })
    },
  )
}
