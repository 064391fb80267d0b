// Path-level operations over a Vfs for the files API: paths are relative to the volume root
// (a leading "/" is allowed), never follow symlinks, and may not contain "..", NUL or long names.
import type { Ino } from '../core/ids.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { isDir, isLnk, ROOT_INO, type Attr } from './types.js'
import { checkName, type Vfs } from './vfs.js'

export const PATH_BYTES_MAX = 4096

export function splitPath(path: string): Buffer[] {
  if (typeof path !== 'string' || path.length === 0) throw new S0Error('invalid_path', 'path is required')
  if (Buffer.byteLength(path) > PATH_BYTES_MAX)
    throw new S0Error('name_too_long', `path is longer than ${PATH_BYTES_MAX} bytes`)
  if (path.includes('\0')) throw new S0Error('invalid_path', 'path contains NUL')
  const parts: Buffer[] = []
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') throw new S0Error('invalid_path', `path may not contain "..": ${path}`)
    const name = Buffer.from(seg, 'utf8')
    checkName(name)
    parts.push(name)
  }
  return parts
}

export function joinPath(parts: Buffer[]): string {
  return '/' + parts.map((p) => p.toString('utf8')).join('/')
}

/** The inode at `parts`; intermediate components must be directories (symlinks are not followed). */
export async function resolve(vfs: Vfs, parts: Buffer[]): Promise<Attr> {
  let a = await vfs.getattr(ROOT_INO)
  for (let k = 0; k < parts.length; k++) {
    if (!isDir(a.mode)) {
      // Symlinks are not followed: a path through one is refused like a path through a file.
      throw new S0Error(
        'path_not_directory',
        `${joinPath(parts.slice(0, k))} is not a directory${isLnk(a.mode) ? ' (symlink)' : ''}`,
      )
    }
    a = await vfs.lookup(a.ino, parts[k] as Buffer).catch((err: unknown) => {
      if (err instanceof S0Error && err.code === 'file_not_found') {
        throw new S0Error('file_not_found', `${joinPath(parts.slice(0, k + 1))} does not exist`)
      }
      throw err
    })
  }
  return a
}

/** The directory that holds the last component, and that component; the root has no parent. */
export async function resolveParent(
  vfs: Vfs,
  parts: Buffer[],
  opts: { create?: boolean; owner?: { uid: number; gid: number } } = {},
): Promise<{ dir: Attr; name: Buffer }> {
  if (parts.length === 0) throw new S0Error('invalid_path', 'the volume root has no parent')
  const dirParts = parts.slice(0, -1)
  const dir = opts.create
    ? await mkdirp(vfs, dirParts, opts.owner ?? { uid: 0, gid: 0 })
    : await resolve(vfs, dirParts)
  if (!isDir(dir.mode)) throw new S0Error('path_not_directory', `${joinPath(dirParts)} is not a directory`)
  return { dir, name: parts[parts.length - 1] as Buffer }
}

export async function mkdirp(
  vfs: Vfs,
  parts: Buffer[],
  owner: { uid: number; gid: number },
  mode = 0o755,
): Promise<Attr> {
  let a = await vfs.getattr(ROOT_INO)
  for (let k = 0; k < parts.length; k++) {
    const name = parts[k] as Buffer
    if (!isDir(a.mode))
      throw new S0Error('path_not_directory', `${joinPath(parts.slice(0, k))} is not a directory`)
    try {
      a = await vfs.lookup(a.ino, name)
    } catch (err) {
      if (!(err instanceof S0Error && err.code === 'file_not_found')) throw err
      try {
        a = await vfs.mkdir(a.ino, name, mode, owner)
      } catch (e) {
        // Another request made it meanwhile: use theirs.
        if (!(e instanceof S0Error && e.code === 'path_exists')) throw e
        a = await vfs.lookup(a.ino, name)
      }
    }
  }
  if (!isDir(a.mode)) throw new S0Error('path_exists', `${joinPath(parts)} exists and is not a directory`)
  return a
}

/** Removes a file, symlink or (recursively) a directory. */
export async function removeTree(vfs: Vfs, parent: Ino, name: Buffer): Promise<void> {
  const a = await vfs.lookup(parent, name)
  if (!isDir(a.mode)) {
    await vfs.unlink(parent, name)
    return
  }
  for (;;) {
    const entries = await vfs.readdir(a.ino, null, limits.readdirPageEntries)
    if (entries.length === 0) break
    for (const e of entries) await removeTree(vfs, a.ino, e.name)
  }
  await vfs.rmdir(parent, name)
}
