// A sandbox's mount table as the host sees it: which host directory holds each path of the
// sandbox, and which paths are kernel file systems with no host side. A higher layer (the files
// API) resolves a sandbox path by longest-prefix match, so it reads and writes what the
// sandbox's own processes read and write.
import path from 'node:path'
import { assert } from '../core/assert.js'

/** One mount of the sandbox whose contents are a host directory. */
export interface ViewMount {
  /** Absolute, normalised path inside the sandbox. */
  containerPath: string
  /** The host directory holding it. */
  hostPath: string
  readOnly: boolean
  /**
   * Bytes of the sandbox's own file system behind it (the root's disk, the /tmp + /dev/shm
   * tmpfs): ENOSPC there is the sandbox's limit. Unset: a volume (its own quota) or a record
   * from before limits were kept here.
   */
  limitBytes?: number
}

export interface SandboxView {
  /**
   * In mount order: `/` (the overlay's merged dir), `/tmp`, `/dev/shm`, then the start options'
   * bind mounts. A later entry at the same path covers an earlier one.
   */
  mounts: readonly ViewMount[]
  /** Paths of kernel file systems (`/proc`, `/sys`, `/dev` except `/dev/shm`): not on the host. */
  kernelPaths: readonly string[]
}

/** Everything under these is the container's own (proc, sysfs, a tmpfs /dev with devpts, mqueue). */
export const KERNEL_PATHS: readonly string[] = ['/proc', '/sys', '/dev']

export type ViewResolution =
  { kind: 'host'; mount: ViewMount; hostPath: string } | { kind: 'kernel'; kernelPath: string }

export function sandboxView(o: {
  rootfs: string
  tmpHostPath: string
  shmHostPath: string
  binds?: readonly { hostPath: string; containerPath: string; readOnly?: boolean }[]
  /** Sizes of the root's file system and of the scratch tmpfs behind /tmp and /dev/shm. */
  rootLimitBytes?: number
  scratchLimitBytes?: number
}): SandboxView {
  const root = o.rootLimitBytes === undefined ? {} : { limitBytes: o.rootLimitBytes }
  const scratch = o.scratchLimitBytes === undefined ? {} : { limitBytes: o.scratchLimitBytes }
  return {
    mounts: [
      { containerPath: '/', hostPath: o.rootfs, readOnly: false, ...root },
      { containerPath: '/tmp', hostPath: o.tmpHostPath, readOnly: false, ...scratch },
      { containerPath: '/dev/shm', hostPath: o.shmHostPath, readOnly: false, ...scratch },
      ...(o.binds ?? []).map((b) => ({
        containerPath: normalise(b.containerPath),
        hostPath: b.hostPath,
        readOnly: b.readOnly ?? false,
      })),
    ],
    kernelPaths: KERNEL_PATHS,
  }
}

/** Sandboxes started before the view existed: /tmp and /dev/shm were tmpfs mounts of their own. */
export function legacySandboxView(rootfs: string): SandboxView {
  return {
    mounts: [{ containerPath: '/', hostPath: rootfs, readOnly: false }],
    kernelPaths: [...KERNEL_PATHS, '/tmp'],
  }
}

/**
 * Where `containerPath` (absolute) is: the longest mount or kernel path that is it or an
 * ancestor of it, the later mount winning a tie. `..` is resolved lexically first, so it never
 * climbs out of `/`; symlinks inside the result are the caller's to check.
 */
export function resolveInView(view: SandboxView, containerPath: string): ViewResolution {
  assert(containerPath.startsWith('/'), `not an absolute path: ${containerPath}`)
  const p = normalise(containerPath)
  let best: ViewMount | undefined
  for (const m of view.mounts) {
    if (covers(m.containerPath, p) && (!best || m.containerPath.length >= best.containerPath.length)) best = m
  }
  let kernel: string | undefined
  for (const k of view.kernelPaths) {
    if (covers(k, p) && (!kernel || k.length > kernel.length)) kernel = k
  }
  if (kernel !== undefined && (!best || kernel.length > best.containerPath.length)) {
    return { kind: 'kernel', kernelPath: kernel }
  }
  assert(best !== undefined, 'a sandbox view without a root mount')
  const rest = path.posix.relative(best.containerPath, p)
  return { kind: 'host', mount: best, hostPath: rest === '' ? best.hostPath : path.join(best.hostPath, rest) }
}

function covers(prefix: string, p: string): boolean {
  return prefix === '/' || p === prefix || p.startsWith(prefix + '/')
}

function normalise(p: string): string {
  const n = path.posix.normalize(p)
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n
}
