// Per-sandbox copy-on-write root: overlayfs of a read-only template (lower) and the sandbox's own
// upper/work dirs, mounted on the host before the runtime's create and unmounted after delete.
// The upper and work dirs sit on a file system of their own, which bounds what the sandbox can
// write: a loop-mounted ext4 image (disk.ts), or a tmpfs.
import { access, mkdir, readFile, realpath, rm } from 'node:fs/promises'
import path from 'node:path'
import { runCli, runCliOk } from './cli.js'
import { mountDisk, type DiskImages } from './disk.js'

export interface OverlayPaths {
  dir: string
  /** The bounded file system holding upper/ and work/ (a loop-mounted image or a tmpfs). */
  upperMount: string
  upper: string
  work: string
  /** The sandbox's root file system (a real path: runc refuses symlinks). */
  merged: string
}

export interface MountOverlayOptions {
  /** Directory that will hold upper/, work/ and merged/. */
  dir: string
  /** Read-only layers, top first (e.g. a root-filesystem checkpoint, then the template). */
  lowerDirs: readonly string[]
  /**
   * Put upper/work on a tmpfs of this size: writes are capped and vanish with the sandbox
   * (memory, not disk). Unset: on `disk`.
   */
  tmpfsBytes?: number
  /**
   * upper/work on an ext4 image of `bytes` (diskImageBytes) in `<dir>/disk.img`, on the state
   * directory's disk: writes past it get ENOSPC, and a capture reads the upper until delete.
   */
  disk?: { bytes: number; images: DiskImages }
}

export function overlayPaths(dir: string): OverlayPaths {
  const upperMount = path.join(dir, 'upper')
  return {
    dir,
    upperMount,
    upper: path.join(upperMount, 'upper'),
    work: path.join(upperMount, 'work'),
    merged: path.join(dir, 'merged'),
  }
}

/** The image file behind a disk-backed upper (removed with the overlay's directory). */
export function diskImagePath(dir: string): string {
  return path.join(dir, 'disk.img')
}

export async function mountOverlay(opts: MountOverlayOptions): Promise<OverlayPaths> {
  await mkdir(opts.dir, { recursive: true })
  const dir = await realpath(opts.dir)
  if (opts.lowerDirs.length === 0) throw new Error('an overlay needs a lower layer')
  const lowers: string[] = []
  for (const l of opts.lowerDirs) {
    const real = await realpath(l)
    // ':' separates layers and ',' options in the mount data: such paths cannot be layers.
    if (/[:,\\]/.test(real)) throw new Error(`overlay layer path ${real} contains : , or \\`)
    lowers.push(real)
  }
  const p = overlayPaths(dir)
  if (opts.tmpfsBytes !== undefined) {
    await mkdir(p.upperMount, { recursive: true })
    await runCliOk('mount', [
      '-t',
      'tmpfs',
      '-o',
      `size=${opts.tmpfsBytes},mode=0755`,
      's0-upper',
      p.upperMount,
    ])
  } else if (opts.disk) {
    const image = diskImagePath(dir)
    await opts.disk.images.copyEmpty(opts.disk.bytes, image)
    await mountDisk(image, p.upperMount)
  } else {
    throw new Error('an overlay needs a bounded upper: tmpfsBytes or disk')
  }
  // upper and work must be on one file system: both live inside the upper mount (whose root
  // also holds ext4's lost+found, out of the sandbox's sight).
  await mkdir(p.upper, { mode: 0o755 })
  await mkdir(p.work, { mode: 0o755 })
  await mkdir(p.merged, { recursive: true })
  // redirect_dir=off, metacopy=off, index=off: the upper holds whole copies and whiteouts only,
  // which is what a root-filesystem capture reads (a renamed lower directory gives EXDEV, and
  // programs copy it instead, as they do on Docker's overlay2).
  const options = `lowerdir=${lowers.join(':')},upperdir=${p.upper},workdir=${p.work},redirect_dir=off,metacopy=off,index=off`
  await runCliOk('mount', ['-t', 'overlay', 's0-overlay', '-o', options, p.merged])
  return p
}

/**
 * Mounts a disk-backed upper again if it is not (after a host reboot, the image outlives its
 * mount), so that the upper directory can be read for a capture. False: no image there.
 */
export async function remountUpperDisk(dir: string): Promise<boolean> {
  const image = diskImagePath(dir)
  const present = await access(image).then(
    () => true,
    () => false,
  )
  if (!present) return false
  const { upperMount } = overlayPaths(dir)
  if (!(await mountPoints()).includes(path.resolve(upperMount))) await mountDisk(image, upperMount)
  return true
}

/**
 * Unmounts everything at or under `dir`, last mounted first (an overlay before the file system
 * of its upper, a mount before the one it sits on), and removes the directory. Idempotent.
 */
export async function unmountOverlay(dir: string, opts: { keepFiles?: boolean } = {}): Promise<void> {
  const abs = path.resolve(dir)
  const targets = (await mountPoints()).filter((m) => m === abs || m.startsWith(abs + '/'))
  targets.reverse() // the mount table lists mounts in the order they were made
  for (const t of targets) {
    const r = await runCli('umount', [t])
    // Busy (a process still holds it): detach now, the kernel frees it when the last user goes.
    if (r.code !== 0) await runCliOk('umount', ['-l', t])
  }
  if (!opts.keepFiles) await rm(abs, { recursive: true, force: true })
}

/** Mount points from /proc/self/mounts (octal escapes decoded). */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mounts', 'utf8')
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => unescapeMount(line.split(' ')[1] ?? ''))
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)))
}
