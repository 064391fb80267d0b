// The volume engine of one s0 process: owns the volumes it writes (one writer per volume, by a
// lease in Postgres), keeps their Vfs instances, and runs snapshot / fork / restore / delete so
// that buffered writes are flushed first and open Vfs instances follow their volume's head.
import { randomBytes } from 'node:crypto'
import type { ChunkStore } from '../blockstore/chunk-store.js'
import type { RootSource } from '../blockstore/gc.js'
import { assert } from '../core/assert.js'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type {
  CreateVolumeOptions,
  MetadataStore,
  SnapshotRow,
  VolumeCatalog,
  VolumeRow,
} from './metadata-store.js'
import { PgMetadataStore } from './metadata-store-pg.js'
import { Vfs } from './vfs.js'

export interface VolumeEngineOptions {
  /** The Postgres database; the metadata store defaults to PgMetadataStore over it. */
  db?: Db
  /** Where volume metadata lives (default: Postgres, `db`). */
  metadata?: MetadataStore
  chunks: ChunkStore
  log: Logger
  /** Identifies this engine instance in leases; random by default. */
  ownerId?: string
}

export class VolumeEngine {
  readonly catalog: VolumeCatalog
  readonly ownerId: string
  private readonly metadata: MetadataStore
  private readonly chunks: ChunkStore
  private readonly log: Logger
  private readonly open = new Map<string, Promise<Vfs>>()
  private renewTimer: NodeJS.Timeout | undefined
  private readonly background = new Set<Promise<unknown>>()

  constructor(opts: VolumeEngineOptions) {
    assert(opts.metadata || opts.db, 'a volume engine needs a metadata store or a database')
    this.metadata = opts.metadata ?? new PgMetadataStore(opts.db as Db)
    this.chunks = opts.chunks
    this.log = opts.log
    this.catalog = this.metadata.catalog
    this.ownerId = opts.ownerId ?? `engine-${randomBytes(6).toString('hex')}`
    // Fire and forget: renewLeases logs its own failures, and the next tick tries again.
    this.renewTimer = setInterval(() => void this.renewLeases(), limits.volumeLeaseRenewMs)
    this.renewTimer.unref()
  }

  create(teamId: TeamId, opts: CreateVolumeOptions = {}): Promise<VolumeRow> {
    return this.catalog.create(teamId, opts)
  }

  /** The volume's Vfs in this process, taking the writer lease on first use. */
  async vfs(teamId: TeamId, volumeId: string): Promise<Vfs> {
    const key = `${teamId}/${volumeId}`
    let p = this.open.get(key)
    if (!p) {
      p = this.openVfs(teamId, volumeId)
      this.open.set(key, p)
      // A failed open is forgotten, so the next call tries again; this caller gets the error.
      p.catch(() => this.open.delete(key))
    }
    return p
  }

  private async openVfs(teamId: TeamId, volumeId: string): Promise<Vfs> {
    const volume = await this.catalog.get(teamId, volumeId)
    const epoch = await this.metadata.takeLease(volumeId, this.ownerId, limits.volumeLeaseMs)
    if (epoch === null)
      throw new S0Error('volume_busy', `volume ${volumeId} is being written by another s0 instance`)
    return Vfs.open({ metadata: this.metadata, chunks: this.chunks, volume, writerEpoch: epoch })
  }

  /**
   * Flushes the volume's Vfs in this process, forgets it and gives its writer lease back. For
   * volumes used for a while and then left (sandbox root-filesystem checkpoints): open Vfs
   * instances and their leases would otherwise pile up. The next `vfs()` opens it again.
   */
  async closeVfs(teamId: TeamId, volumeId: string): Promise<void> {
    const key = `${teamId}/${volumeId}`
    const vfs = await this.openIfLoaded(teamId, volumeId)
    if (!vfs) return
    await vfs.close()
    if (this.open.get(key) === undefined) return
    this.open.delete(key)
    await this.metadata.releaseLease(volumeId, this.ownerId)
  }

  private async renewLeases(): Promise<void> {
    const ids = [...this.open.keys()].map((k) => k.split('/')[1] as string)
    if (ids.length === 0) return
    await this.metadata
      .renewLeases(ids, this.ownerId, limits.volumeLeaseMs)
      .catch((err: unknown) => this.log.warn('volume lease renewal failed', { err }))
  }

  private async openIfLoaded(teamId: TeamId, volumeId: string): Promise<Vfs | undefined> {
    const p = this.open.get(`${teamId}/${volumeId}`)
    return p ? loaded(p) : undefined
  }

  async snapshot(
    teamId: TeamId,
    volumeId: string,
    opts: { name: string; description?: string },
  ): Promise<SnapshotRow> {
    const vfs = await this.openIfLoaded(teamId, volumeId)
    await vfs?.flushAll()
    const snap = await this.underVfs(vfs, async () => {
      const s = await this.catalog.snapshot(teamId, volumeId, opts)
      if (vfs) await vfs.headMoved(await this.catalog.get(teamId, volumeId), false)
      return s
    })
    this.flattenSoon(teamId, volumeId)
    return snap
  }

  async fork(teamId: TeamId, volumeId: string, opts: CreateVolumeOptions = {}): Promise<VolumeRow> {
    const vfs = await this.openIfLoaded(teamId, volumeId)
    await vfs?.flushAll()
    const child = await this.underVfs(vfs, async () => {
      const c = await this.catalog.fork(teamId, volumeId, opts)
      if (vfs) await vfs.headMoved(await this.catalog.get(teamId, volumeId), false)
      return c
    })
    this.flattenSoon(teamId, volumeId)
    this.flattenSoon(teamId, child.id)
    return child
  }

  /** Runs a head-changing catalog operation with the volume's Vfs (if open here) quiesced. */
  private underVfs<T>(vfs: Vfs | undefined, fn: () => Promise<T>): Promise<T> {
    return vfs ? vfs.exclusive(fn) : fn()
  }

  /** Background flattens run so far and their total time (metrics, bench). */
  readonly flattenStats = { count: 0, totalMs: 0 }

  /** Resolves when no background job (flatten) is running. */
  async idle(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background])
  }

  /** Starts a background flatten when the volume's chain is too deep (errors are only logged). */
  private flattenSoon(teamId: TeamId, volumeId: string): void {
    const job = this.flatten(teamId, volumeId).catch((err: unknown) =>
      this.log.warn('flatten failed', { volumeId, err }),
    )
    this.background.add(job)
    // `job` never rejects (its failure is logged above): nothing to observe here.
    void job.finally(() => this.background.delete(job))
  }

  /**
   * Flattens the volume's layer chain if deeper than layerChainDepthMax, then points every open
   * Vfs at its new chain, and releases the layer that became unused after a delay.
   */
  async flatten(
    teamId: TeamId,
    volumeId: string,
    opts: { force?: boolean; keep?: number } = {},
  ): Promise<boolean> {
    const volume = await this.catalog.get(teamId, volumeId)
    const chain = await this.catalog.chainOf(volume.headLayerId)
    if (!opts.force && chain.length <= limits.layerChainDepthMax) return false
    const started = performance.now()
    const unused = await this.catalog.flatten(chain, opts.keep ?? limits.layerChainKeep)
    if (unused === null) return false
    this.flattenStats.count++
    this.flattenStats.totalMs += performance.now() - started
    for (const p of this.open.values()) await (await loaded(p))?.refreshChain()
    const release = setTimeout(() => {
      this.catalog.release(unused).catch((err: unknown) => this.log.warn('layer release failed', { err }))
    }, limits.layerReleaseDelayMs)
    release.unref()
    return true
  }

  async restore(teamId: TeamId, volumeId: string, snapshotId: string): Promise<VolumeRow> {
    const vfs = await this.openIfLoaded(teamId, volumeId)
    // Unflushed writes belong to the state being replaced: flushing first keeps the rules simple.
    await vfs?.flushAll()
    return this.underVfs(vfs, async () => {
      const v = await this.catalog.restore(teamId, volumeId, snapshotId)
      if (vfs) await vfs.headMoved(v, true)
      return v
    })
  }

  async delete(teamId: TeamId, volumeId: string): Promise<void> {
    const key = `${teamId}/${volumeId}`
    // Queued metadata of the volume goes in first, so its commits cannot fail on deleted layers.
    // If that fails the changes die with the volume, which is what the caller asked for.
    const vfs = await this.openIfLoaded(teamId, volumeId)
    await vfs?.stopBackground()
    await vfs?.drainCommits().catch(() => undefined)
    this.open.delete(key)
    await this.catalog.delete(teamId, volumeId)
  }

  /** Commits every open volume's queued metadata changes (they are visible to queries then). */
  async drainAll(): Promise<void> {
    for (const p of [...this.open.values()]) await (await loaded(p))?.drainCommits()
  }

  /**
   * GC roots for a collection run in this process: like `volumeRoots`, after draining the
   * write-behind queues of the volumes open here. A GC in another process relies on the grace
   * period instead (queued changes are committed within milliseconds).
   */
  get gcRoots(): RootSource {
    const drain = (): Promise<void> => this.drainAll()
    const metadata = this.metadata
    return {
      name: volumeRoots.name,
      async *reachable() {
        await drain()
        yield* metadata.reachableChunks()
      },
    }
  }

  /** Flushes every open volume and releases the leases (server shutdown). */
  async close(): Promise<void> {
    if (this.renewTimer) clearInterval(this.renewTimer)
    await Promise.allSettled([...this.background])
    for (const p of this.open.values()) {
      const vfs = await loaded(p)
      // Stops the background packer, then flushes.
      await vfs?.close().catch((err: unknown) => this.log.error('flush at shutdown failed', { err }))
    }
    // Leases not given back expire by themselves (volumeLeaseMs); the next owner waits that long.
    await this.metadata
      .releaseLeases(this.ownerId)
      .catch((err: unknown) => this.log.warn('releasing volume leases at shutdown failed', { err }))
    this.open.clear()
  }
}

/** An open Vfs, or undefined if opening it failed (whoever opened it got that error). */
function loaded(p: Promise<Vfs>): Promise<Vfs | undefined> {
  return p.catch(() => undefined)
}

/**
 * GC roots of the volume engine in Postgres: every chunk an inode version in any layer refers to
 * (`MetadataStore.reachableChunks`), for a GC run outside the server (`s0 gc`).
 */
export const volumeRoots: RootSource = {
  name: 'volume layers',
  reachable(db) {
    return new PgMetadataStore(db).reachableChunks()
  },
}
