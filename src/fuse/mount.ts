// One FUSE mount of a volume: the transport chosen (lowlevel by default, fuse-native by option or
// S0_FUSE_TRANSPORT), its cache options resolved, a stale mount left by a killed process
// recovered before mounting, and a clean unmount that flushes first.
import { execFile } from 'node:child_process'
import { readFile, stat, mkdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { Vfs } from '../snapshots/vfs.js'
import { fuseNativeTransport } from './fuse-native-transport.js'
import { lowLevelTransport } from './lowlevel.js'
import {
  TRANSPORTS,
  type Durability,
  type FuseSession,
  type FuseTransport,
  type OpStats,
  type TransportName,
  type TransportOptions,
} from './transport.js'

const run = promisify(execFile)

export interface MountOptions {
  readOnly?: boolean
  /**
   * Owner of files created through the mount. Lowlevel: the caller's uid/gid unless
   * `forceOwner`; fuse-native (which cannot see the caller): these, default 0:0.
   */
  uid?: number
  gid?: number
  forceOwner?: boolean
  durability?: Durability
  /** Kernel attribute cache lifetime in seconds (default: see defaultsFor). */
  attrTimeoutS?: number
  /** Kernel name cache lifetime in seconds. */
  entryTimeoutS?: number
  /** Kernel cache lifetime of a miss ("no such name"), in seconds. */
  negativeTimeoutS?: number
  /** Keep file pages in the kernel's cache across opens. */
  autoCache?: boolean
  /** Let other users than the mounting one in (always on for sandboxes). */
  allowOther?: boolean
  /** Remove the mount if this process dies (fuse-native: libfuse's auto_unmount). */
  autoUnmount?: boolean
  /**
   * Nothing changes the volume while it is mounted (a sandbox's root-filesystem checkpoint
   * under its overlay): read-only, and names, attributes, misses and file pages are cached by
   * the kernel for limits.fuseImmutableCacheS instead of being asked for again.
   */
  immutable?: boolean
  /** Default: S0_FUSE_TRANSPORT, else lowlevel. */
  transport?: TransportName
  /** The kernel's write-back cache (lowlevel only). */
  writebackCache?: boolean
}

const TRANSPORT_IMPLS: Record<TransportName, FuseTransport> = {
  lowlevel: lowLevelTransport,
  'fuse-native': fuseNativeTransport,
}

/** The transport S0_FUSE_TRANSPORT names (lowlevel when unset); a bad name is an error. */
export function defaultTransport(): TransportName {
  const v = process.env.S0_FUSE_TRANSPORT || 'lowlevel'
  if (!(TRANSPORTS as readonly string[]).includes(v))
    throw new S0Error('config_invalid', `S0_FUSE_TRANSPORT must be one of ${TRANSPORTS.join(', ')}, got ${v}`)
  return v as TransportName
}

export function transportImpl(name: TransportName): FuseTransport {
  return TRANSPORT_IMPLS[name]
}

/**
 * Cache lifetimes by transport. Lowlevel caches names, attributes and misses for
 * limits.fuseTtlS and invalidates what changes elsewhere. fuse-native cannot invalidate, and its
 * path API gives each name of a hard-linked file its own kernel inode, so a cached attribute
 * would go stale when the file is written through another name: attributes are not cached.
 */
function defaultsFor(t: TransportName): { attr: number; entry: number; negative: number } {
  return t === 'lowlevel'
    ? { attr: limits.fuseTtlS, entry: limits.fuseTtlS, negative: limits.fuseTtlS }
    : { attr: limits.fuseAttrTimeoutS, entry: limits.fuseEntryTimeoutS, negative: 0 }
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
    readonly options: Readonly<TransportOptions & { transport: TransportName }>,
    private readonly session: FuseSession,
    private readonly log: Logger,
  ) {}

  static async mount(vfs: Vfs, dirIn: string, opts: MountOptions, log: Logger): Promise<FuseMount> {
    const dir = resolve(dirIn)
    const transport = opts.transport ?? defaultTransport()
    const impl = transportImpl(transport)
    const why = impl.unavailable()
    if (why) throw new S0Error('mount_failed', why)
    const d = defaultsFor(transport)
    const o: TransportOptions & { transport: TransportName } = {
      transport,
      readOnly: opts.readOnly ?? vfs.readOnly,
      durability: opts.durability ?? 'close',
      owner:
        transport === 'lowlevel' && !opts.forceOwner ? 'caller' : { uid: opts.uid ?? 0, gid: opts.gid ?? 0 },
      attrTimeoutS: opts.attrTimeoutS ?? d.attr,
      entryTimeoutS: opts.entryTimeoutS ?? d.entry,
      negativeTimeoutS: opts.negativeTimeoutS ?? d.negative,
      keepCache: opts.autoCache ?? true,
      allowOther: opts.allowOther ?? true,
      autoUnmount: opts.autoUnmount ?? true,
      immutable: opts.immutable ?? false,
      writebackCache: opts.writebackCache ?? false,
    }
    if (o.immutable) {
      o.readOnly = true
      o.attrTimeoutS = o.entryTimeoutS = o.negativeTimeoutS = limits.fuseImmutableCacheS
      o.keepCache = true
    }
    // Recover first: even mkdir fails on a dead mount point (ENOTCONN).
    await recoverMountPoint(dir, log)
    await mkdir(dir, { recursive: true })
    const session = await impl.mount(vfs, dir, o, log)
    log.info('volume mounted', {
      volumeId: vfs.volumeId,
      dir,
      transport,
      readOnly: o.readOnly,
      durability: o.durability,
    })
    return new FuseMount(dir, vfs, o, session, log)
  }

  get transport(): TransportName {
    return this.session.transport
  }

  get opStats(): ReadonlyMap<string, OpStats> {
    return this.session.stats
  }

  get openHandles(): number {
    return this.session.openHandles
  }

  /**
   * Flushes every buffered write, then detaches the mount (lazily: a process still inside it
   * keeps its open files until it closes them).
   */
  unmount(): Promise<void> {
    this.unmounting ??= (async () => {
      await this.vfs.flushAll()
      await this.session.unmount()
      // Writes that arrived between the flush and the detach.
      await this.vfs.flushAll()
      this.log.info('volume unmounted', { volumeId: this.vfs.volumeId, dir: this.dir })
    })()
    return this.unmounting
  }
}
