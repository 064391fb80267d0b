// The sandbox files API (/api/v1/sandboxes/{id}/files...): read, write, mkdir, delete, list,
// stat, move inside the sandbox's root file system, seen from the host through its overlay.
// Every path goes through SandboxRoot (no `..`, symlinks resolved inside the rootfs only), and
// only regular files are ever opened (a device node made in the sandbox is never read).
// Note: `/tmp` and bind mounts live in the sandbox's own mount namespace; they are not visible here.
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { lstat, mkdir, opendir, readlink, rename, rm, unlink } from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { TeamId } from '../core/ids.js'
import { fsError, joinSandboxPath, SandboxRoot, splitSandboxPath, type Resolved } from './sandbox-paths.js'
import { ok, requireAuth } from './server.js'

export const sandboxFileLimits = {
  /** Sandbox0's limit for one file written through the API. */
  uploadBytesMax: 100 * 1024 * 1024,
  listEntriesMax: limits.fileListEntriesMax,
} as const

/** What the files API needs from the sandbox service. */
export interface SandboxRootSource {
  rootfs(teamId: TeamId, id: string): Promise<string>
}

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 64 } },
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

interface PathQ {
  path: string
  mkdir?: 'true' | 'false'
  recursive?: 'true' | 'false'
}

type Stat = Awaited<ReturnType<typeof lstat>>

function fileInfo(sandboxPath: string, st: Stat, target: string | undefined): Record<string, unknown> {
  return {
    name: path.posix.basename(sandboxPath) || '/',
    path: sandboxPath,
    type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file',
    size: Number(st.size),
    mode: (Number(st.mode) & 0o7777).toString(8).padStart(4, '0'),
    mod_time: st.mtime.toISOString(),
    is_link: st.isSymbolicLink(),
    ...(target !== undefined ? { link_target: target } : {}),
  }
}

export function registerSandboxFileRoutes(app: FastifyInstance, sandboxes: SandboxRootSource): void {
  if (!app.hasContentTypeParser('application/octet-stream'))
    app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload))

  const rootOf = async (teamId: TeamId, id: string): Promise<SandboxRoot> =>
    SandboxRoot.open(await sandboxes.rootfs(teamId, id))

  app.get<{ Params: { id: string }; Querystring: PathQ }>(
    '/api/v1/sandboxes/:id/files',
    { schema: { params: idParams, querystring: pathQuery } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const root = await rootOf(teamId, request.params.id)
      const r = await root.resolve(splitSandboxPath(request.query.path), { followLast: true })
      const before = await lstat(r.host)
      if (before.isDirectory()) throw new S0Error('path_not_file', `${request.query.path} is a directory`)
      if (!before.isFile()) throw new S0Error('path_not_file', `${request.query.path} is not a regular file`)
      const fh = await root.openChecked(r, constants.O_RDONLY)
      const st = await fh.stat()
      if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev) {
        await fh.close()
        throw new S0Error('conflict', `${request.query.path} changed while being opened`)
      }
      void reply.type('application/octet-stream').header('content-length', st.size)
      return reply.send(fh.createReadStream())
    },
  )

  app.post<{ Params: { id: string }; Querystring: PathQ; Body: Readable | undefined }>(
    '/api/v1/sandboxes/:id/files',
    { schema: { params: idParams, querystring: pathQuery } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const root = await rootOf(teamId, request.params.id)
      const parts = splitSandboxPath(request.query.path)
      if (request.query.mkdir === 'true') {
        request.body?.resume()
        await makeDir(root, parts, request.query.recursive === 'true')
        return reply.code(201).send(ok({ created: true }))
      }
      if (parts.length === 0) throw new S0Error('path_not_file', '/ is a directory')
      if (Number(request.headers['content-length'] ?? 0) > sandboxFileLimits.uploadBytesMax) {
        request.body?.resume()
        throw new S0Error('file_too_large', 'files written through the API are limited to 100 MiB')
      }
      await makeDir(root, parts.slice(0, -1), true)
      const r = await root.resolve(parts, { followLast: true, allowMissing: true })
      if (r.exists && (await lstat(r.host)).isDirectory())
        throw new S0Error('path_not_file', `${request.query.path} is a directory`)
      await writeAtomically(root, r, request.body)
      return ok({ written: true })
    },
  )

  app.delete<{ Params: { id: string }; Querystring: PathQ }>(
    '/api/v1/sandboxes/:id/files',
    { schema: { params: idParams, querystring: pathQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const root = await rootOf(teamId, request.params.id)
      const parts = splitSandboxPath(request.query.path)
      if (parts.length === 0) throw new S0Error('invalid_path', 'cannot delete /')
      const r = await root.resolve(parts, { followLast: false })
      await rm(r.host, { recursive: true }).catch((err: unknown) => {
        throw fsError(err, request.query.path)
      })
      return ok({ deleted: true })
    },
  )

  app.get<{ Params: { id: string }; Querystring: PathQ }>(
    '/api/v1/sandboxes/:id/files/stat',
    { schema: { params: idParams, querystring: pathQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const root = await rootOf(teamId, request.params.id)
      const r = await root.resolve(splitSandboxPath(request.query.path), { followLast: false })
      const st = await lstat(r.host)
      const target = st.isSymbolicLink() ? await readlink(r.host) : undefined
      return ok(fileInfo(joinSandboxPath(r.parts), st, target))
    },
  )

  app.get<{ Params: { id: string }; Querystring: PathQ }>(
    '/api/v1/sandboxes/:id/files/list',
    { schema: { params: idParams, querystring: pathQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const root = await rootOf(teamId, request.params.id)
      const r = await root.resolve(splitSandboxPath(request.query.path), { followLast: true })
      const st = await lstat(r.host)
      if (!st.isDirectory())
        throw new S0Error('path_not_directory', `${request.query.path} is not a directory`)
      const entries: Record<string, unknown>[] = []
      const dir = await opendir(r.host)
      for await (const e of dir) {
        if (entries.length >= sandboxFileLimits.listEntriesMax) break
        const host = path.join(r.host, e.name)
        const est = await lstat(host).catch(() => undefined)
        if (!est) continue // removed meanwhile
        const target = est.isSymbolicLink() ? await readlink(host).catch(() => '') : undefined
        entries.push(fileInfo(joinSandboxPath([...r.parts, e.name]), est, target))
      }
      entries.sort((a, b) => String(a['name']).localeCompare(String(b['name'])))
      return ok({ entries })
    },
  )

  app.post<{ Params: { id: string }; Body: { source: string; destination: string } }>(
    '/api/v1/sandboxes/:id/files/move',
    {
      schema: {
        params: idParams,
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
      const { teamId } = requireAuth(request)
      const root = await rootOf(teamId, request.params.id)
      const from = splitSandboxPath(request.body.source)
      const to = splitSandboxPath(request.body.destination)
      if (from.length === 0 || to.length === 0) throw new S0Error('invalid_path', 'cannot move /')
      const src = await root.resolve(from, { followLast: false })
      const dst = await root.resolve(to, { followLast: false, allowMissing: true })
      await rename(src.host, dst.host).catch((err: unknown) => {
        throw fsError(err, request.body.destination)
      })
      return ok({ moved: true })
    },
  )
}

/** mkdir, one component at a time, each resolved inside the root (a symlink in the way is followed there). */
async function makeDir(root: SandboxRoot, parts: readonly string[], recursive: boolean): Promise<void> {
  if (!recursive) {
    if (parts.length === 0) throw new S0Error('path_exists', '/ exists')
    const r = await root.resolve(parts, { followLast: false, allowMissing: true })
    if (r.exists) throw new S0Error('path_exists', `${joinSandboxPath(parts)} exists`)
    await mkdir(r.host, { mode: 0o755 }).catch((err: unknown) => {
      throw fsError(err, joinSandboxPath(parts))
    })
    return
  }
  for (let i = 1; i <= parts.length; i++) {
    const r = await root.resolve(parts.slice(0, i), { followLast: true, allowMissing: true })
    if (r.exists) {
      if (!(await lstat(r.host)).isDirectory())
        throw new S0Error('path_not_directory', `${joinSandboxPath(parts.slice(0, i))} is not a directory`)
      continue
    }
    await mkdir(r.host, { mode: 0o755 }).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
        throw fsError(err, joinSandboxPath(parts.slice(0, i)))
    })
  }
}

/** Temp file beside the target, size-capped, fsynced, renamed over it: readers see old or new. */
async function writeAtomically(
  root: SandboxRoot,
  target: Resolved,
  body: Readable | undefined,
): Promise<void> {
  const tmpParts = [...target.parts.slice(0, -1), `.s0-upload-${randomBytes(6).toString('hex')}`]
  const tmp = await root.resolve(tmpParts, { followLast: false, allowMissing: true })
  const fh = await root.openChecked(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644)
  let done = false
  try {
    let written = 0
    if (body) {
      // Not destroyed when we stop early: that would reset the socket before the 413 is sent.
      for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        written += chunk.length
        if (written > sandboxFileLimits.uploadBytesMax)
          throw new S0Error('file_too_large', `files written through the API are limited to 100 MiB`)
        await fh.write(chunk)
      }
    }
    await fh.sync()
    await fh.close()
    await rename(tmp.host, target.host).catch((err: unknown) => {
      throw fsError(err, joinSandboxPath(target.parts))
    })
    done = true
  } finally {
    // The rest of a refused upload is read and dropped, so the client finishes and reads the reply.
    if (body && !body.readableEnded) body.resume()
    if (!done) {
      await fh.close().catch(() => undefined)
      await unlink(tmp.host).catch(() => undefined)
    }
  }
}
