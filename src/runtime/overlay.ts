// Per-sandbox copy-on-write root: overlayfs of a read-only template (lower) and the sandbox's own
// upper/work dirs, mounted on the host before the runtime's create and unmounted after delete.
import { mkdir, readFile, realpath, rm } from 'node:fs/promises'
import path from 'node:path'
import { runCli, runCliOk } from './cli.js'

export interface OverlayPaths {
  dir: string
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
   * Put upper/work on a tmpfs of this size: writes are capped and vanish with the sandbox. Unset:
   * on the state directory's disk (what a later rootfs snapshot needs).
   */
  tmpfsBytes?: number
}

export function overlayPaths(dir: string): OverlayPaths {
  return {
    dir,
    upper: path.join(dir, 'upper'),
    work: path.join(dir, 'work'),
    merged: path.join(dir, 'merged'),
  }
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
    await mkdir(p.upper, { recursive: true })
    await runCliOk('mount', ['-t', 'tmpfs', '-o', `size=${opts.tmpfsBytes},mode=0755`, 's0-upper', p.upper])
    // upper and work must be on one file system: both live inside the tmpfs.
    const inTmpfs = overlayPaths(p.upper)
    await mkdir(path.join(p.upper, 'upper'), { recursive: true })
    await mkdir(inTmpfs.work, { recursive: true })
    p.upper = path.join(p.upper, 'upper')
    p.work = inTmpfs.work
  } else {
    await mkdir(p.upper, { recursive: true })
    await mkdir(p.work, { recursive: true })
  }
  await mkdir(p.merged, { recursive: true })
  // redirect_dir=off, metacopy=off, index=off: the upper holds whole copies and whiteouts only,
  // which is what a root-filesystem capture reads (a renamed lower directory gives EXDEV, and
  // programs copy it instead, as they do on Docker's overlay2).
  const options = `lowerdir=${lowers.join(':')},upperdir=${p.upper},workdir=${p.work},redirect_dir=off,metacopy=off,index=off`
  await runCliOk('mount', ['-t', 'overlay', 's0-overlay', '-o', options, p.merged])
  return p
}

/** Unmounts everything at or under `dir` (deepest first) and removes the directory. Idempotent. */
export async function unmountOverlay(dir: string, opts: { keepFiles?: boolean } = {}): Promise<void> {
  const abs = path.resolve(dir)
  const targets = (await mountPoints()).filter((m) => m === abs || m.startsWith(abs + '/'))
  targets.sort((a, b) => b.length - a.length)
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
