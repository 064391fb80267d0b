// Every bound in the system, named with its unit. Configuration may lower or raise some of them
// (see config.ts); nothing else hard-codes a size, count or duration.
import { assert } from './assert.js'

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

export const limits = {
  // Chunking (FastCDC). A file smaller than chunkSizeMinBytes is one chunk.
  chunkSizeMinBytes: 256 * KiB,
  chunkSizeAvgBytes: 1 * MiB,
  chunkSizeMaxBytes: 4 * MiB,

  // Packs.
  packSizeTargetBytes: 16 * MiB,
  packsInFlightMax: 2,
  packChunksMax: 65_536,

  // Reads.
  // Reading up to 1 MiB of other chunks between two wanted ones is cheaper than a second GET.
  readCoalesceGapBytes: 1 * MiB,
  readRangeMaxBytes: 16 * MiB,
  /** Sequential reads keep this much of the file fetched ahead (refilled when half used). */
  readAheadBytes: 16 * MiB,
  memoryCacheBytesMax: 512 * MiB,
  diskCacheBytesMax: 10 * GiB,

  // Object store.
  objectStoreConcurrencyMax: 16,
  objectStoreAttemptTimeoutMs: 30_000,
  objectStoreRetriesMax: 5,
  objectStoreBackoffBaseMs: 50,
  objectStoreBackoffMaxMs: 5_000,
  objectListPageSize: 1_000,
  /** Hashes one dedup lookup statement may carry (concurrent writers' requests are merged). */
  touchBatchHashesMax: 4_096,
  /** Written chunks up to this size also go into the memory cache (small files are read back soon). */
  writeCacheChunkBytesMax: 256 * KiB,
  /** Pack objects without a row are deleted only when at least this old (an index commit may be in flight). */
  gcOrphanAgeMinMs: 15 * 60 * 1000,

  // Volume engine.
  /** A chain deeper than this is flattened in the background down to layerChainKeep layers + 1. */
  layerChainDepthMax: 32,
  layerChainKeep: 8,
  /** Delay before a layer a flatten made unused is deleted (readers with an old chain finish). */
  layerReleaseDelayMs: 5_000,

  // GC.
  gcGracePeriodMs: 60 * 60 * 1000,
  gcRepackLiveRatioMax: 0.5,
  gcBatchSize: 5_000,

  // Database.
  dbPoolSize: 10,
  dbStatementTimeoutMs: 60_000,

  // API.
  requestBodyBytesMax: 64 * MiB,
  /** A file written through the files API streams to the volume; this bounds one upload. */
  fileUploadBytesMax: 16 * GiB,
  /** Entries one archive import may create (tar bombs). */
  archiveEntriesMax: 1_000_000,
  fileListEntriesMax: 100_000,
  webSocketMessageBytesMax: 1 * MiB,
  apiKeysPerTeamMax: 1_000,

  // --- Volume engine: Vfs (write-back, commit queue, caches, read-ahead, quotas) ---
  /** Buffered writes of one file before a background flush (the writer waits at twice this). */
  fileDirtyBytesMax: 64 * MiB,
  /** Buffered writes of a whole volume before its largest file is flushed. */
  volumeDirtyBytesMax: 256 * MiB,
  /** How long a file closed with `release(ino, { flush: 'soon' })` may wait for its writeback batch. */
  writebackDelayMs: 200,
  /** Extra flush rounds of flushAll for files dirtied while it ran. */
  flushAllRoundsMax: 3,
  /** Queued metadata changes before a writer waits for Postgres. */
  commitQueueChangesMax: 512,
  /** Queued changes merged into one statement at most. */
  commitGroupChangesMax: 256,
  /** Retries of a failed commit statement, backing off exponentially from commitRetryBackoffBaseMs. */
  commitRetriesMax: 4,
  commitRetryBackoffBaseMs: 50,
  /** Inodes, names and directory paths each cached per open volume. */
  inodeCacheEntriesMax: 100_000,
  /** Files whose sequential-read position (read-ahead) is remembered per open volume. */
  readAheadFilesMax: 10_000,
  /** Inode numbers reserved from volumes.next_ino per round trip. */
  vfsInoBatchCount: 256,
  /** Directory entries per query when a directory is listed whole. */
  readdirPageEntries: 1_000,
  /** Block size statfs reports. */
  statBlockSizeBytes: 4_096,
  /** Parent hops before a directory's chain is declared broken (an assertion: a bug, not input). */
  dirParentHopsMax: 100_000,
  /** A volume's writer lease, renewed every volumeLeaseRenewMs. */
  volumeLeaseMs: 30_000,
  volumeLeaseRenewMs: 10_000,
  /** Rows per relaxed transaction when a flatten copies layers. */
  flattenPageRows: 2_000,
  /** Inode rows per query when GC walks every layer for reachable chunks. */
  volumeRootsPageRows: 2_000,
  /** Symlink hops when checking an archive's links (as Linux's MAXSYMLINKS). */
  archiveSymlinkHopsMax: 40,
  /** tar: largest pax or GNU long-name/long-link record accepted. */
  tarExtensionBytesMax: 1 * MiB,
  /** tar: extension headers that may precede one member (x + L + K and a few globals). */
  tarExtensionsPerEntryMax: 16,
  /** tar: bytes read at a time when skipping a member's data. */
  tarSkipPieceBytesMax: 1 * MiB,

  // --- FUSE ---

  // --- Runtime (OCI drivers, templates, exec, zygotes) ---

  // --- Sandboxes (the domain: lifecycle, pools, contexts, files) ---

  // --- API (routes, watch, auth) ---

  // --- CLI ---
} as const

export type Limits = typeof limits

// Relationships between limits, checked when this module loads: an edit that breaks one fails
// at start-up (and in every test), not under load.
function check(ok: boolean, what: string): void {
  assert(ok, `limits.ts: ${what}`)
}
check(
  limits.chunkSizeMinBytes <= limits.chunkSizeAvgBytes &&
    limits.chunkSizeAvgBytes <= limits.chunkSizeMaxBytes,
  'chunk sizes must be min <= avg <= max',
)
check(limits.packSizeTargetBytes >= limits.chunkSizeMaxBytes, 'a pack must hold the largest chunk')
check(limits.readRangeMaxBytes >= limits.chunkSizeMaxBytes, 'a ranged GET must cover the largest chunk')
check(limits.writeCacheChunkBytesMax <= limits.chunkSizeMaxBytes, 'the write cache takes small chunks only')
check(limits.commitGroupChangesMax <= limits.commitQueueChangesMax, 'a commit group comes from the queue')
check(limits.fileDirtyBytesMax <= limits.volumeDirtyBytesMax, 'a file bound above the volume bound')
check(limits.volumeLeaseRenewMs * 2 <= limits.volumeLeaseMs, 'a lease must survive one missed renewal')
check(
  limits.gcOrphanAgeMinMs >=
    (limits.objectStoreRetriesMax + 1) *
      (limits.objectStoreAttemptTimeoutMs + limits.objectStoreBackoffMaxMs),
  'an orphan pack must be older than the longest upload',
)
