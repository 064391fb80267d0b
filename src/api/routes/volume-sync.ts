// /api/v1/sandboxvolumes/{id}/sync/*: workspace sync (an s0 extension; docs/SYNC.md) — the
// listing and change feed, file contents as chunk lists, chunks by hash, and commits.
import { assert } from '../../core/assert.js'
import type { FastifyPluginAsync } from 'fastify'
import type { VolumeEngine } from '../../snapshots/engine.js'
import { limits } from '../../core/limits.js'
import { SyncService } from '../../sync/service.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import {
  chunkParams,
  chunkPutQuery,
  commitBody,
  missingBody,
  syncChangesQuery,
  syncFileQuery,
  syncRootQuery,
  signaturesBody,
  type SignaturesBody,
  type ChunkParams,
  type ChunkPutQuery,
  type CommitBody,
  type MissingBody,
  type SyncChangesQuery,
  type SyncFileQuery,
  type SyncRootQuery,
} from '../schemas/sync.js'
import type { PluginOptions } from '../services.js'
import { changesJson, entryJson, fileJson, opFromWire, resultJson } from '../wire/sync.js'

export const volumeSyncRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const engine = services.volumes as VolumeEngine
  const chunks = services.chunkStore
  assert(chunks, 'volume routes are served only with a chunk store')
  const sync = new SyncService({ engine, chunks, db: services.db, log: services.log })
  // Before the server waits for requests in flight: long polls answer at once.
  app.addHook('preClose', async () => sync.close())
  const chunkMax = chunks.chunkerParams.maxBytes
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer', bodyLimit: chunkMax },
    (_req, body, done) => done(null, body),
  )
  const team = (r: Parameters<typeof requireAuth>[0]): ReturnType<typeof requireAuth>['teamId'] =>
    requireAuth(r).teamId

  app.get<{ Params: IdParams; Querystring: SyncRootQuery }>(
    '/sandboxvolumes/:id/sync/tree',
    { schema: { params: idParams, querystring: syncRootQuery } },
    async (request) => {
      const t = await sync.tree(team(request), request.params.id, request.query.root)
      return ok({ cursor: t.cursor, root: t.root, entries: t.entries.map(entryJson) })
    },
  )

  app.get<{ Params: IdParams; Querystring: SyncChangesQuery }>(
    '/sandboxvolumes/:id/sync/changes',
    { schema: { params: idParams, querystring: syncChangesQuery } },
    async (request) => {
      // A client that goes away ends its long poll.
      const abort = new AbortController()
      request.raw.once('close', () => abort.abort())
      const a = await sync.changes(
        team(request),
        request.params.id,
        request.query.root,
        request.query.cursor,
        request.query.wait_ms ?? 0,
        abort.signal,
      )
      return ok(changesJson(a))
    },
  )

  app.get<{ Params: IdParams; Querystring: SyncFileQuery }>(
    '/sandboxvolumes/:id/sync/file',
    { schema: { params: idParams, querystring: syncFileQuery } },
    async (request) =>
      ok(fileJson(await sync.file(team(request), request.params.id, request.query.root, request.query.path))),
  )

  app.post<{ Params: IdParams; Body: MissingBody }>(
    '/sandboxvolumes/:id/sync/chunks/missing',
    { schema: { params: idParams, body: missingBody } },
    async (request) => {
      const t = team(request)
      await engine.catalog.getUserVolume(t, request.params.id)
      const missing = await sync.missing(
        t,
        request.body.hashes.map((h) => Buffer.from(h, 'hex')),
      )
      return ok({ missing: missing.map((h) => h.toString('hex')) })
    },
  )

  app.put<{ Params: ChunkParams; Querystring: ChunkPutQuery; Body: Buffer }>(
    '/sandboxvolumes/:id/sync/chunks/:hash',
    { schema: { params: chunkParams, querystring: chunkPutQuery } },
    async (request) => {
      const t = team(request)
      await engine.catalog.getUserVolume(t, request.params.id)
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
      const hash = Buffer.from(request.params.hash, 'hex')
      if (request.query.delta === 'true') await sync.putChunkDelta(t, hash, body)
      else await sync.putChunk(t, hash, body)
      return ok({ stored: true })
    },
  )

  app.post<{ Params: IdParams; Body: Buffer }>(
    '/sandboxvolumes/:id/sync/chunks',
    { schema: { params: idParams }, bodyLimit: limits.syncChunkBatchBytesMax },
    async (request) => {
      const t = team(request)
      await engine.catalog.getUserVolume(t, request.params.id)
      const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
      return ok({ stored: await sync.putChunks(t, body) })
    },
  )

  app.post<{ Params: IdParams; Body: SignaturesBody }>(
    '/sandboxvolumes/:id/sync/chunks/signatures',
    { schema: { params: idParams, body: signaturesBody } },
    async (request) => {
      const t = team(request)
      await engine.catalog.getUserVolume(t, request.params.id)
      const sigs = await sync.signatures(
        t,
        request.body.hashes.map((h) => Buffer.from(h, 'hex')),
        request.body.paths
          ? { volumeId: request.params.id, root: request.body.root, paths: request.body.paths }
          : undefined,
      )
      return ok({ signatures: Object.fromEntries([...sigs].map(([h, b]) => [h, b.toString('base64')])) })
    },
  )

  app.get<{ Params: ChunkParams }>(
    '/sandboxvolumes/:id/sync/chunks/:hash',
    { schema: { params: chunkParams } },
    async (request, reply) => {
      const t = team(request)
      await engine.catalog.getUserVolume(t, request.params.id)
      const data = await sync.readChunk(t, Buffer.from(request.params.hash, 'hex'))
      return reply.type('application/octet-stream').send(data)
    },
  )

  app.post<{ Params: IdParams; Body: CommitBody }>(
    '/sandboxvolumes/:id/sync/commit',
    { schema: { params: idParams, body: commitBody } },
    async (request) => {
      const r = await sync.commit(
        team(request),
        request.params.id,
        request.body.root,
        request.body.idempotency_key,
        request.body.ops.map(opFromWire),
      )
      return ok({ replayed: r.replayed, results: r.results.map(resultJson) })
    },
  )
}
