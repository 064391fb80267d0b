// The volume files API's operations over a volume's Vfs: read (streamed in pieces), write (a temp
// file renamed over the target, durable before the answer), mkdir, delete, stat, list and move.
// Every acknowledged change is synced: what the API answered survives a crash.
import { randomBytes } from 'node:crypto'
import type { Readable } from 'node:stream'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { joinPath, mkdirp, removeTree, resolve, resolveParent, splitPath } from './paths.js'
import { isDir, isLnk, type Attr } from './types.js'
import type { Vfs } from './vfs.js'

/** Names of files an upload writes beside its target and renames over it (never synced). */
export const UPLOAD_TEMP_PREFIX = '.s0-upload-'

export type VolumeFileType = 'file' | 'dir' | 'symlink'

export interface VolumeFileInfo {
  name: string
  path: string
  type: VolumeFileType
  size: number
  mode: number
  modTime: Date
  isLink: boolean
  linkTarget?: string
}

export interface Owner {
  uid: number
  gid: number
}

function fileInfo(path: string, name: string, a: Attr, target: Buffer | null): VolumeFileInfo {
  return {
    name,
    path,
    type: isDir(a.mode) ? 'dir' : isLnk(a.mode) ? 'symlink' : 'file',
    size: a.size,
    mode: a.mode & 0o7777,
    modTime: new Date(Number(a.mtimeNs / 1_000_000n)),
    isLink: isLnk(a.mode),
    ...(target ? { linkTarget: target.toString('utf8') } : {}),
  }
}

/** A regular file: its attributes, to read it whole or in pieces. */
export async function openForRead(vfs: Vfs, path: string): Promise<Attr> {
  const a = await resolve(vfs, splitPath(path))
  if (isDir(a.mode)) throw new S0Error('path_not_file', `${path} is a directory`)
  return a
}

/** The file's content in pieces of fileReadPieceBytes (nothing holds the whole file). */
export async function* readPieces(vfs: Vfs, a: Attr): AsyncIterable<Buffer> {
  for (let off = 0; off < a.size; off += limits.fileReadPieceBytes)
    yield await vfs.read(a.ino, off, Math.min(limits.fileReadPieceBytes, a.size - off))
}

export async function makeDirectory(vfs: Vfs, path: string, recursive: boolean, owner: Owner): Promise<void> {
  const parts = splitPath(path)
  if (recursive) await mkdirp(vfs, parts, owner)
  else {
    const { dir, name } = await resolveParent(vfs, parts)
    await vfs.mkdir(dir.ino, name, 0o755, owner)
  }
  await vfs.sync() // an acknowledged change is durable
}

export async function remove(vfs: Vfs, path: string): Promise<void> {
  const { dir, name } = await resolveParent(vfs, splitPath(path))
  await removeTree(vfs, dir.ino, name)
  await vfs.sync()
}

export async function stat(vfs: Vfs, path: string): Promise<VolumeFileInfo> {
  const parts = splitPath(path)
  const a = await resolve(vfs, parts)
  const name = parts.length === 0 ? '/' : (parts[parts.length - 1] as Buffer).toString('utf8')
  return fileInfo(joinPath(parts), name, a, isLnk(a.mode) ? await vfs.readlink(a.ino) : null)
}

/** A directory's entries, at most fileListEntriesMax (more is refused rather than cut short). */
export async function list(vfs: Vfs, path: string): Promise<VolumeFileInfo[]> {
  const parts = splitPath(path)
  const dir = await resolve(vfs, parts)
  if (!isDir(dir.mode)) throw new S0Error('path_not_directory', `${path} is not a directory`)
  const entries: VolumeFileInfo[] = []
  let after: Buffer | null = null
  for (;;) {
    const page = await vfs.readdir(dir.ino, after, limits.readdirPageEntries)
    for (const e of page) {
      const a = await vfs.getattr(e.ino)
      const name = e.name.toString('utf8')
      entries.push(
        fileInfo(joinPath([...parts, e.name]), name, a, isLnk(a.mode) ? await vfs.readlink(a.ino) : null),
      )
      if (entries.length > limits.fileListEntriesMax)
        throw new S0Error('bad_request', `directory has more than ${limits.fileListEntriesMax} entries`)
    }
    if (page.length < limits.readdirPageEntries) break
    after = (page[page.length - 1] as { name: Buffer }).name
  }
  return entries
}

export async function move(vfs: Vfs, source: string, destination: string): Promise<void> {
  const from = await resolveParent(vfs, splitPath(source))
  const to = await resolveParent(vfs, splitPath(destination))
  await vfs.rename(from.dir.ino, from.name, to.dir.ino, to.name)
  await vfs.sync()
}

/**
 * Streams the body into a temporary file beside the target, makes it durable, then renames it
 * over the target: readers see the old file or the whole new one, and a failed upload changes
 * nothing. It returns only after the rename committed (an acknowledged write is durable).
 */
export async function writeFile(vfs: Vfs, path: string, owner: Owner, body: Readable): Promise<void> {
  const parts = splitPath(path)
  const { dir, name } = await resolveParent(vfs, parts, { create: true, owner })
  // Only "absent" matters here; any other lookup failure shows again at create below.
  const existing = await vfs.lookup(dir.ino, name).catch(() => undefined)
  if (existing && isDir(existing.mode))
    throw new S0Error('path_not_file', `${joinPath(parts)} is a directory`)
  const tmpName = Buffer.from(`${UPLOAD_TEMP_PREFIX}${randomBytes(8).toString('hex')}`)
  const tmp = await vfs.create(dir.ino, tmpName, existing ? existing.mode & 0o7777 : 0o644, owner)
  vfs.open(tmp.ino)
  let ok = false
  try {
    let off = 0
    // Not destroyed when we stop early (too large, a failed write): destroying the request
    // would reset the socket before the error reply reaches the client.
    for await (const piece of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      if (off + piece.length > limits.fileUploadBytesMax)
        throw new S0Error('file_too_large', `file exceeds ${limits.fileUploadBytesMax} bytes`)
      await vfs.write(tmp.ino, off, piece)
      off += piece.length
    }
    await vfs.flush(tmp.ino)
    await vfs.rename(dir.ino, tmpName, dir.ino, name)
    // One synchronous commit makes the content, the rename and everything before durable.
    await vfs.sync()
    ok = true
  } finally {
    // Cleanup after success or while a failure is thrown: an error here must not replace it.
    await vfs.release(tmp.ino).catch(() => undefined)
    if (!ok) await vfs.unlink(dir.ino, tmpName).catch(() => undefined)
  }
}
