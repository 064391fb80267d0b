// Per-sandbox scratch space on the host: one capped tmpfs at `<sandbox dir>/scratch` holding
// `tmp/` and `shm/`, which the bundle binds at /tmp and /dev/shm. The host sees the same files
// as the sandbox (files API), and a memory checkpoint can carry them (saveScratch).
import { access, chmod, mkdir } from 'node:fs/promises'
import path from 'node:path'
import { limits } from '../core/limits.js'
import { runCliOk } from './cli.js'
import { unmountOverlay } from './overlay.js'

export interface ScratchPaths {
  /** The tmpfs mount point. */
  dir: string
  /** Bound at /tmp. */
  tmp: string
  /** Bound at /dev/shm. */
  shm: string
}

/** The file in a memory image that holds the scratch contents (saveScratch / restoreScratch). */
const IMAGE_FILE = 'scratch.tar'

export function scratchPaths(sandboxDir: string): ScratchPaths {
  const dir = path.join(sandboxDir, 'scratch')
  return { dir, tmp: path.join(dir, 'tmp'), shm: path.join(dir, 'shm') }
}

/**
 * Mounts the scratch tmpfs (`sizeBytes` for /tmp and /dev/shm together: tmpfs has no per-dir
 * quota) with `tmp/` and `shm/` in it, mode 1777 like the tmpfs mounts they replace.
 */
export async function mountScratch(sandboxDir: string, sizeBytes: number): Promise<ScratchPaths> {
  const p = scratchPaths(sandboxDir)
  await mkdir(p.dir, { recursive: true })
  await runCliOk('mount', [
    '-t',
    'tmpfs',
    '-o',
    `size=${sizeBytes},mode=0755,nosuid,nodev`,
    's0-scratch',
    p.dir,
  ])
  for (const d of [p.tmp, p.shm]) {
    await mkdir(d)
    await chmod(d, 0o1777) // mkdir's mode is masked by the umask
  }
  return p
}

/** Unmounts the scratch tmpfs and removes its mount point; idempotent. */
export async function unmountScratch(sandboxDir: string): Promise<void> {
  await unmountOverlay(scratchPaths(sandboxDir).dir)
}

/**
 * Copies the scratch contents into a memory image (the container is stopped: nothing changes
 * them). Processes restored from the image reopen their /tmp and /dev/shm files by path.
 */
export async function saveScratch(sandboxDir: string, imageDir: string): Promise<void> {
  await runCliOk(
    'tar',
    [
      '-C',
      scratchPaths(sandboxDir).dir,
      '--numeric-owner',
      '--xattrs',
      '--sparse',
      '-cf',
      path.join(imageDir, IMAGE_FILE),
      '.',
    ],
    { timeoutMs: limits.sandboxScratchCopyTimeoutMs },
  )
}

/**
 * Puts an image's scratch contents back (before its processes are restored). An image without
 * them (saved before /tmp moved to the host) restores nothing: runsc then fails on its mounts,
 * and the caller falls back to the files.
 */
export async function restoreScratch(sandboxDir: string, imageDir: string): Promise<void> {
  const file = path.join(imageDir, IMAGE_FILE)
  const present = await access(file).then(
    () => true,
    () => false,
  )
  if (!present) return
  await runCliOk('tar', ['-C', scratchPaths(sandboxDir).dir, '--numeric-owner', '--xattrs', '-xpf', file], {
    timeoutMs: limits.sandboxScratchCopyTimeoutMs,
  })
}
