// Paths inside a sandbox, resolved on the host as the sandbox's own kernel would: through its
// mount view (root, scratch, volumes), symlinks followed with the sandbox's `/` as root, `..`
// never above it. Every result is checked to be inside the host directory of the mount it
// belongs to after resolution (realpath, and /proc/self/fd of what we open), so neither a symlink
// planted by the sandbox nor a `/proc/self/root` path reaches the host.
import { constants } from 'node:fs'
import { lstat, open, readlink, realpath, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { PATH_BYTES_MAX } from '../../snapshots/paths.js'
import { resolveInView, type SandboxView, type ViewMount } from '../../runtime/view.js'
import { NAME_BYTES_MAX } from '../../snapshots/types.js'

/** Components of a sandbox path (absolute; a relative one is taken from `/`). */
export function splitSandboxPath(p: string): string[] {
  if (p.includes('\0')) throw new S0Error('invalid_path', 'path contains NUL')
  if (Buffer.byteLength(p) > PATH_BYTES_MAX) throw new S0Error('invalid_path', 'path too long')
  const parts: string[] = []
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue
    if (c === '..') throw new S0Error('invalid_path', `path ${JSON.stringify(p)} contains '..'`)
    if (Buffer.byteLength(c) > NAME_BYTES_MAX)
      throw new S0Error(
        'name_too_long',
        `name ${JSON.stringify(c.slice(0, 32))}... is longer than ${NAME_BYTES_MAX} bytes`,
      )
    parts.push(c)
  }
  return parts
}

export function joinSandboxPath(parts: readonly string[]): string {
  return '/' + parts.join('/')
}

/** A mount of the view with its host directory's real path and its container components. */
export interface TreeMount extends ViewMount {
  readonly real: string
  readonly parts: readonly string[]
}

export interface Resolved {
  /** Host path of the target (no symlink in it, except the last component when not followed). */
  host: string
  /** The target's components inside the sandbox, symlinks resolved. */
  parts: string[]
  /** False when the last component does not exist (its parent does). */
  exists: boolean
  /** The mount the target is in (for a mount point: that mount). */
  mount: TreeMount
  /** The target is the root of a mount other than `/` (a volume, `/tmp`): it cannot go away. */
  isMountPoint: boolean
}

function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code
}

/**
 * Maps a host errno from a file operation onto the catalogue. `mount`: where it happened; a full
 * file system of the sandbox's own (its root disk, its /tmp) is its limit, told as such.
 */
export function fsError(err: unknown, sandboxPath: string, mount?: ViewMount): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if ((code === 'ENOSPC' || code === 'EDQUOT') && mount?.limitBytes !== undefined)
    return new S0Error('storage_limit_exceeded', storageLimitMessage(sandboxPath, mount, mount.limitBytes))
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
    case 'EROFS':
      return new S0Error('read_only', `${sandboxPath} is on a read-only mount`)
    case 'ENOSPC':
    case 'EDQUOT':
      return new S0Error('no_space', `${sandboxPath}: no space left`)
    case 'EXDEV':
      return new S0Error('cross_device', `${sandboxPath}: on another file system of the sandbox`)
    case 'EBUSY':
      return new S0Error('conflict', `${sandboxPath} is busy (a mount point?)`)
    case 'ELOOP':
      return new S0Error('invalid_path', `${sandboxPath}: too many symbolic links`)
    default:
      return err
  }
}

function storageLimitMessage(sandboxPath: string, mount: ViewMount, limitBytes: number): string {
  const size = `${limitBytes} bytes (${(limitBytes / 2 ** 20).toFixed(0)} MiB)`
  const what =
    mount.containerPath === '/'
      ? `its root file system is full: ${size}, resources.ephemeralStorage`
      : `${mount.containerPath} is full: ${size}, shared by /tmp and /dev/shm`
  return `${sandboxPath}: no space left in the sandbox: ${what}`
}

/** A sandbox's file tree on the host; every path operation goes through `resolve`. */
export class SandboxTree {
  /** `view` with each host directory's real path (what results are checked against). */
  private constructor(
    private readonly view: { mounts: readonly TreeMount[]; kernelPaths: readonly string[] },
  ) {}

  static async open(view: SandboxView): Promise<SandboxTree> {
    const mounts: TreeMount[] = []
    for (const m of view.mounts) {
      const real = await realpath(m.hostPath)
      mounts.push({ ...m, hostPath: real, real, parts: splitSandboxPath(m.containerPath) })
    }
    return new SandboxTree({ mounts, kernelPaths: view.kernelPaths })
  }

  /** The mount holding `parts`; `not_supported` inside the sandbox's kernel file systems. */
  mountOf(parts: readonly string[]): TreeMount {
    return this.hostOf(parts).mount
  }

  /** Whether `parts` is outside the kernel file systems the host cannot see. */
  reachable(parts: readonly string[]): boolean {
    return resolveInView(this.view, joinSandboxPath(parts)).kind === 'host'
  }

  /**
   * A directory inside a kernel file system that a mount lies under (`/dev` for `/dev/shm`):
   * the host cannot look at it, but a path may pass through it to the mount.
   */
  passThrough(parts: readonly string[]): boolean {
    if (this.reachable(parts)) return false
    return this.view.mounts.some(
      (m) => m.parts.length > parts.length && parts.every((c, i) => m.parts[i] === c),
    )
  }

  /** The host path of container `parts` (no symlink resolution: callers resolve first). */
  hostOf(parts: readonly string[]): { host: string; mount: TreeMount } {
    const r = resolveInView(this.view, joinSandboxPath(parts))
    if (r.kind === 'kernel')
      throw new S0Error(
        'not_supported',
        `${joinSandboxPath(parts)} is in the sandbox's ${r.kernelPath}, a kernel file system the files API cannot reach`,
      )
    // resolveInView hands back one of the view's own mount objects: TreeMounts, built in open().
    return { host: r.hostPath, mount: r.mount as TreeMount }
  }

  /** The container path of a host path inside `mount` (events of a watch). */
  containerPathOf(mount: TreeMount, host: string): string {
    const rel = path.relative(mount.real, host)
    return joinSandboxPath([...mount.parts, ...(rel === '' ? [] : rel.split(path.sep))])
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
      if (!last && this.passThrough([...stack, c])) {
        stack.push(c) // /dev on the way to /dev/shm: a directory of the sandbox's own
        continue
      }
      const { host: candidate } = this.hostOf([...stack, c])
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
        if (++hops > limits.symlinkHopsMax)
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
    const { host, mount } = this.hostOf(stack)
    const isMountPoint = stack.length === mount.parts.length
    // Defence in depth (and against a component swapped for a symlink meanwhile): the real path
    // of the parent (of a mount point: of itself) must be exactly what we resolved, inside the
    // host directory of its mount.
    const anchor = isMountPoint ? host : path.dirname(host)
    const real = await realpath(anchor).catch((err: unknown) => {
      throw fsError(err, joinSandboxPath(isMountPoint ? stack : stack.slice(0, -1)))
    })
    if (real !== anchor || !contains(mount.real, real))
      throw new S0Error('invalid_path', `${joinSandboxPath(parts)} leaves the sandbox`)
    return { host, parts: stack, exists, mount, isMountPoint: isMountPoint && stack.length > 0 }
  }

  /** Opens a resolved path without following a last symlink, and checks where the fd really is. */
  async openChecked(r: Resolved, flags: number, mode = 0o644): Promise<FileHandle> {
    const fh = await open(r.host, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode).catch(
      (err: unknown) => {
        throw fsError(err, joinSandboxPath(r.parts), r.mount)
      },
    )
    try {
      const where = await readlink(`/proc/self/fd/${fh.fd}`)
      if (!contains(r.mount.real, where))
        throw new S0Error('invalid_path', `${joinSandboxPath(r.parts)} leaves the sandbox`)
      return fh
    } catch (err) {
      await fh.close()
      throw err
    }
  }
}

function contains(root: string, hostPath: string): boolean {
  return hostPath === root || hostPath.startsWith(root + '/')
}
