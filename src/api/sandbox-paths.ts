// Paths inside a sandbox's root file system, resolved on the host as a chroot would: symlinks are
// followed with the rootfs as `/`, `..` never climbs above it, and every result is checked to be
// inside the rootfs after resolution (realpath, and /proc/self/fd of what we open), so neither a
// symlink planted by the sandbox nor a `/proc/self/root` path reaches the host.
import { constants } from 'node:fs'
import { lstat, open, readlink, realpath, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'

export const sandboxPathLimits = {
  symlinkHopsMax: 40,
  pathBytesMax: 4096,
  nameBytesMax: 255,
} as const

/** Components of a sandbox path (absolute; a relative one is taken from `/`). */
export function splitSandboxPath(p: string): string[] {
  if (p.includes('\0')) throw new S0Error('invalid_path', 'path contains NUL')
  if (Buffer.byteLength(p) > sandboxPathLimits.pathBytesMax)
    throw new S0Error('invalid_path', 'path too long')
  const parts: string[] = []
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue
    if (c === '..') throw new S0Error('invalid_path', `path ${JSON.stringify(p)} contains '..'`)
    if (Buffer.byteLength(c) > sandboxPathLimits.nameBytesMax)
      throw new S0Error('name_too_long', `name ${JSON.stringify(c.slice(0, 32))}... is longer than 255 bytes`)
    parts.push(c)
  }
  return parts
}

export function joinSandboxPath(parts: readonly string[]): string {
  return '/' + parts.join('/')
}

export interface Resolved {
  /** Host path of the target (no symlink in it, except the last component when not followed). */
  host: string
  /** The target's components inside the sandbox, symlinks resolved. */
  parts: string[]
  /** False when the last component does not exist (its parent does). */
  exists: boolean
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code
}

/** Maps a host errno from a file operation onto the catalogue. */
export function fsError(err: unknown, sandboxPath: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  switch (code) {
    case 'ENOENT':
      return new S0Error('file_not_found', `${sandboxPath}: no such file or directory`)
    case 'EEXIST':
      return new S0Error('path_exists', `${sandboxPath} exists`)
    case 'ENOTDIR':
      return new S0Error('path_not_directory', `${sandboxPath}: not a directory`)
    case 'EISDIR':
      return new S0Error('path_not_file', `${sandboxPath} is a directory`)
    case 'ENOTEMPTY':
      return new S0Error('directory_not_empty', `${sandboxPath} is not empty`)
    case 'ENAMETOOLONG':
      return new S0Error('name_too_long', `${sandboxPath}: name too long`)
    case 'EACCES':
    case 'EPERM':
      return new S0Error('forbidden', `${sandboxPath}: permission denied`)
    case 'ENOSPC':
      return new S0Error('no_space', `${sandboxPath}: no space left`)
    case 'ELOOP':
      return new S0Error('invalid_path', `${sandboxPath}: too many symbolic links`)
    default:
      return err
  }
}

/** A root file system on the host; every path operation goes through `resolve`. */
export class SandboxRoot {
  private constructor(readonly root: string) {}

  static async open(rootfs: string): Promise<SandboxRoot> {
    return new SandboxRoot(await realpath(rootfs))
  }

  contains(hostPath: string): boolean {
    return hostPath === this.root || hostPath.startsWith(this.root + '/')
  }

  /**
   * Resolves `parts` as the sandbox would see them. Intermediate components must exist and be
   * directories; the last one may be missing (`exists: false`) when `allowMissing`.
   */
  async resolve(
    parts: readonly string[],
    opts: { followLast: boolean; allowMissing?: boolean },
  ): Promise<Resolved> {
    const stack: string[] = []
    const queue = [...parts]
    let hops = 0
    let exists = true
    while (queue.length > 0) {
      const c = queue.shift() as string
      if (c === '' || c === '.') continue
      if (c === '..') {
        stack.pop() // only link targets bring '..' here; the root's parent is the root
        continue
      }
      const last = queue.length === 0
      const candidate = path.join(this.root, ...stack, c)
      let st
      try {
        st = await lstat(candidate)
      } catch (err) {
        if (!isErrno(err, 'ENOENT') || !last || !opts.allowMissing)
          throw fsError(err, joinSandboxPath([...stack, c]))
        stack.push(c)
        exists = false
        break
      }
      if (st.isSymbolicLink() && (!last || opts.followLast)) {
        if (++hops > sandboxPathLimits.symlinkHopsMax)
          throw new S0Error('invalid_path', `${joinSandboxPath(parts)}: too many symbolic links`)
        const target = await readlink(candidate)
        if (target.startsWith('/')) stack.length = 0
        queue.unshift(...target.split('/'))
        continue
      }
      if (!last && !st.isDirectory())
        throw new S0Error('path_not_directory', `${joinSandboxPath([...stack, c])} is not a directory`)
      stack.push(c)
    }
    const host = path.join(this.root, ...stack)
    if (stack.length === 0) return { host, parts: stack, exists }
    // Defence in depth (and against a component swapped for a symlink meanwhile): the parent's
    // real path must be exactly what we resolved, inside the root.
    const parent = path.dirname(host)
    const real = await realpath(parent).catch((err: unknown) => {
      throw fsError(err, joinSandboxPath(stack.slice(0, -1)))
    })
    if (real !== parent || !this.contains(real))
      throw new S0Error('invalid_path', `${joinSandboxPath(parts)} leaves the sandbox`)
    return { host, parts: stack, exists }
  }

  /** Opens a resolved path without following a last symlink, and checks where the fd really is. */
  async openChecked(r: Resolved, flags: number, mode = 0o644): Promise<FileHandle> {
    const fh = await open(r.host, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode).catch(
      (err: unknown) => {
        throw fsError(err, joinSandboxPath(r.parts))
      },
    )
    try {
      const where = await readlink(`/proc/self/fd/${fh.fd}`)
      if (!this.contains(where))
        throw new S0Error('invalid_path', `${joinSandboxPath(r.parts)} leaves the sandbox`)
      return fh
    } catch (err) {
      await fh.close()
      throw err
    }
  }
}
