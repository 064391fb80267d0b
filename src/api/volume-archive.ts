// PUT /api/v1/sandboxvolumes/{id}/files/archive?path=<dir>: a raw tar body (application/x-tar)
// extracted into a volume directory by snapshots/archive-import.ts, answered with its counts.
import { Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { importArchive, type ArchiveImportLimits } from '../snapshots/archive-import.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import { splitPath } from '../snapshots/paths.js'
import { ok, requireAuth } from './server.js'

export const VOLUME_ARCHIVE_ROUTE = '/api/v1/sandboxvolumes/:id/files/archive'
const TAR_TYPE = 'application/x-tar'

export interface VolumeArchiveRouteOptions {
  /** Tests lower these to exercise the tar-bomb refusals; production uses core/limits.ts. */
  limits?: ArchiveImportLimits
}

export function registerVolumeArchiveRoute(
  app: FastifyInstance,
  engine: VolumeEngine,
  opts: VolumeArchiveRouteOptions = {},
): void {
  // volumes.ts registers the same streaming parser; this route must not depend on the order.
  if (!app.hasContentTypeParser(TAR_TYPE))
    app.addContentTypeParser(TAR_TYPE, (_req, payload, done) => done(null, payload))
  const importLimits = opts.limits ?? limits

  app.put<{ Params: { id: string }; Querystring: { path: string }; Body: unknown }>(
    VOLUME_ARCHIVE_ROUTE,
    {
      schema: {
        params: {
          type: 'object',
          required: ['id'],
          properties: { id: { type: 'string', maxLength: 64 } },
        },
        querystring: {
          type: 'object',
          required: ['path'],
          additionalProperties: false,
          properties: { path: { type: 'string', minLength: 1, maxLength: 4096 } },
        },
      },
    },
    async (request) => {
      const body = request.body
      if (!(body instanceof Readable))
        throw new S0Error('bad_request', `send the archive as a raw tar body with Content-Type: ${TAR_TYPE}`)
      try {
        const { teamId } = requireAuth(request)
        const volume = await engine.catalog.get(teamId, request.params.id)
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
