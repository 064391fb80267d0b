// PUT /api/v1/sandboxvolumes/{id}/files/archive?path=<dir>: a raw tar body (application/x-tar)
// extracted into a volume directory by snapshots/archive-import.ts, answered with its counts.
import { Readable } from 'node:stream'
import type { FastifyPluginAsync } from 'fastify'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { importArchive, type ArchiveImportLimits } from '../../snapshots/archive-import.js'
import type { VolumeEngine } from '../../snapshots/engine.js'
import { splitPath } from '../../snapshots/paths.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import { archiveQuery } from '../schemas/volumes.js'
import type { PluginOptions } from '../services.js'

const TAR_TYPE = 'application/x-tar'

export interface VolumeArchiveOptions extends PluginOptions {
  /** Tests lower these to exercise the tar-bomb refusals; production uses core/limits.ts. */
  limits?: ArchiveImportLimits
}

export const volumeArchiveRoute: FastifyPluginAsync<VolumeArchiveOptions> = async (app, opts) => {
  const engine = opts.services.volumes as VolumeEngine
  const importLimits = opts.limits ?? limits
  app.addContentTypeParser(TAR_TYPE, (_req, payload, done) => done(null, payload))

  app.put<{ Params: IdParams; Querystring: { path: string }; Body: unknown }>(
    '/sandboxvolumes/:id/files/archive',
    { schema: { params: idParams, querystring: archiveQuery } },
    async (request) => {
      const body = request.body
      if (!(body instanceof Readable))
        throw new S0Error('bad_request', `send the archive as a raw tar body with Content-Type: ${TAR_TYPE}`)
      try {
        const { teamId } = requireAuth(request)
        const volume = await engine.catalog.getUserVolume(teamId, request.params.id)
        const vfs = await engine.vfs(teamId, request.params.id)
        const destParts = splitPath(request.query.path)
        const owner = { uid: volume.defaultPosixUid, gid: volume.defaultPosixGid }
        // Not destroyed when the reader stops early: destroying the request would reset the
        // socket before the reply (an error, or success before the tar's trailing padding).
        const stream = body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>
        return ok(await importArchive(vfs, destParts, stream, owner, importLimits))
      } finally {
        // Whatever the reader left (record padding, or the rest of a refused upload) is read
        // and dropped, so the client finishes sending and then reads our reply.
        if (!body.readableEnded) body.resume()
      }
    },
  )
}
