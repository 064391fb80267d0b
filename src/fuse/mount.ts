// One FUSE mount of a volume: fuse-native (libfuse 2.9) with the options that matter here, a
// stale mount left by a killed process recovered before mounting, and a clean unmount that
// flushes first.
import { execFile } from 'node:child_process'
import { readFile, stat, mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import Fuse from 'fuse-native'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { Vfs } from '../snapshots/vfs.js'
import { VolumeFuseOps, type Durability, type OpStats } from './operations.js'

const run = promisify(execFile)

export interface MountOptions {
  readOnly?: boolean
  /** Owner of files created through the mount (default: the volume's default_posix_uid/gid). */
  uid?: number
  gid?: number
  durability?: Durability
  /**
   * Kernel attribute cache lifetime in seconds. 0 (the default) asks us on every stat: the
   * FUSE 2 path API gives each name of a hard-linked file its own kernel inode, so a cached
   * attribute goes stale when the file is written through another name, and changes made
   * through the API show at once. Raise it only for a mount nothing else writes.
   */
  attrTimeoutS?: number
  /** Kernel name cache lifetime in seconds (names are checked again on every getattr anyway). */
  entryTimeoutS?: number
  /** Keep file pages in the kernel's cache across opens while size and mtime are unchanged. */
  autoCache?: boolean
  /** Let other users than the mounting one in (always on for sandboxes). */
  allowOther?: boolean
  /** Remove the mount if this process dies (libfuse's auto_unmount, via fusermount). */
  autoUnmount?: boolean
  /**
   * Nothing changes the volume while it is mounted (a sandbox's root-filesystem checkpoint
   * under its overlay): read-only, and names, attributes, misses and file pages are cached by
   * the kernel for limits.fuseImmutableCacheS instead of being asked for again.
   */
  immutable?: boolean
}

/** fuse-native has no option for these: they go through its private option string. */
class S0Fuse extends Fuse {
  constructor(
    mnt: string,
    ops: ConstructorParameters<typeof Fuse>[1],
    opts: ConstructorParameters<typeof Fuse>[2],
    private readonly extra: string[],
  ) {
    super(mnt, ops, opts)
  }

  protected override _fuseOptions(): string {
    const base = super._fuseOptions()
    const extra = this.extra.join(',')
    return base ? `${base},${extra}` : `-o${extra}`
  }
}

/** The FUSE mounts (any process) at `dir`, from /proc/self/mountinfo. */
async function mountedAt(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8')
  const types: string[] = []
  for (const line of info.split('\n')) {
    const f = line.split(' ')
    const sep = f.indexOf('-')
    if (f[4] === dir && sep > 0) types.push(f[sep + 1] ?? '')
  }
  return types
}

/** What is mounted at `dir`: nothing, a dead FUSE mount, a live one, or something else. */
async function mountState(
  dir: string,
): Promise<{ state: 'none' | 'dead' | 'live' | 'other'; types: string[] }> {
  const types = await mountedAt(dir)
  if (types.length === 0) return { state: 'none', types }
  if (!types.every((t) => t.startsWith('fuse'))) return { state: 'other', types }
  const dead = await stat(dir).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ENOTCONN' || err.code === 'ECONNABORTED',
  )
  return { state: dead ? 'dead' : 'live', types }
}

async function detach(dir: string, log: Logger): Promise<void> {
  log.warn('clearing a stale FUSE mount', { dir })
  await run('fusermount', ['-uz', dir], { timeout: limits.fuseDetachTimeoutMs })
}

/**
 * Clears a mount point a dead s0 left behind ("Transport endpoint is not connected"), so a
 * new mount can take it. A live mount of ours or anything else there is an error.
 */
async function recoverMountPoint(dir: string, log: Logger): Promise<void> {
  const { state, types } = await mountState(dir)
  if (state === 'other')
    throw new S0Error('conflict', `${dir} is already a mount point (${types.join(', ')})`)
  if (state === 'live') throw new S0Error('conflict', `${dir} is already mounted by a live FUSE file system`)
  if (state === 'dead') await detach(dir, log)
}

/** Detaches a dead FUSE mount at `dir`, if there is one; anything else there is left alone. */
export async function detachIfStale(dir: string, log: Logger): Promise<void> {
  const abs = resolve(dir)
  if ((await mountState(abs)).state === 'dead') await detach(abs, log)
}

export class FuseMount {
  private unmounting: Promise<void> | null = null

  private constructor(
    readonly dir: string,
    readonly vfs: Vfs,
    readonly options: Readonly<Required<MountOptions>>,
    private readonly fuse: S0Fuse,
    private readonly ops: VolumeFuseOps,
    private readonly log: Logger,
  ) {}

  static async mount(vfs: Vfs, dirIn: string, opts: MountOptions, log: Logger): Promise<FuseMount> {
    const dir = resolve(dirIn)
    const o: Required<MountOptions> = {
      readOnly: opts.readOnly ?? vfs.readOnly,
      uid: opts.uid ?? 0,
      gid: opts.gid ?? 0,
      durability: opts.durability ?? 'close',
      attrTimeoutS: opts.attrTimeoutS ?? limits.fuseAttrTimeoutS,
      entryTimeoutS: opts.entryTimeoutS ?? limits.fuseEntryTimeoutS,
      autoCache: opts.autoCache ?? true,
      allowOther: opts.allowOther ?? true,
      autoUnmount: opts.autoUnmount ?? true,
      immutable: opts.immutable ?? false,
    }
    if (o.immutable) {
      o.readOnly = true
      o.attrTimeoutS = o.entryTimeoutS = limits.fuseImmutableCacheS
      o.autoCache = false
    }
    // Recover first: even mkdir fails on a dead mount point (ENOTCONN).
    await recoverMountPoint(dir, log)
    await mkdir(dir, { recursive: true })
    const ops = new VolumeFuseOps({
      vfs,
      log,
      readOnly: o.readOnly,
      durability: o.durability,
      uid: o.uid,
      gid: o.gid,
    })
    const extra = [
      // 128 KiB write requests instead of 4 KiB (libfuse 2.9 caps max_write there).
      'big_writes',
      `max_write=${limits.fuseIoRequestBytesMax}`,
      `max_read=${limits.fuseIoRequestBytesMax}`,
      // st_ino is ours, so hard links share one (rsync -H, tar, git rely on it).
      'use_ino',
      'readdir_ino',
      `entry_timeout=${o.entryTimeoutS}`,
      `attr_timeout=${o.attrTimeoutS}`,
      `negative_timeout=${o.immutable ? limits.fuseImmutableCacheS : 0}`,
      `fsname=s0:${vfs.volumeId}`,
      'subtype=s0',
      'default_permissions',
    ]
    if (o.allowOther) extra.push('allow_other')
    if (o.autoUnmount) extra.push('auto_unmount')
    if (o.autoCache) extra.push('auto_cache')
    if (o.immutable) extra.push('kernel_cache')
    if (o.readOnly) extra.push('ro')
    if (process.env.S0_FUSE_DEBUG) extra.push('debug')
    const fuse = new S0Fuse(dir, ops.operations(), { timeout: false }, extra)
    await new Promise<void>((res, rej) =>
      fuse.mount((err) =>
        err
          ? rej(new S0Error('mount_failed', `mounting ${dir} failed: ${err.message}`, { cause: err }))
          : res(),
      ),
    )
    log.info('volume mounted', {
      volumeId: vfs.volumeId,
      dir,
      readOnly: o.readOnly,
      durability: o.durability,
    })
    return new FuseMount(dir, vfs, o, fuse, ops, log)
  }

  get opStats(): ReadonlyMap<string, OpStats> {
    return this.ops.stats
  }

  get openHandles(): number {
    return this.ops.openHandles
  }

  /**
   * Flushes every buffered write, then detaches the mount (lazily: a process still inside it
   * keeps its open files until it closes them).
   */
  unmount(): Promise<void> {
    this.unmounting ??= (async () => {
      await this.vfs.flushAll()
      await new Promise<void>((res, rej) =>
        this.fuse.unmount((err) =>
          err ? rej(new S0Error('mount_failed', `unmounting ${this.dir} failed: ${err.message}`)) : res(),
        ),
      )
      // Writes that arrived between the flush and the detach.
      await this.vfs.flushAll()
      this.log.info('volume unmounted', { volumeId: this.vfs.volumeId, dir: this.dir })
    })()
    return this.unmounting
  }
}
