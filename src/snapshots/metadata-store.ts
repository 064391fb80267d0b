// The volume engine's metadata boundary: everything the Vfs and the engine ask of their database
// (volumes, snapshots, layer chains, inode and entry rows, inode numbers, writer leases). Postgres
// implements it (metadata-store-pg.ts); test/snapshots/metadata-store.contract.ts is its contract.
import type { TeamId, Ino, LayerId, VolumeId, SnapshotId } from '../core/ids.js'
import type { DirEntry, Inode } from './types.js'

export type AccessMode = 'RWO' | 'ROX' | 'RWX'
/** `volume`: a user's volume (the volumes API). `rootfs`: a sandbox root-filesystem checkpoint or snapshot (hidden). */
export type VolumeKind = 'volume' | 'rootfs'

export interface VolumeRow {
  id: VolumeId
  teamId: TeamId
  kind: VolumeKind
  headLayerId: LayerId
  sourceVolumeId: VolumeId | null
  defaultPosixUid: number
  defaultPosixGid: number
  accessMode: AccessMode
  nextIno: number
  quotaBytes: number | null
  quotaInodes: number | null
  usedBytes: number
  usedInodes: number
  createdAt: Date
  updatedAt: Date
}

export interface SnapshotRow {
  id: SnapshotId
  volumeId: VolumeId
  teamId: TeamId
  layerId: LayerId
  name: string
  description: string
  sizeBytes: number
  inodes: number
  createdAt: Date
  expiresAt: Date | null
}

export interface CreateVolumeOptions {
  defaultPosixUid?: number
  defaultPosixGid?: number
  accessMode?: AccessMode
  quotaBytes?: number | null
  quotaInodes?: number | null
  /** Start from this snapshot's content (same team). */
  snapshotId?: string
  /** Default `volume`; a fork keeps its source's kind unless told. */
  kind?: VolumeKind
}

/** What changed between two layers: keys written in layers that are in one chain only. */
export interface LayerDiff {
  inodes: Ino[]
  entries: Array<{ parentIno: Ino; name: Buffer }>
}

/** A volume's usage counters, recorded with every metadata commit. */
export interface VolumeUsage {
  readonly id: string
  readonly usedBytes: number
  readonly usedInodes: number
}

/**
 * Volumes, snapshots and their layers. Snapshot, fork and restore are O(1): they seal a layer
 * and start a fresh empty one on top. Deleting releases only layers nothing else uses. Unknown
 * or other teams' ids are `not_found`.
 */
export interface VolumeCatalog {
  create(teamId: TeamId, opts?: CreateVolumeOptions): Promise<VolumeRow>
  get(teamId: TeamId, id: string): Promise<VolumeRow>
  /**
   * A volume the volumes API may show (kind `volume`): sandbox root-filesystem volumes are the
   * sandboxes API's business and are `not_found` here.
   */
  getUserVolume(teamId: TeamId, id: string): Promise<VolumeRow>
  /** The team owning a volume, for operator tools that name a volume by id alone (s0 mount). */
  teamOf(id: string): Promise<TeamId>
  list(teamId: TeamId, kind?: VolumeKind): Promise<VolumeRow[]>
  /** Removes the volume and its snapshots, releasing the layers nothing else uses. */
  delete(teamId: TeamId, id: string): Promise<void>
  snapshot(
    teamId: TeamId,
    volumeId: string,
    opts: { name: string; description?: string; expiresAt?: Date },
  ): Promise<SnapshotRow>
  listSnapshots(teamId: TeamId, volumeId: string): Promise<SnapshotRow[]>
  getSnapshot(teamId: TeamId, volumeId: string, snapshotId: string): Promise<SnapshotRow>
  deleteSnapshot(teamId: TeamId, volumeId: string, snapshotId: string): Promise<void>
  /** Points the volume at a fresh head over the snapshot's layer; the old head is released. */
  restore(teamId: TeamId, volumeId: string, snapshotId: string): Promise<VolumeRow>
  /** A new volume sharing the source's current content (copy-on-write from here on). */
  fork(teamId: TeamId, sourceId: string, opts?: CreateVolumeOptions): Promise<VolumeRow>
  /** The layer chain of a layer, itself first. */
  chainOf(layerId: LayerId): Promise<LayerId[]>
  /**
   * Materialises everything below `keep` layers of the chain into one new layer under them;
   * every chain through it reads as before. Returns the layer that may now be unused (release
   * it once no reader holds an old chain), or null if nothing was done.
   */
  flatten(chain: readonly LayerId[], keep: number): Promise<LayerId | null>
  diff(fromLayer: LayerId, toLayer: LayerId): Promise<LayerDiff>
  /** Deletes a layer (and then its parents) if nothing refers to it any more. */
  release(layerId: LayerId): Promise<void>
}

/**
 * The writes of one metadata change, committed together. A later write of the same key (inode,
 * or parent and name) replaces an earlier one.
 */
export interface MetadataBatch {
  putInode(i: Inode): void
  deleteInode(ino: Ino): void
  /** `ino` null is a whiteout: the name is gone in this layer and below. */
  putEntry(parent: Ino, name: Buffer, ino: Ino | null, kind: number): void
  /** Adds a later batch's changes (its values win): several changes in one commit. */
  absorb(later: MetadataBatch): void
  readonly empty: boolean
}

/**
 * Rows are read through a layer chain (head first: the first version found wins) and written to
 * the head layer only. Implementations must keep snapshot, fork and restore O(1) in the volume's
 * size and return catalogue errors (`not_found`), so they pass to the API and to FUSE unchanged.
 */
export interface MetadataStore {
  readonly catalog: VolumeCatalog

  /** The newest version of an inode in the chain; undefined if absent or deleted. */
  readInode(chain: readonly LayerId[], ino: Ino): Promise<Inode | undefined>
  /** The inode a name points to, 0 when absent (or whited out). */
  lookupEntry(chain: readonly LayerId[], parentIno: Ino, name: Buffer): Promise<Ino | 0>
  /** Entries of a directory in name order, after `after` (exclusive), at most `limit`. */
  listEntries(
    chain: readonly LayerId[],
    parentIno: Ino,
    after: Buffer | null,
    limit: number,
  ): Promise<DirEntry[]>
  hasEntries(chain: readonly LayerId[], parentIno: Ino): Promise<boolean>
  /** The name under which `parentIno` holds `ino` (for event paths); null if none. */
  nameOf(chain: readonly LayerId[], parentIno: Ino, ino: Ino): Promise<Buffer | null>
  /**
   * Inline files of one layer (the packer's work list): inode and inline bytes, after `afterIno`
   * in inode order, at most `limit`.
   */
  inlineFiles(layerId: LayerId, afterIno: Ino | 0, limit: number): Promise<Array<{ ino: Ino; bytes: Buffer }>>

  newBatch(): MetadataBatch
  /**
   * Applies a batch to the head layer and records the volume's usage, atomically. Relaxed: it
   * becomes durable with the next `syncVolume` (any later synchronous commit); with `durable`,
   * it is a synchronous commit itself (and so makes every earlier commit durable). `not_found`
   * when the volume no longer exists. With `epoch` (the writer lease's, from `takeLease`), the
   * commit is fenced: `volume_lease_lost`, and nothing written, once the lease changed hands.
   */
  commit(
    batch: MetadataBatch,
    layerId: LayerId,
    usage: VolumeUsage,
    opts?: { durable?: boolean; epoch?: number },
  ): Promise<void>
  /** Makes every earlier commit durable. */
  syncVolume(volumeId: string): Promise<void>
  /** Reserves `count` consecutive inode numbers of the volume; returns the first. */
  allocInodes(volumeId: string, count: number): Promise<Ino>

  /**
   * Takes (or renews) the volume's writer lease and returns its epoch, which moves on whenever
   * the lease changes hands (fencing: commits carry it); null when another owner holds it.
   */
  takeLease(volumeId: string, owner: string, leaseMs: number): Promise<number | null>
  renewLeases(volumeIds: readonly string[], owner: string, leaseMs: number): Promise<void>
  releaseLease(volumeId: string, owner: string): Promise<void>
  releaseLeases(owner: string): Promise<void>

  /** Every chunk an inode version in any layer refers to, in batches per team (GC roots). */
  reachableChunks(): AsyncIterable<{ teamId: TeamId; hashes: Buffer[] }>
}
