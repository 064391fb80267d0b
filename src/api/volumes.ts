// The Sandbox0 volume API (/api/v1/sandboxvolumes): volumes, snapshots, fork, restore and files,
// in the SDK's wire shapes (snake_case, bare arrays for lists). Team-scoped: another team's
// volume is a 404. File bodies stream in and out; nothing holds a whole file in memory.
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TeamId } from '../core/ids.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import type { MountManager } from '../fuse/mounts.js'
import { joinPath, mkdirp, removeTree, resolve, resolveParent, splitPath } from '../snapshots/paths.js'
import { isDir, isLnk, type Attr } from '../snapshots/types.js'
import type { Vfs } from '../snapshots/vfs.js'
import type { SnapshotRow, VolumeRow } from '../snapshots/volume-catalog.js'
import { ok, requireAuth } from './server.js'

const READ_PIECE_BYTES = 4 * 1024 * 1024

const volumeIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 64 } },
} as const
const snapshotParams = {
  type: 'object',
  required: ['id', 'snapshot_id'],
  properties: { id: { type: 'string', maxLength: 64 }, snapshot_id: { type: 'string', maxLength: 64 } },
} as const
const pathQuery = {
  type: 'object',
  required: ['path'],
  additionalProperties: false,
  properties: {
    path: { type: 'string', minLength: 1, maxLength: 4096 },
    mkdir: { type: 'string', enum: ['true', 'false'] },
    recursive: { type: 'string', enum: ['true', 'false'] },
  },
} as const
const posixId = { type: 'integer', minimum: 0, maximum: 4294967295 } as const
const accessMode = { type: 'string', enum: ['RWO', 'ROX', 'RWX'] } as const

export function volumeJson(v: VolumeRow): Record<string, unknown> {
  return {
    id: v.id,
    team_id: v.teamId,
    user_id: '',
    source_volume_id: v.sourceVolumeId,
    default_posix_uid: v.defaultPosixUid,
    default_posix_gid: v.defaultPosixGid,
    access_mode: v.accessMode,
    backend: 's0fs',
    metered_storage_bytes: v.usedBytes,
    storage_observed_at: v.updatedAt.toISOString(),
    created_at: v.createdAt.toISOString(),
    updated_at: v.updatedAt.toISOString(),
  }
}

export function snapshotJson(s: SnapshotRow): Record<string, unknown> {
  return {
    id: s.id,
    volume_id: s.volumeId,
    name: s.name,
    description: s.description,
    size_bytes: s.sizeBytes,
    created_at: s.createdAt.toISOString(),
    expires_at: s.expiresAt ? s.expiresAt.toISOString() : null,
  }
}

function fileInfo(path: string, name: string, a: Attr, target: Buffer | null): Record<string, unknown> {
  return {
    name,
    path,
    type: isDir(a.mode) ? 'dir' : isLnk(a.mode) ? 'symlink' : 'file',
    size: a.size,
    mode: (a.mode & 0o7777).toString(8).padStart(4, '0'),
    mod_time: new Date(Number(a.mtimeNs / 1_000_000n)).toISOString(),
    is_link: isLnk(a.mode),
    ...(target ? { link_target: target.toString('utf8') } : {}),
  }
}

interface Ids {
  id: string
}
interface SnapIds extends Ids {
  snapshot_id: string
}
interface PathQ {
  path: string
  mkdir?: 'true' | 'false'
  recursive?: 'true' | 'false'
}

/**
 * A volume of the team that the volumes API may show: sandbox root-filesystem volumes are the
 * sandboxes API's business and are not found here.
 */
export async function userVolume(engine: VolumeEngine, teamId: TeamId, id: string): Promise<VolumeRow> {
  const v = await engine.catalog.get(teamId, id)
  if (v.kind !== 'volume') throw new S0Error('not_found', `volume ${id} not found`)
  return v
}

export function registerVolumeRoutes(
  app: FastifyInstance,
  engine: VolumeEngine,
  mounts?: MountManager,
): void {
  // File bodies are streams we consume ourselves (bounded by fileUploadBytesMax, not bodyLimit).
  app.addContentTypeParser(['application/octet-stream', 'application/x-tar'], (_req, payload, done) =>
    done(null, payload),
  )

  const vfsOf = async (request: FastifyRequest, id: string): Promise<{ vfs: Vfs; volume: VolumeRow }> => {
    const { teamId } = requireAuth(request)
    const volume = await userVolume(engine, teamId, id)
    return { vfs: await engine.vfs(teamId, id), volume }
  }

  app.post<{ Body: Record<string, unknown> | undefined }>(
    '/api/v1/sandboxvolumes',
    {
      schema: {
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: {
            snapshot_id: { type: 'string', maxLength: 64 },
            backend: { type: 'string', enum: ['s0fs'] },
            default_posix_uid: posixId,
            default_posix_gid: posixId,
            access_mode: accessMode,
          },
        },
      },
    },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = (request.body ?? {}) as {
        snapshot_id?: string
        default_posix_uid?: number
        default_posix_gid?: number
        access_mode?: 'RWO' | 'ROX' | 'RWX'
      }
      const v = await engine.create(teamId, {
        ...(b.snapshot_id !== undefined ? { snapshotId: b.snapshot_id } : {}),
        ...(b.default_posix_uid !== undefined ? { defaultPosixUid: b.default_posix_uid } : {}),
        ...(b.default_posix_gid !== undefined ? { defaultPosixGid: b.default_posix_gid } : {}),
        ...(b.access_mode !== undefined ? { accessMode: b.access_mode } : {}),
      })
      return reply.code(201).send(ok(volumeJson(v)))
    },
  )

  app.get('/api/v1/sandboxvolumes', async (request) => {
    const { teamId } = requireAuth(request)
    return ok((await engine.catalog.list(teamId)).map(volumeJson))
  })

  app.get<{ Params: Ids }>(
    '/api/v1/sandboxvolumes/:id',
    { schema: { params: volumeIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(volumeJson(await userVolume(engine, teamId, request.params.id)))
    },
  )

  app.delete<{ Params: Ids; Querystring: { force?: string } }>(
    '/api/v1/sandboxvolumes/:id',
    {
      schema: {
        params: volumeIdParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { force: { type: 'string', enum: ['true', 'false'] } },
        },
      },
    },
    async (request) => {
      const { teamId } = requireAuth(request)
      await userVolume(engine, teamId, request.params.id) // 404 first
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

  app.post<{ Params: Ids; Body: Record<string, unknown> | undefined }>(
    '/api/v1/sandboxvolumes/:id/fork',
    {
      schema: {
        params: volumeIdParams,
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: { default_posix_uid: posixId, default_posix_gid: posixId, access_mode: accessMode },
        },
      },
    },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      await userVolume(engine, teamId, request.params.id)
      const b = (request.body ?? {}) as {
        default_posix_uid?: number
        default_posix_gid?: number
        access_mode?: 'RWO' | 'ROX' | 'RWX'
      }
      const v = await engine.fork(teamId, request.params.id, {
        ...(b.default_posix_uid !== undefined ? { defaultPosixUid: b.default_posix_uid } : {}),
        ...(b.default_posix_gid !== undefined ? { defaultPosixGid: b.default_posix_gid } : {}),
        ...(b.access_mode !== undefined ? { accessMode: b.access_mode } : {}),
      })
      return reply.code(201).send(ok(volumeJson(v)))
    },
  )

  app.post<{ Params: Ids; Body: { name: string; description?: string } }>(
    '/api/v1/sandboxvolumes/:id/snapshots',
    {
      schema: {
        params: volumeIdParams,
        body: {
          type: 'object',
          required: ['name'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 255 },
            description: { type: 'string', maxLength: 4096 },
          },
        },
      },
    },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      await userVolume(engine, teamId, request.params.id)
      const s = await engine.snapshot(teamId, request.params.id, {
        name: request.body.name,
        ...(request.body.description !== undefined ? { description: request.body.description } : {}),
      })
      return reply.code(201).send(ok(snapshotJson(s)))
    },
  )

  app.get<{ Params: Ids }>(
    '/api/v1/sandboxvolumes/:id/snapshots',
    { schema: { params: volumeIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await userVolume(engine, teamId, request.params.id)
      return ok((await engine.catalog.listSnapshots(teamId, request.params.id)).map(snapshotJson))
    },
  )

  app.get<{ Params: SnapIds }>(
    '/api/v1/sandboxvolumes/:id/snapshots/:snapshot_id',
    { schema: { params: snapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await userVolume(engine, teamId, request.params.id)
      return ok(
        snapshotJson(await engine.catalog.getSnapshot(teamId, request.params.id, request.params.snapshot_id)),
      )
    },
  )

  app.delete<{ Params: SnapIds }>(
    '/api/v1/sandboxvolumes/:id/snapshots/:snapshot_id',
    { schema: { params: snapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await userVolume(engine, teamId, request.params.id)
      await engine.catalog.deleteSnapshot(teamId, request.params.id, request.params.snapshot_id)
      return ok({ deleted: true })
    },
  )

  app.post<{ Params: SnapIds }>(
    '/api/v1/sandboxvolumes/:id/snapshots/:snapshot_id/restore',
    { schema: { params: snapshotParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await userVolume(engine, teamId, request.params.id)
      await engine.restore(teamId, request.params.id, request.params.snapshot_id)
      return ok({ status: 'restored' })
    },
  )

  // ---- files ------------------------------------------------------------------------------

  app.get<{ Params: Ids; Querystring: PathQ }>(
    '/api/v1/sandboxvolumes/:id/files',
    { schema: { params: volumeIdParams, querystring: pathQuery } },
    async (request, reply) => {
      const { vfs } = await vfsOf(request, request.params.id)
      const a = await resolve(vfs, splitPath(request.query.path))
      if (isDir(a.mode)) throw new S0Error('path_not_file', `${request.query.path} is a directory`)
      const accept = request.headers.accept ?? ''
      if (accept.includes('application/json') && !accept.includes('*/*')) {
        return ok({ content: (await vfs.read(a.ino, 0, a.size)).toString('base64'), encoding: 'base64' })
      }
      return reply
        .type('application/octet-stream')
        .header('content-length', a.size)
        .send(Readable.from(readPieces(vfs, a)))
    },
  )

  app.post<{ Params: Ids; Querystring: PathQ; Body: unknown }>(
    '/api/v1/sandboxvolumes/:id/files',
    { schema: { params: volumeIdParams, querystring: pathQuery } },
    async (request, reply) => {
      const { vfs, volume } = await vfsOf(request, request.params.id)
      const parts = splitPath(request.query.path)
      const owner = { uid: volume.defaultPosixUid, gid: volume.defaultPosixGid }
      if (request.query.mkdir === 'true') {
        if (request.query.recursive === 'true') await mkdirp(vfs, parts, owner)
        else {
          const { dir, name } = await resolveParent(vfs, parts)
          await vfs.mkdir(dir.ino, name, 0o755, owner)
        }
        await vfs.sync() // an acknowledged change is durable
        return reply.code(201).send(ok({ created: true }))
      }
      const body = request.body
      const stream =
        body instanceof Readable
          ? body
          : Readable.from(body === undefined || body === null ? [] : [Buffer.from(JSON.stringify(body))])
      await writeAtomically(vfs, parts, owner, stream)
      return ok({ written: true })
    },
  )

  app.delete<{ Params: Ids; Querystring: PathQ }>(
    '/api/v1/sandboxvolumes/:id/files',
    { schema: { params: volumeIdParams, querystring: pathQuery } },
    async (request) => {
      const { vfs } = await vfsOf(request, request.params.id)
      const { dir, name } = await resolveParent(vfs, splitPath(request.query.path))
      await removeTree(vfs, dir.ino, name)
      await vfs.sync()
      return ok({ deleted: true })
    },
  )

  app.get<{ Params: Ids; Querystring: PathQ }>(
    '/api/v1/sandboxvolumes/:id/files/stat',
    { schema: { params: volumeIdParams, querystring: pathQuery } },
    async (request) => {
      const { vfs } = await vfsOf(request, request.params.id)
      const parts = splitPath(request.query.path)
      const a = await resolve(vfs, parts)
      const name = parts.length === 0 ? '/' : (parts[parts.length - 1] as Buffer).toString('utf8')
      return ok(fileInfo(joinPath(parts), name, a, isLnk(a.mode) ? await vfs.readlink(a.ino) : null))
    },
  )

  app.get<{ Params: Ids; Querystring: PathQ }>(
    '/api/v1/sandboxvolumes/:id/files/list',
    { schema: { params: volumeIdParams, querystring: pathQuery } },
    async (request) => {
      const { vfs } = await vfsOf(request, request.params.id)
      const parts = splitPath(request.query.path)
      const dir = await resolve(vfs, parts)
      if (!isDir(dir.mode))
        throw new S0Error('path_not_directory', `${request.query.path} is not a directory`)
      const entries: Array<Record<string, unknown>> = []
      let after: Buffer | null = null
      for (;;) {
        const page = await vfs.readdir(dir.ino, after, 1000)
        for (const e of page) {
          const a = await vfs.getattr(e.ino)
          const name = e.name.toString('utf8')
          entries.push(
            fileInfo(joinPath([...parts, e.name]), name, a, isLnk(a.mode) ? await vfs.readlink(a.ino) : null),
          )
          if (entries.length > limits.fileListEntriesMax) {
            throw new S0Error('bad_request', `directory has more than ${limits.fileListEntriesMax} entries`)
          }
        }
        if (page.length < 1000) break
        after = (page[page.length - 1] as { name: Buffer }).name
      }
      return ok({ entries })
    },
  )

  app.post<{ Params: Ids; Body: { source: string; destination: string } }>(
    '/api/v1/sandboxvolumes/:id/files/move',
    {
      schema: {
        params: volumeIdParams,
        body: {
          type: 'object',
          required: ['source', 'destination'],
          additionalProperties: false,
          properties: {
            source: { type: 'string', minLength: 1, maxLength: 4096 },
            destination: { type: 'string', minLength: 1, maxLength: 4096 },
          },
        },
      },
    },
    async (request) => {
      const { vfs } = await vfsOf(request, request.params.id)
      const from = await resolveParent(vfs, splitPath(request.body.source))
      const to = await resolveParent(vfs, splitPath(request.body.destination))
      await vfs.rename(from.dir.ino, from.name, to.dir.ino, to.name)
      await vfs.sync()
      return ok({ moved: true })
    },
  )
}

async function* readPieces(vfs: Vfs, a: Attr): AsyncIterable<Buffer> {
  for (let off = 0; off < a.size; off += READ_PIECE_BYTES)
    yield await vfs.read(a.ino, off, Math.min(READ_PIECE_BYTES, a.size - off))
}

/**
 * Streams the body into a temporary file beside the target, makes it durable, then renames it
 * over the target: readers see the old file or the whole new one, and a failed upload changes
 * nothing. The reply is sent only after the rename committed (an acknowledged write is durable).
 */
async function writeAtomically(
  vfs: Vfs,
  parts: ReturnType<typeof splitPath>,
  owner: { uid: number; gid: number },
  body: Readable,
): Promise<void> {
  const { dir, name } = await resolveParent(vfs, parts, { create: true, owner })
  const existing = await vfs.lookup(dir.ino, name).catch(() => undefined)
  if (existing && isDir(existing.mode))
    throw new S0Error('path_not_file', `${joinPath(parts)} is a directory`)
  const tmpName = Buffer.from(`.s0-upload-${randomBytes(8).toString('hex')}`)
  const tmp = await vfs.create(dir.ino, tmpName, existing ? existing.mode & 0o7777 : 0o644, owner)
  vfs.open(tmp.ino)
  let ok = false
  try {
    let off = 0
    // Not destroyed when we stop early (too large, a failed write): destroying the request
    // would reset the socket before the error reply reaches the client.
    for await (const piece of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      if (off + piece.length > limits.fileUploadBytesMax) {
        throw new S0Error('file_too_large', `file exceeds ${limits.fileUploadBytesMax} bytes`)
      }
      await vfs.write(tmp.ino, off, piece)
      off += piece.length
    }
    await vfs.flush(tmp.ino)
    await vfs.rename(dir.ino, tmpName, dir.ino, name)
    // One synchronous commit makes the content, the rename and everything before durable.
    await vfs.sync()
    ok = true
  } finally {
    // The rest of a refused upload is read and dropped, so the client finishes and reads the reply.
    if (!body.readableEnded) body.resume()
    await vfs.release(tmp.ino).catch(() => undefined)
    if (!ok) await vfs.unlink(dir.ino, tmpName).catch(() => undefined)
  }
}
