// What workspace sync knows of a volume's node: its kind, permission bits, size, times and a
// version that changes whenever its content, mode or identity does. Paths are relative to the
// sync root, '/'-joined, without a leading slash. Pure, plus the tree walk over a Vfs.
import { S0Error } from '../core/errors.js'
import type { Ino } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { joinPath, resolve, splitPath } from '../snapshots/paths.js'
import { isDir, isLnk, isReg, type Attr } from '../snapshots/types.js'
import type { Vfs } from '../snapshots/vfs.js'
import { UPLOAD_TEMP_PREFIX } from '../snapshots/volume-files.js'

/** Names the server's commits write first and rename into place; never listed, never synced. */
export const TEMP_PREFIX = '.s0sync-'

/** A file a write in progress puts beside its target (a sync's or an upload's): never synced. */
export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX) || name.startsWith(UPLOAD_TEMP_PREFIX)
}

export type SyncKind = 'file' | 'dir' | 'symlink' | 'other'

export interface SyncEntry {
  path: string
  kind: SyncKind
  /** Permission bits (0o7777). */
  mode: number
  size: number
  /** Nanoseconds since the epoch, as a decimal string (JSON-safe, exact). */
  mtimeNs: string
  ino: number
  /** Opaque: equal versions mean the same node with the same content, mode and times. */
  version: string
  /** Symlinks: the target, never followed. */
  target?: string
}

export function kindOfMode(mode: number): SyncKind {
  return isReg(mode) ? 'file' : isDir(mode) ? 'dir' : isLnk(mode) ? 'symlink' : 'other'
}

/**
 * Every change of content or attributes moves ctime; the inode number tells replacement apart.
 * A directory's version is its identity and mode only: what it holds has versions of its own,
 * and its times move with every entry added or removed (a rename of it must not fail for that).
 */
export function versionOf(a: Attr): string {
  const mode = (a.mode & 0o7777).toString(8)
  if (isDir(a.mode)) return `${a.ino}.d.${mode}`
  return `${a.ino}.${a.ctimeNs}.${a.mtimeNs}.${a.size}.${mode}`
}

export async function entryOf(vfs: Vfs, path: string, a: Attr): Promise<SyncEntry> {
  const kind = kindOfMode(a.mode)
  return {
    path,
    kind,
    mode: a.mode & 0o7777,
    size: kind === 'dir' ? 0 : a.size,
    mtimeNs: a.mtimeNs.toString(),
    ino: a.ino,
    version: versionOf(a),
    ...(kind === 'symlink' ? { target: (await vfs.readlink(a.ino)).toString('utf8') } : {}),
  }
}

/** The volume path of `rel` under the sync root `root` (both already checked by splitPath). */
export function volumePath(root: string, rel: string): string {
  return rel === '' ? root : root === '/' ? `/${rel}` : `${root}/${rel}`
}

/** The sync root's path, normalised ('/' or '/a/b'); refuses '..' and bad names. */
export function normalRoot(root: string | undefined): string {
  return joinPath(splitPath(root && root.length > 0 ? root : '/'))
}

/** A path relative to the root: non-empty, no leading '/', no '.', '..' or empty components. */
export function checkRelPath(rel: string): Buffer[] {
  const parts = splitPath(rel)
  if (parts.length === 0 || rel.startsWith('/') || rel.split('/').some((s) => s === '' || s === '.'))
    throw new S0Error('invalid_path', `bad relative path ${JSON.stringify(rel)}`)
  return parts
}

/** The entry at `rel` under the root, or null when nothing is there (a symlink is not followed). */
export async function entryAt(vfs: Vfs, root: string, rel: string): Promise<SyncEntry | null> {
  try {
    const a = await resolve(vfs, splitPath(volumePath(root, rel)))
    return await entryOf(vfs, rel, a)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'file_not_found' || code === 'path_not_directory') return null
    throw err
  }
}

/**
 * Every entry under the directory `dirIno` (at `prefix`), depth first, directories before what
 * they hold. Attributes are read `limits.syncListConcurrency` at a time.
 */
export async function* walk(
  vfs: Vfs,
  dirIno: Ino,
  prefix: string,
  onTemp?: (dirIno: Ino, name: string, a: Attr) => Promise<void>,
): AsyncGenerator<SyncEntry> {
  const stack: Array<{ ino: Ino; prefix: string }> = [{ ino: dirIno, prefix }]
  while (stack.length > 0) {
    const d = stack.pop() as { ino: Ino; prefix: string }
    let names: Array<{ name: string; ino: Ino }>
    try {
      names = (await vfs.listAll(d.ino)).map((e) => ({ name: e.name.toString('utf8'), ino: e.ino }))
    } catch (err) {
      if ((err as { code?: string }).code === 'file_not_found') continue // removed meanwhile
      throw err
    }
    const subdirs: Array<{ ino: Ino; prefix: string }> = []
    for (let i = 0; i < names.length; i += limits.syncListConcurrency) {
      const batch = names.slice(i, i + limits.syncListConcurrency)
      const entries = await Promise.all(
        batch.map(async (n) => {
          const path = d.prefix === '' ? n.name : `${d.prefix}/${n.name}`
          try {
            const a = await vfs.getattr(n.ino)
            if (n.name.startsWith(TEMP_PREFIX)) {
              await onTemp?.(d.ino, n.name, a)
              return undefined
            }
            // An upload's, renamed over its target in a moment: the feed reports the target.
            if (n.name.startsWith(UPLOAD_TEMP_PREFIX)) return undefined
            return await entryOf(vfs, path, a)
          } catch (err) {
            if ((err as { code?: string }).code === 'file_not_found') return undefined
            throw err
          }
        }),
      )
      for (const e of entries) {
        if (!e) continue
        yield e
        if (e.kind === 'dir') subdirs.push({ ino: e.ino as Ino, prefix: e.path })
      }
    }
    for (let k = subdirs.length - 1; k >= 0; k--) stack.push(subdirs[k] as { ino: Ino; prefix: string })
  }
}
