// Every bound in the system, named with its unit. Configuration may lower or raise some of them
// (see config.ts); nothing else hard-codes a size, count or duration.

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

  // --- Core (database, config) ---
  /** A new Postgres connection that is not up by then fails as `database_unavailable`. */
  dbConnectTimeoutMs: 10_000,
  /** A transaction that hits a serialization failure or deadlock is run again, this often in all. */
  dbTxAttemptsMax: 5,
  /** pg_ctl waits this long for the embedded Postgres to accept connections (crash recovery included). */
  embeddedPgStartTimeoutS: 60,
  /** pg_ctl waits this long for a fast shutdown of the embedded Postgres. */
  embeddedPgStopTimeoutS: 60,

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

  // --- FUSE ---
  /**
   * Kernel cache lifetime of names, attributes, misses and pages on an immutable mount (a
   * sandbox's root-filesystem checkpoint: nothing changes it while it is mounted).
   */
  fuseImmutableCacheS: 3600,
  /** Kernel name cache lifetime on ordinary mounts (names are checked again on every getattr). */
  fuseEntryTimeoutS: 1,
  /** Kernel attribute cache lifetime on ordinary mounts: 0, see MountOptions.attrTimeoutS. */
  fuseAttrTimeoutS: 0,
  /** One read or write request; libfuse 2.9 caps max_write at 128 KiB (4 KiB without big_writes). */
  fuseIoRequestBytesMax: 128 * KiB,
  /** Entries fetched from the Vfs per page while listing a directory. */
  fuseReaddirPageEntries: 1_000,
  /** `fusermount -uz` of a dead mount point. */
  fuseDetachTimeoutMs: 10_000,

  // --- Runtime (OCI drivers, templates, exec, zygotes) ---

  // --- Sandboxes (the domain: lifecycle, pools, contexts, files) ---

  // --- API (routes, watch, auth) ---

  // --- CLI ---
  /** A JSON call of the CLI to a server (metadata operations; streams are unbounded). */
  cliJsonRequestTimeoutMs: 120_000,
  /** `s0 server` exits anyway this long after SIGINT/SIGTERM (in-flight requests, open packs). */
  serverShutdownTimeoutMs: 30_000,
} as const

export type Limits = typeof limits
