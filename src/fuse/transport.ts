// The boundary between a FUSE mount and the kernel: a transport takes a Vfs and a directory and
// serves the kernel's requests for it until unmounted. Two implementations, one contract
// (test/fuse/*: every mount test runs on both):
// - `lowlevel` (default): our addon over libfuse 3's low-level API, inode-based, on the event
//   loop (src/fuse/lowlevel.ts);
// - `fuse-native`: the fuse-native package over libfuse 2.9's path-based API, for hosts without
//   libfuse 3 (src/fuse/fuse-native-transport.ts).
// docs/ARCHITECTURE.md, "FUSE transports", says what each can and cannot do and why lowlevel is
// the default.
import type { Logger } from '../core/log.js'
import type { Vfs } from '../snapshots/vfs.js'

export type TransportName = 'lowlevel' | 'fuse-native'
export const TRANSPORTS: readonly TransportName[] = ['lowlevel', 'fuse-native']

/**
 * When a write becomes durable. `close`: closing a file written through that handle makes it,
 * and everything before it, durable (close-to-open durability, as NFS and JuiceFS give); `fsync`
 * (also `sync -f`): only fsync does, closed files are written back in batches within
 * writebackDelayMs. See docs/ARCHITECTURE.md.
 */
export type Durability = 'close' | 'fsync'

/** Per-operation counters: where the time goes (bench detail, /metrics). */
export interface OpStats {
  count: number
  errors: number
  totalUs: number
}

/** Everything a transport needs to know, defaults resolved (see MountOptions in mount.ts). */
export interface TransportOptions {
  readOnly: boolean
  durability: Durability
  /** Owner of new files: the caller's uid/gid ('caller', lowlevel only) or fixed ids. */
  owner: 'caller' | { uid: number; gid: number }
  attrTimeoutS: number
  entryTimeoutS: number
  negativeTimeoutS: number
  /** Keep file pages in the kernel's cache across opens. */
  keepCache: boolean
  allowOther: boolean
  autoUnmount: boolean
  immutable: boolean
  /** Kernel write-back cache (lowlevel only; see docs/ARCHITECTURE.md for the measurement). */
  writebackCache: boolean
}

export interface FuseSession {
  readonly transport: TransportName
  readonly stats: ReadonlyMap<string, OpStats>
  readonly openHandles: number
  /** Detaches the mount (lazily: a process inside keeps its open files). The caller flushed. */
  unmount(): Promise<void>
}

export interface FuseTransport {
  readonly name: TransportName
  /** Why this transport cannot mount on this host, or null when it can. */
  unavailable(): string | null
  mount(vfs: Vfs, dir: string, opts: TransportOptions, log: Logger): Promise<FuseSession>
}

/** Counts one operation (shared by both transports). */
export function trackOp(stats: Map<string, OpStats>, op: string, started: number, failed: boolean): void {
  let s = stats.get(op)
  if (!s) stats.set(op, (s = { count: 0, errors: 0, totalUs: 0 }))
  s.count++
  if (failed) s.errors++
  s.totalUs += (performance.now() - started) * 1000
}
