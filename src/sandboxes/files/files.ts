// The sandbox files API's operations: read, write, mkdir, delete, list, stat and move of paths
// inside a running sandbox, on the host through the sandbox's mount view (so `/tmp`, `/dev/shm`
// and volume mount points are the same files the processes inside see). Only regular files are
// ever opened (a device node made in the sandbox is never read); writes go to a temp file that is
// fsynced and renamed over the target, so readers see the old or the new file, never a part.
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { lstat, mkdir, opendir, readlink, rename, rm, unlink } from 'node:fs/promises'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { UPLOAD_TEMP_PREFIX } from '../../snapshots/volume-files.js'
import { fsError, joinSandboxPath, splitSandboxPath, type Resolved, type SandboxTree } from './paths.js'

export type FileType = 'file' | 'dir' | 'symlink'

/** One entry of a listing or a stat. */
export interface FileInfo {
  name: string
  path: string
  type: FileType
  size: number
  /** Permission bits (`& 0o7777`). */
  mode: number
  modTime: Date
  isLink: boolean
  linkTarget?: string
}

type Stat = Awaited<ReturnType<typeof lstat>>

function fileInfo(sandboxPath: string, st: Stat, target: string | undefined): FileInfo {
  return {
    name: path.posix.basename(sandboxPath) || '/',
    path: sandboxPath,
    type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file',
    size: Number(st.size),
    mode: Number(st.mode) & 0o7777,
    modTime: st.mtime,
    isLink: st.isSymbolicLink(),
    ...(target !== undefined ? { linkTarget: target } : {}),
  }
}

function refuseReadOnly(r: Resolved, sandboxPath: string): void {
  if (r.mount.readOnly)
    throw new S0Error('read_only', `${sandboxPath} is on a read-only mount (${r.mount.containerPath})`)
}

/** A regular file's content as a stream, and its size (for Content-Length). */
export async function readFile(
  tree: SandboxTree,
  sandboxPath: string,
): Promise<{ size: number; stream: Readable }> {
  const r = await tree.resolve(splitSandboxPath(sandboxPath), { followLast: true })
  const before = await lstat(r.host)
  if (before.isDirectory()) throw new S0Error('path_not_file', `${sandboxPath} is a directory`)
  if (!before.isFile()) throw new S0Error('path_not_file', `${sandboxPath} is not a regular file`)
  const fh = await tree.openChecked(r, constants.O_RDONLY)
  const st = await fh.stat()
  if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev) {
    await fh.close()
    throw new S0Error('conflict', `${sandboxPath} changed while being opened`)
  }
  return { size: st.size, stream: fh.createReadStream() }
}

/**
 * Writes `body` to the file (parents made as needed), atomically. `declaredBytes` (a
 * Content-Length) over the limit is refused before anything is written.
 */
export async function writeFile(
  tree: SandboxTree,
  sandboxPath: string,
  body: Readable | undefined,
  declaredBytes: number,
): Promise<void> {
  const parts = splitSandboxPath(sandboxPath)
  if (parts.length === 0) throw new S0Error('path_not_file', '/ is a directory')
  if (declaredBytes > limits.sandboxUploadBytesMax) throw tooLarge()
  await makeDir(tree, parts.slice(0, -1), true)
  const r = await tree.resolve(parts, { followLast: true, allowMissing: true })
  refuseReadOnly(r, sandboxPath)
  if (r.exists && (await lstat(r.host)).isDirectory())
    throw new S0Error('path_not_file', `${sandboxPath} is a directory`)
  await writeAtomically(tree, r, body)
}

/** mkdir (with `recursive`: of every missing component, and no error if it exists). */
export async function makeDirectory(
  tree: SandboxTree,
  sandboxPath: string,
  recursive: boolean,
): Promise<void> {
  await makeDir(tree, splitSandboxPath(sandboxPath), recursive)
}

/** Removes a file, a symlink (not its target) or a directory tree. */
export async function remove(tree: SandboxTree, sandboxPath: string): Promise<void> {
  const parts = splitSandboxPath(sandboxPath)
  if (parts.length === 0) throw new S0Error('invalid_path', 'cannot delete /')
  const r = await tree.resolve(parts, { followLast: false })
  if (r.isMountPoint)
    throw new S0Error('conflict', `${sandboxPath} is a mount point of the sandbox; it cannot be deleted`)
  refuseReadOnly(r, sandboxPath)
  await rm(r.host, { recursive: true }).catch((err: unknown) => {
    throw fsError(err, sandboxPath)
  })
}

export async function stat(tree: SandboxTree, sandboxPath: string): Promise<FileInfo> {
  const r = await tree.resolve(splitSandboxPath(sandboxPath), { followLast: false })
  const st = await lstat(r.host)
  const target = st.isSymbolicLink() ? await readlink(r.host) : undefined
  return fileInfo(joinSandboxPath(r.parts), st, target)
}

/** A directory's entries, sorted by name, at most fileListEntriesMax of them. */
export async function list(tree: SandboxTree, sandboxPath: string): Promise<FileInfo[]> {
  const r = await tree.resolve(splitSandboxPath(sandboxPath), { followLast: true })
  const st = await lstat(r.host)
  if (!st.isDirectory()) throw new S0Error('path_not_directory', `${sandboxPath} is not a directory`)
  const entries: FileInfo[] = []
  const dir = await opendir(r.host)
  for await (const e of dir) {
    if (entries.length >= limits.fileListEntriesMax) break
    const childParts = [...r.parts, e.name]
    // A mount point below (a volume) shows what is mounted there, as `ls` inside shows it.
    const host = tree.hostOf(childParts).host
    const est = await lstat(host).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined // removed meanwhile
      throw fsError(err, joinSandboxPath(childParts))
    })
    if (!est) continue
    // A link removed between lstat and readlink shows with an empty target rather than failing the listing.
    const target = est.isSymbolicLink() ? await readlink(host).catch(() => '') : undefined
    entries.push(fileInfo(joinSandboxPath(childParts), est, target))
  }
  entries.sort((a, b) => a.name.localeCompare(b.name))
  return entries
}

/** rename(2) inside one file system of the sandbox; across two (a volume and the root) refused. */
export async function move(tree: SandboxTree, source: string, destination: string): Promise<void> {
  const from = splitSandboxPath(source)
  const to = splitSandboxPath(destination)
  if (from.length === 0 || to.length === 0) throw new S0Error('invalid_path', 'cannot move /')
  const src = await tree.resolve(from, { followLast: false })
  const dst = await tree.resolve(to, { followLast: false, allowMissing: true })
  if (src.isMountPoint || dst.isMountPoint)
    throw new S0Error(
      'conflict',
      `${src.isMountPoint ? source : destination} is a mount point of the sandbox`,
    )
  if (src.mount !== dst.mount)
    throw new S0Error(
      'cross_device',
      `${source} and ${destination} are on different file systems of the sandbox (${src.mount.containerPath}, ${dst.mount.containerPath})`,
    )
  refuseReadOnly(src, source)
  await rename(src.host, dst.host).catch((err: unknown) => {
    throw fsError(err, destination, dst.mount)
  })
}

/** mkdir, one component at a time, each resolved inside the tree (a symlink in the way is followed there). */
async function makeDir(tree: SandboxTree, parts: readonly string[], recursive: boolean): Promise<void> {
  if (!recursive) {
    if (parts.length === 0) throw new S0Error('path_exists', '/ exists')
    const r = await tree.resolve(parts, { followLast: false, allowMissing: true })
    if (r.exists) throw new S0Error('path_exists', `${joinSandboxPath(parts)} exists`)
    refuseReadOnly(r, joinSandboxPath(parts))
    await mkdir(r.host, { mode: 0o755 }).catch((err: unknown) => {
      throw fsError(err, joinSandboxPath(parts), r.mount)
    })
    return
  }
  for (let i = 1; i <= parts.length; i++) {
    if (tree.passThrough(parts.slice(0, i))) continue // /dev on the way to /dev/shm: it is there
    const r = await tree.resolve(parts.slice(0, i), { followLast: true, allowMissing: true })
    if (r.exists) {
      if (!(await lstat(r.host)).isDirectory())
        throw new S0Error('path_not_directory', `${joinSandboxPath(parts.slice(0, i))} is not a directory`)
      continue
    }
    refuseReadOnly(r, joinSandboxPath(parts.slice(0, i)))
    await mkdir(r.host, { mode: 0o755 }).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
        throw fsError(err, joinSandboxPath(parts.slice(0, i)), r.mount)
    })
  }
}

function tooLarge(): S0Error {
  return new S0Error(
    'file_too_large',
    `files written through the API are limited to ${limits.sandboxUploadBytesMax} bytes`,
  )
}

/** Temp file beside the target, size-capped, fsynced, renamed over it: readers see old or new. */
async function writeAtomically(
  tree: SandboxTree,
  target: Resolved,
  body: Readable | undefined,
): Promise<void> {
  const tmpParts = [...target.parts.slice(0, -1), `${UPLOAD_TEMP_PREFIX}${randomBytes(6).toString('hex')}`]
  const tmp = await tree.resolve(tmpParts, { followLast: false, allowMissing: true })
  const fh = await tree.openChecked(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644)
  let done = false
  // A full file system (the sandbox's disk limit) shows at a write, the sync or the close.
  const full = (err: unknown): unknown => fsError(err, joinSandboxPath(target.parts), target.mount)
  try {
    let written = 0
    if (body) {
      // Not destroyed when we stop early: that would reset the socket before the 413 is sent.
      for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        written += chunk.length
        if (written > limits.sandboxUploadBytesMax) throw tooLarge()
        await fh.write(chunk).catch((err: unknown) => {
          throw full(err)
        })
      }
    }
    await fh.sync().catch((err: unknown) => {
      throw full(err)
    })
    await fh.close().catch((err: unknown) => {
      throw full(err)
    })
    await rename(tmp.host, target.host).catch((err: unknown) => {
      throw full(err)
    })
    done = true
  } finally {
    // The rest of a refused upload is read and dropped, so the client finishes and reads the reply.
    if (body && !body.readableEnded) body.resume()
    if (!done) {
      // Cleanup after a failure that is already being thrown: a close or unlink error here must
      // not hide it (the temp name is random; a leftover is harmless and visible to the user).
      await fh.close().catch(() => undefined)
      await unlink(tmp.host).catch(() => undefined)
    }
  }
}
