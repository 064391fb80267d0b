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

  // --- Runtime (OCI drivers, templates, exec, zygotes) ---
  // Exec into a sandbox (src/runtime/sandbox-runtime.ts, exec-handle.ts).
  /** Sandbox0's default; the runtime and the contexts API use this one value. */
  execTimeoutMsDefault: 30_000,
  execTimeoutMsMax: 24 * 60 * 60_000,
  /** stdout and stderr each kept by `SandboxRuntime.run`; the rest is counted and dropped. */
  execOutputBytesMax: 4 * MiB,
  sandboxEnvEntriesMax: 1_000,
  /** After a kill, how long an exec'd process gets to go before we stop waiting for its pipes. */
  execKillGraceMs: 5_000,
  /** Pre-started execs (exec-zygotes.ts): one per sandbox at most, this many per runtime. */
  execZygotesPerRuntimeMax: 64,
  // Per-sandbox host resources (bundle.ts, scratch.ts). /tmp and /dev/shm share one host tmpfs.
  sandboxTmpBytesDefault: 256 * MiB,
  sandboxDevShmBytesDefault: 64 * MiB,
  /** The container's /dev (device nodes only). */
  sandboxDevBytes: 64 * MiB,
  sandboxCpuPeriodUs: 100_000,
  sandboxOpenFilesMax: 4_096,
  /** oom_score_adj of sandbox processes: they go first if the host itself runs out of memory. */
  sandboxOomScoreAdj: 500,
  sandboxMemoryBytesMin: 4 * MiB,
  /** Saving /tmp and /dev/shm into a memory image, and putting them back (scratch.ts). */
  sandboxScratchCopyTimeoutMs: 2 * 60_000,
  // OCI runtime CLIs (cli-driver.ts).
  /** create + start of one container (runsc ptrace takes ~0.3 s idle, seconds on a busy host). */
  ociRunTimeoutMs: 60_000,
  /** state, list, kill, ps, pause, resume. */
  ociQueryTimeoutMs: 15_000,
  ociDeleteTimeoutMs: 30_000,
  /** `--version` while probing which runtimes work (detect.ts). */
  ociProbeVersionTimeoutMs: 10_000,
  /** An exec'd process writes its pid file within this time or is treated as failed to start. */
  execPidFileWaitMs: 10_000,
  execPidFilePollMs: 20,
  ociInitLogBytesMax: 64 * KiB,
  /** Characters of a failed command's stderr kept in the error message. */
  hostCliErrorCharsMax: 2_000,
  // Every host command (cli.ts).
  hostCliTimeoutMsDefault: 30_000,
  hostCliOutputBytesMax: 1 * MiB,
  // Templates (templates.ts).
  templateBusyboxBuildTimeoutMs: 30_000,
  /** mmdebstrap of bookworm + python3 takes ~46 s on a quiet host. */
  templateDebianBuildTimeoutMs: 15 * 60_000,
  templateDebianOutputBytesMax: 256 * KiB,
  templateUnpackTimeoutMs: 5 * 60_000,
  templateImportTimeoutMs: 10 * 60_000,
  templateLockWaitMs: 20 * 60_000,
  templateLockPollMs: 200,
  templateMirrorProbeTimeoutMs: 5_000,
  // Root-filesystem capture (rootfs-capture.ts).
  captureCopyBufferBytes: 1 * MiB,

  // --- Sandboxes (the domain: lifecycle, pools, contexts, files) ---

  // --- API (routes, watch, auth) ---

  // --- CLI ---
} as const

export type Limits = typeof limits
