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
  /**
   * Kernel cache lifetime of names, attributes, misses and pages on an immutable mount (a
   * sandbox's root-filesystem checkpoint: nothing changes it while it is mounted).
   */
  fuseImmutableCacheS: 3600,
  /** Kernel name cache lifetime on ordinary mounts (names are checked again on every getattr). */
  fuseEntryTimeoutS: 1,
  /** Kernel attribute cache lifetime on ordinary mounts: 0, see MountOptions.attrTimeoutS. */
  fuseAttrTimeoutS: 0,
  /**
   * Kernel cache lifetime of names, attributes and misses on an ordinary lowlevel mount. Changes
   * made elsewhere are invalidated at once, so this bounds only what a lost notice could cost.
   */
  fuseTtlS: 1,
  /** Lowlevel: one write request (libfuse 3 takes up to 1 MiB; the kernel's max_pages 256). */
  fuseLowlevelWriteBytesMax: 1 * MiB,
  /** Lowlevel: kernel requests in the background (readahead, write-back) before it throttles. */
  fuseMaxBackground: 64,
  /** Lowlevel: names remembered for a full invalidation (restore); past it they go uncached. */
  fuseKnownNamesMax: 500_000,
  /** Lowlevel: cached misses remembered for a full invalidation; past it misses go uncached. */
  fuseNegativeNamesMax: 65_536,
  /** One read or write request; libfuse 2.9 caps max_write at 128 KiB (4 KiB without big_writes). */
  fuseIoRequestBytesMax: 128 * KiB,
  /** Entries fetched from the Vfs per page while listing a directory. */
  fuseReaddirPageEntries: 1_000,
  /** `fusermount -uz` of a dead mount point. */
  fuseDetachTimeoutMs: 10_000,

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

  // --- Egress: policy, classification, DNS ---
  /** Rules in each of a policy's trafficRules, protocolRules and credentialRules. */
  egressRulesMax: 4_096,
  /** Entries of one list of a policy (domains, cidrs, ports, methods, paths, tools, headers...). */
  egressListEntriesMax: 4_096,
  egressCredentialBindingsMax: 256,
  /** Entries of one address or port index of a compiled policy; past it those rules are scanned. */
  egressRuleIndexEntriesMax: 262_144,
  /** Characters of one string of a policy (names, paths, value templates, placeholders). */
  egressPolicyStringCharsMax: 4_096,
  /** First bytes of a connection read to classify it (a ClientHello with big extensions fits). */
  sniffBytesMax: 16 * KiB,
  /** One DNS message (TCP's two-byte length prefix bounds it to this too). */
  dnsMessageBytesMax: 65_535,
  /** Compression pointers followed while reading one name (each must point backwards anyway). */
  dnsCompressionHopsMax: 64,
  /** One forwarded query: a try waits this long, then it is sent again, this many tries in all. */
  dnsUpstreamAttemptTimeoutMs: 2_000,
  dnsUpstreamAttemptsMax: 3,
  /** Queries forwarded upstream at once: by the whole resolver, and for one sandbox. */
  dnsUpstreamInFlightMax: 256,
  dnsUpstreamInFlightPerSourceMax: 32,
  dnsTcpConnectionsMax: 128,
  /** A DNS-over-TCP connection that sends nothing for this long is closed. */
  dnsTcpIdleTimeoutMs: 10_000,
  /** The hosts file is looked at again (stat) at most this often, and read only when it changed. */
  dnsHostsCheckIntervalMs: 1_000,
  dnsHostsFileBytesMax: 4 * MiB,
  /** TTL of answers from the hosts file. */
  dnsHostsAnswerTtlS: 60,

  // --- Egress: sandbox network (veth, addresses, nftables) ---
  // src/runtime/network.ts, address-pool.ts, nftables.ts. A /12 pool is 262,144 sandboxes of one
  // /30 each; a /24 is 64.
  sandboxCidrPrefixMin: 12,
  sandboxCidrPrefixMax: 24,
  /** ICMP echo to its own gateway, per sandbox address (nft meter): the only ICMP a sandbox starts. */
  sandboxIcmpEchoPerSecond: 5,
  sandboxIcmpEchoBurstPackets: 10,
  /** `nft -f` of the whole table (one transaction), and each `ip` batch of an attach or detach. */
  sandboxNetworkCliTimeoutMs: 15_000,
  /** How often the table's presence is checked (and it is re-installed after a ruleset flush). */
  sandboxNetworkCheckIntervalMs: 2_000,

  // --- Egress: TLS interception and HTTP proxying ---
  /** A per-sandbox CA (created at claim) is valid this long. */
  egressCaValidityMs: 10 * 365 * 24 * 3600_000,
  /** A leaf the proxy presents to a sandbox is valid this long (then issued again). */
  egressLeafValidityMs: 24 * 3600_000,
  /** Certificates start this long before they are made (a sandbox clock a little behind still accepts them). */
  egressCertBackdateMs: 3600_000,
  /** A cached leaf with less than this left is issued again before use. */
  egressLeafRenewBeforeMs: 3600_000,
  /** Leaves (one per server name) cached per sandbox CA. */
  egressLeafCacheEntriesMax: 1_000,
  /** P-256 key pairs generated ahead (off the event loop) for new leaves; shared by every CA. */
  egressLeafSpareKeysMax: 8,
  /** Names one leaf certificate carries. */
  egressLeafNamesMax: 16,
  /** TLS handshakes with the sandbox and with the destination each finish within this. */
  egressTlsHandshakeTimeoutMs: 10_000,
  /** Re-origination trust contexts cached (by trust bundle and client certificate). */
  egressTrustContextsMax: 64,
  /** A request head (request line and headers) from the sandbox, or a response head from the destination. */
  egressHttpHeaderBytesMax: 64 * KiB,
  egressHttpHeadersCountMax: 256,
  /** Requests being answered at once on one sandbox connection (h2 streams, h1 pipelining). */
  egressHttpRequestsInFlightMax: 100,
  /** Destination connections one sandbox connection may hold open (HTTP/1.1 upstreams). */
  egressHttpUpstreamConnectionsMax: 8,
  /** A sandbox or destination connection with no bytes moving for this long is closed. */
  egressHttpIdleTimeoutMs: 120_000,
  /** A request body in which a placeholder is substituted is buffered up to this (Content-Length known). */
  egressSubstitutionBodyBytesMax: 1 * MiB,
  /** A request body buffered for an MCP `tools/call` check; a larger one is denied, not inspected. */
  egressMcpBodyBytesMax: 1 * MiB,
  /** Memory one h2 session (sandbox or destination side) may use for its own state. */
  egressH2SessionMemoryMiB: 16,

  // --- Egress: the proxy (src/egress/proxy) ---
  /** TCP connections the proxy holds at once, all sandboxes of this host together. */
  egressConnectionsMax: 16_384,
  /** A connection silent this long before its first bytes is classified as it is (a server-first protocol). */
  egressSniffTimeoutMs: 300,
  /** The proxy's TCP connect to a destination (or to the SOCKS5 upstream proxy). */
  egressConnectTimeoutMs: 10_000,
  /** A name a sandbox resolved stays the name of its addresses at least / at most this long. */
  egressNameTtlSMin: 60,
  egressNameTtlSMax: 3_600,
  /** Addresses with names remembered per sandbox, and names per address (oldest dropped first). */
  egressNamesPerSandboxMax: 4_096,
  egressNamesPerIpMax: 16,
  /** A UDP flow (sandbox address and port) silent this long ends; its next datagram is decided again. */
  egressUdpFlowIdleMs: 60_000,
  /** UDP flows the relay tracks at once, all sandboxes of this host together (more are dropped). */
  egressUdpFlowsMax: 4_096,
  /** Datagrams of a new flow held while its destination is looked up. */
  egressUdpPendingDatagramsMax: 16,

  // --- Egress: credentials ---
  credentialSourcesPerTeamMax: 1_000,
  /** A source's name: a DNS label. */
  credentialSourceNameCharsMax: 63,
  /** Sealed versions kept per source (the current one and the last ones before it). */
  credentialVersionsKept: 3,
  /** A source's spec as stored (JSON, before sealing). */
  credentialSpecBytesMax: 256 * KiB,
  /** One PEM field (certificate chain, private key, CA bundle). */
  credentialPemBytesMax: 64 * KiB,
  credentialHeaderValuesMax: 64,
  credentialHeaderValueBytesMax: 16 * KiB,
  credentialFieldNameCharsMax: 128,
  /** RFC 1929 carries each of username and password in at most 255 bytes. */
  credentialUsernamePasswordBytesMax: 255,
  credentialPassphraseBytesMax: 1 * KiB,
  credentialTemplateCharsMax: 4 * KiB,
  /** How long a resolved source is reused when a binding's cachePolicy.ttl says nothing. */
  credentialCacheTtlMsDefault: 30_000,
  /** The most a binding's cachePolicy.ttl may say: another process sees a rotation within this. */
  credentialCacheTtlMsMax: 5 * 60_000,
  credentialCacheEntriesMax: 10_000,
  /** TCP connect plus the SOCKS5 greeting, login and CONNECT reply. */
  socks5HandshakeTimeoutMs: 10_000,
  /** A sandbox must log in to the SSH proxy within this. */
  sshProxyAuthTimeoutMs: 30_000,
  sshProxyAuthAttemptsMax: 10,
  /** Connect, host key check and login to the upstream SSH server. */
  sshUpstreamReadyTimeoutMs: 20_000,
  /** Keepalives on the upstream SSH connection (three unanswered end it). */
  sshKeepaliveIntervalMs: 15_000,
  /** After the upstream SSH login failed, the sandbox's connection is closed this much later. */
  sshProxyFailureGraceMs: 5_000,
  /** Channels (sessions, direct-tcpip) one proxied SSH connection may have open. */
  sshProxyChannelsMax: 16,
  /** `env` requests kept per session (more are refused). */
  sshProxyEnvVarsMax: 64,
  sshKnownHostsLinesMax: 256,
  sshSandboxPublicKeysMax: 64,
  /** Channels recorded in an SSH proxy connection's summary (the count goes on). */
  sshProxySummaryChannelsMax: 32,

  // --- Runtime hardening (seccomp, disk) ---
  /**
   * A sandbox's writable root (its overlay upper) is an ext4 file system of this size in a sparse
   * image file (disk.ts): `resources.ephemeralStorage` of the template or the claim, else the
   * server's S0_SANDBOX_DISK_BYTES.
   */
  sandboxDiskBytesDefault: 10 * GiB,
  /** ext4 with a journal needs a few MiB; smaller limits are refused. */
  sandboxDiskBytesMin: 16 * MiB,
  sandboxDiskBytesMax: 1024 * GiB,
  /** Image sizes are whole MiB (rounded down), so few distinct empty images are made and cached. */
  sandboxDiskBytesStep: 1 * MiB,
  /** Empty images kept per runtime, one per size (sparse: ~4 MiB of host disk for 10 GiB). */
  sandboxDiskImagesCachedMax: 16,
  /** mkfs.ext4 of one empty image (once per size). */
  sandboxDiskMkfsTimeoutMs: 60_000,
  /** The upper (a tmpfs) of the container that checks a runtime works (detect.ts); it writes nothing. */
  runtimeProbeUpperBytes: 1 * MiB,

  // --- Sandboxes (the domain: lifecycle, pools, contexts, files) ---
  /** A trust bundle in a sandbox's root larger than this is not extended with its egress CA. */
  sandboxTrustBundleBytesMax: 4 * MiB,
  /** How often ttl / hard_ttl, expired rootfs snapshots and warm pools are looked at. */
  sandboxSweepIntervalMs: 1_000,
  activeSandboxesPerTeamMax: 100,
  sandboxTtlSecMax: 30 * 24 * 3600,
  sandboxListEntriesDefault: 50,
  sandboxListEntriesMax: 200,
  /** How long a pause request waits for the checkpoint before answering `paused: false`. */
  pauseWaitMs: 15_000,
  /** A runtime call to a paused sandbox waits this long for its auto-resume, then gets 503. */
  autoResumeWaitMsDefault: 10_000,
  /** The most S0_AUTO_RESUME_WAIT_MS may say. */
  autoResumeWaitMsMax: 10 * 60_000,
  /** Unreferenced rootfs volumes younger than this are left alone (a capture may be starting). */
  rootfsOrphanGraceMs: 10 * 60_000,
  rootfsOrphanSweepIntervalMs: 60_000,
  /** Template resources: memory bounds and default, cpu in thousandths of a core, pids. */
  templateMemoryBytesMin: 128 * MiB,
  templateMemoryBytesMax: 32 * GiB,
  templateMemoryBytesDefault: 1 * GiB,
  templateCpuMillisMin: 100,
  templateCpuMillisMax: 64_000,
  templatePidsDefault: 256,
  templatePidsMax: 32_768,
  templatesPerTeamMax: 1_000,
  /** Warm sandboxes per template at most, whatever minIdle says. */
  poolIdlePerTemplateMax: 64,
  /** Warm sandboxes on one server at most. */
  poolIdlePerServerMax: 256,
  /** Pool sandboxes started at once (this host's cores do the work). */
  poolStartsInFlightMax: 2,
  /** A template whose warm sandboxes fail to start is retried after this long. */
  poolFailureBackoffMs: 30_000,
  /** A warm cmd process with no readiness timeout of its own must be ready within this. */
  warmProcessReadyTimeoutMsDefault: 30_000,
  /** A REPL must print its first sentinel within this time of starting. */
  contextReadyTimeoutMs: 30_000,
  contextsPerSandboxMax: 64,
  /** Characters kept of each of stdout, stderr and the combined output of one exec or cmd. */
  contextOutputCharsMax: 4 * MiB,
  /** Output frames kept for a WebSocket that attaches later (oldest dropped first). */
  contextReplayCharsMax: 1 * MiB,
  /** Inputs written to a REPL whose sentinel has not come back yet. */
  contextPendingInputsMax: 64,
  contextSubscribersMax: 16,
  /** A process that outlives its kill by this much is given up on. */
  contextKillWaitMs: 5_000,
  /** After a signal, a REPL gets this long to print what the interrupt makes it print. */
  contextSignalSettleMs: 2_000,
  /** Contexts without ttl_sec still end after this (a day). */
  contextLifetimeMsMax: 24 * 60 * 60_000,
  /** One input (exec, input, a REPL's first input) at most. */
  contextInputCharsMax: 1 * MiB,
  /** Sandbox0's limit for one file written through the sandbox files API. */
  sandboxUploadBytesMax: 100 * MiB,
  /** Symbolic links followed while resolving one sandbox path (as Linux's MAXSYMLINKS). */
  symlinkHopsMax: 40,
  /** Directories one file-watch connection may watch (a recursive watch of a big tree is refused beyond it). */
  watchDirsMax: 1_024,
  watchSubscriptionsMax: 16,
  /** A watch client this far behind is disconnected. */
  watchBufferedBytesMax: 4 * MiB,
  /** Volume watch events waiting for one slow client before it is disconnected. */
  watchPendingEventsMax: 10_000,
  /** A watch connection that subscribes to nothing within this is closed. */
  watchSubscribeTimeoutMs: 10_000,

  // --- API (routes, watch, auth) ---
  /** `/readyz` answers 503 when Postgres does not answer within this. */
  readyTimeoutMs: 2_000,
  /** Bytes of a volume file read per piece while streaming it out. */
  fileReadPieceBytes: 4 * MiB,
  /** A revoked API key keeps working on other processes for at most this long. */
  authCacheTtlMs: 10_000,
  authCacheEntriesMax: 10_000,

  // --- Sandbox events (core/events.ts) ---
  /** Events waiting to be written at most; beyond it they are dropped and counted. */
  eventQueueMax: 100_000,
  /** Events per INSERT. */
  eventBatchMax: 1_000,
  /** How long an event may wait for its batch. */
  eventFlushIntervalMs: 200,
  /** Events per page of `GET …/observability/events` (default / most). */
  eventPageDefault: 100,
  eventPageMax: 1_000,
  /** A live watch (events, logs) sends a heartbeat line this often when nothing happens. */
  watchHeartbeatMs: 15_000,
  /** A live watch looks for rows another writer (replica) committed at least this often. */
  watchPollMs: 1_000,
  /** Retention runs (events and logs) this often. */
  observabilityRetentionIntervalMs: 10 * 60_000,
  /** Defaults of the retention config (S0_OBSERVABILITY_RETENTION_DAYS, …). */
  observabilityRetentionDaysDefault: 30,
  eventRetentionBytesPerTeamDefault: 1024 * MiB,
  logBytesPerSandboxDefault: 16 * MiB,
  /** Rows deleted per statement by retention (short transactions; it loops). */
  retentionDeleteBatch: 10_000,

  // --- Sandbox logs (sandboxes/logs.ts) ---
  /** Output chunks waiting to be written at most; beyond it they are dropped and counted. */
  logQueueMax: 100_000,
  logBatchMax: 1_000,
  /** Shorter than events': a live tail (`watchLogs`) shows output this much later at most. */
  logFlushIntervalMs: 50,
  /** One stored log row holds at most this much of a chunk (longer output is split). */
  logMessageBytesMax: 64 * KiB,
  /** Log lines per page of `GET …/observability/logs` (default / most). */
  logPageDefault: 100,
  logPageMax: 1_000,

  // --- CLI ---
  /** A JSON call of the CLI to a server (metadata operations; streams are unbounded). */
  cliJsonRequestTimeoutMs: 120_000,
  /** `s0 server` exits anyway this long after SIGINT/SIGTERM (in-flight requests, open packs). */
  serverShutdownTimeoutMs: 30_000,

  // --- Inline small files and their packer (issue 13 §2; snapshots/write-back.ts, packer.ts) ---
  /**
   * A regular file whose data ends at or below this is stored in its inode row (one metadata
   * row, group-committed with the namespace change) instead of a pack per close. Above it the
   * file moves to chunks. Not format-defining: old rows of any size keep reading.
   */
  inlineFileBytesMax: 64 * KiB,
  /** Bytes of inodes one open volume caches (inline data included; entries are bounded too). */
  inodeCacheBytesMax: 96 * MiB,
  /** The packer's pass starts this long after the first inline write since the last pass. */
  packerDelayMs: 10_000,
  /** Inline files one packer pass moves into packs at most (one metadata change). */
  packerFilesPerPassMax: 1_024,
  /** Inline bytes one packer pass moves at most (about one pack). */
  packerBytesPerPassMax: 16 * MiB,
  /** Passes of one run, back to back, before the packer waits for new inline writes again. */
  packerPassesPerRunMax: 16,

  // --- Chunk store: hash pool and restore planner (issue 13 §3; src/blockstore/hash-pool.ts,
  // ChunkStore.readPlanned). Kept as one block at the end so concurrent edits do not collide. ---
  /** Worker threads that cut and hash large writes: os.availableParallelism(), at most this. */
  hashPoolWorkersMax: 16,
  /**
   * Staged bytes below this are cut and hashed on the calling thread. Measured on the 2-core
   * bench machine (docs/ARCHITECTURE.md, the chunk store's hash pool): a worker round trip
   * costs ~55-65 µs of CPU in messages and wake-ups whatever the size; inline, 256 KiB (one chunk, hash only) costs 44 µs, 512 KiB
   * 174 µs and 1 MiB 423 µs (gear loop + hash). From 512 KiB on the pool costs no more CPU in
   * total and frees the caller's thread; below it, it would only add work. Small files never
   * leave the calling thread.
   */
  hashPoolJobBytesMin: 512 * KiB,
  /** Idle shared staging buffers kept for the next large writes, in bytes (8 writers' worth). */
  sharedStagingBytesKeptMax: 128 * MiB,
  /** Jobs waiting for a worker at most; beyond it a writer cuts and hashes on its own thread. */
  hashPoolQueuedJobsMax: 1_024,
  /**
   * One GET of a planned read may cover a whole pack (target plus the chunk that crossed it),
   * so a restore reads a pack it needs most of in one request.
   */
  restoreRangeMaxBytes: 20 * MiB,
  /** Ranged GETs of a planned read in flight at once (its memory: this many ranges). */
  restoreRangesInFlightMax: 4,
  /** Hashes per index lookup of a planned read (one `= ANY($2)` query each). */
  restoreLocateHashesMax: 8_192,

  // ---- workspace sync (src/sync, src/cli/sync-*) --------------------------------------------
  /** Attributes read at once while a sync listing walks a directory. */
  syncListConcurrency: 32,
  /** Changed paths a volume's sync feed remembers; a cursor older than that asks for a rescan. */
  syncFeedPathsMax: 200_000,
  /** How long a change poll may wait for a change (the client's long poll). */
  syncChangesWaitMsMax: 25_000,
  /** Changed paths resolved into entries per answer (the rest come with the next poll). */
  syncChangesPerReplyMax: 5_000,
  /** A volume's feed with no poll for this long stops watching (the next poll rescans). */
  syncFeedIdleMs: 10 * 60_000,
  /** A sync commit's temporary file older than this is a crash's leftover: a listing removes it. */
  syncTempStaleMs: 10 * 60_000,
  /** Chunk hashes in one missing-chunks question. */
  syncMissingHashesMax: 10_000,
  /**
   * Puts of one sync commit written at once (their flushes share writeback batches). Each holds
   * database connections for a while: at 16 a 100,000-file first pass exhausted the pool.
   */
  syncCommitPutConcurrency: 4,
  /** Chunks whose block signatures one question may ask for (each up to chunkSizeMaxBytes read). */
  syncSignatureChunksMax: 64,
  /** One batch of chunks a sync client uploads in one request (many small files' chunks). */
  syncChunkBatchBytesMax: 16 * 1024 * 1024,
  /** Operations in one sync commit. */
  syncCommitOpsMax: 1_000,
  /** Commit answers remembered per volume by idempotency key (in Postgres), and for how long. */
  syncIdempotencyTtlMs: 24 * 60 * 60_000,
  /** Files the client reads or writes at once; chunk requests in flight. */
  syncClientFileConcurrency: 8,
  syncClientChunkConcurrency: 8,
  /** The client waits this long after a local change for more before it reconciles. */
  syncClientDebounceMs: 40,
  /** A full local rescan at least this often even when the watchers saw nothing (missed events). */
  syncClientFullRescanMs: 5 * 60_000,
  /** A path whose sync action failed is tried again after this, doubling up to the max while it fails. */
  syncClientRetryMs: 500,
  syncClientRetryMaxMs: 30_000,
  /** Mass-delete guard: a pass deleting more than this share of the tree or this many entries pauses. */
  syncDeleteShareMax: 0.5,
  syncDeleteCountMax: 1_000,
  /** A file changing while it is read is retried this often, then left for the next pass. */
  syncClientReadRetries: 3,

  // ---- app services and the ingress proxy (src/sandboxes/services/) ----------------------------
  servicesPerSandboxMax: 16,
  /** An inline `function` service's source (Sandbox0: 256 KiB). */
  serviceFunctionCodeBytesMax: 256 * 1024,
  /** A `function` service without a port listens on this + its index in the list. */
  serviceFunctionPortBase: 18_080,
  /** A supervised `cmd`/`function` process that exits is restarted after 0.5 s, doubling up to 30 s. */
  serviceRestartBackoffMinMs: 500,
  serviceRestartBackoffMaxMs: 30_000,
  /** A process that ran this long resets the backoff. */
  serviceRestartResetAfterMs: 60_000,
  /** A route's `timeout_seconds` when it names none, and the most it may name. */
  ingressTimeoutSecDefault: 60,
  ingressTimeoutSecMax: 3_600,
  /** Request and response bodies through the ingress proxy, each (a longer one is cut: 413 / reset). */
  ingressBodyBytesMax: 1024 * 1024 * 1024,
  /** Publishability probes: a TCP connect, then the health check. */
  serviceProbeConnectTimeoutMs: 500,
  serviceProbeHealthTimeoutMs: 2_000,
  /** While a woken sandbox's service starts, the proxy retries the connect this often. */
  ingressConnectRetryMs: 100,
  /** How long a refused connect to a running `cmd`/`function` service is retried (it may be starting). */
  ingressStartingWaitMs: 3_000,
  /** Idle keep-alive sockets to sandboxes kept per sandbox address. */
  ingressKeepAliveSocketsMax: 64,
  /** Ingress requests recorded one event each, per sandbox (a token bucket); beyond: summaries. */
  ingressEventsPerSecond: 50,
  ingressEventsBurst: 200,
  /** How often the summary of requests beyond that budget is written. */
  ingressEventSummaryMs: 1_000,
  /** Token buckets kept (rate limits per route, event budgets per sandbox); the least recent go. */
  ingressBucketsMax: 10_000,
  // Templates built in the background (registry images, from a sandbox: sandboxes/template-builds.ts).
  /** Retry-After of a claim of a template still creating (or failed). */
  templateNotReadyRetryAfterS: 2,
  /** Bytes kept of what skopeo prints (a raw manifest, an index of many platforms). */
  templateManifestBytesMax: 4 * MiB,
  /** Registries a team may store credentials for. */
  registryCredentialsPerTeamMax: 100,
  /** How long POST /templates/from-sandbox remembers an Idempotency-Key. */
  templateIdempotencyTtlMs: 24 * 60 * 60_000,
  // Registry images in the chunk engine (sandboxes/image-volumes.ts).
  /** One import (unpacked root → volume) or materialization (volume → host directory) at most. */
  imageVolumeTransferTimeoutMs: 10 * 60_000,
  /** Imports and materializations running at once in one process (each reads a whole image). */
  imageVolumeTransfersMax: 2,
  /** Bytes read from the volume per call while a file is materialized. */
  imageVolumeCopyBufferBytes: 1 * MiB,
  // --- SSH endpoint into sandboxes (src/sandboxes/ssh) ---
  /** SSH public keys a team may register (`/users/me/ssh-keys`). */
  sshKeysPerTeamMax: 100,
  /** One OpenSSH public key line (a 16384-bit RSA key is about 2.8 KiB). */
  sshPublicKeyBytesMax: 16 * 1024,
  /** A client must log in within this after connecting. */
  sshLoginTimeoutMs: 30_000,
  /** Failed authentication attempts per connection before it is closed. */
  sshLoginAttemptsMax: 6,
  /** Connections open at once to the SSH endpoint (each holds processes and tunnels). */
  sshConnectionsMax: 256,
  /** Channels (sessions, -L tunnels) one SSH connection may have open. */
  sshChannelsPerConnectionMax: 32,
  /** A shell or command started over SSH is killed after this (a context's lifetime too). */
  sshSessionLifetimeMs: 24 * 60 * 60_000,
  /** `env` requests kept per SSH session (more are refused). */
  sshEnvVarsMax: 64,
  /** Bytes one SFTP READ answers at most (OpenSSH asks for 32 KiB to 256 KiB). */
  sftpReadBytesMax: 256 * 1024,
  /** Open SFTP handles per session. */
  sftpHandlesMax: 64,
  /** Names one SFTP READDIR answers at once. */
  sftpReaddirBatch: 128,
  /** An `ssh -L` dial into the sandbox must connect within this. */
  sshForwardConnectTimeoutMs: 10_000,
  /** How long a pty resize looks for the terminal of a process that has just started. */
  ptyResizeWaitMs: 2_000,

  // --- Sandbox metrics (src/sandboxes/metrics) and webhooks (src/sandboxes/webhooks), issue 16 ---
  /** How often every running sandbox is sampled (S0_METRICS_INTERVAL_MS). */
  metricsIntervalMsDefault: 5_000,
  metricsIntervalMsMin: 100,
  metricsIntervalMsMax: 3_600_000,
  /** Samples older than this are deleted (S0_METRICS_RETENTION_MS): 7 days. */
  metricsRetentionMsDefault: 7 * 86_400_000,
  metricsRetentionMsMin: 60_000,
  /** How often the retention job runs, and how much one DELETE and one run remove at most. */
  metricsRetentionSweepMs: 600_000,
  metricsRetentionDeleteBatch: 10_000,
  metricsRetentionBatchesPerSweep: 100,
  /** Sandboxes read at once in a tick (a dozen small file reads and a statfs each). */
  metricsReadsInFlight: 16,
  /** Samples per INSERT. */
  metricsSamplesPerInsertMax: 500,
  /** A query without start_time covers the hour before end_time; at most 30 days (the SDK's). */
  metricsDefaultRangeMs: 3_600_000,
  metricsQueryRangeMsMax: 30 * 86_400_000,
  /** Points per series (the SDK's max_points: default 240, at most 1000). */
  metricsMaxPointsDefault: 240,
  metricsMaxPointsMax: 1_000,
  /** Samples further apart than this many intervals are a hole (a gap, a new segment). */
  metricsHoleIntervals: 3,
  /** Gaps reported by one query (beyond: `partial`). */
  metricsGapsMax: 1_000,
  /** How often the deliverer looks for due webhook deliveries (S0_WEBHOOK_POLL_MS). */
  webhookPollMsDefault: 500,
  /** Sandboxes whose deliveries run at once; each sandbox's own are one at a time, in order. */
  webhookConcurrency: 16,
  /** Events read ahead per sandbox per round. */
  webhookBatchEvents: 64,
  /** One POST must answer within this. */
  webhookTimeoutMs: 10_000,
  /** Retries of one event: backoff from the first, doubling up to the cap (S0_WEBHOOK_*). */
  webhookBackoffFirstMs: 1_000,
  webhookBackoffMaxMs: 300_000,
  /** An event is given up on (dropped, counted, logged) after this many attempts or this age. */
  webhookAttemptsMaxDefault: 12,
  webhookAgeMsMaxDefault: 86_400_000,
  /** url, secret and watch_dir lengths in a claim's config.webhook. */
  webhookUrlCharsMax: 2_048,
  webhookSecretCharsMax: 1_024,
  /** A gone sandbox's webhook row stays this long after its last event (late events still go). */
  webhookGoneGraceMs: 60_000,
  /** The last error kept on a webhook row. */
  webhookErrorCharsMax: 500,
  /** File changes under watch_dir queued per sandbox before they are counted and dropped. */
  webhookWatchQueueMax: 1_024,
  // --- Quotas and usage (src/accounts/quotas.ts, usage.ts; docs/ACCOUNTS.md) ---
  /** sandbox_claims counts claims (and forks) per window of this length unless the quota sets one. */
  quotaClaimsIntervalMsDefault: 3_600_000,
  /** api_requests counts authenticated requests per window of this length unless the quota sets one. */
  quotaApiRequestsIntervalMsDefault: 60_000,
  /** network_egress_bytes / network_ingress_bytes windows unless the quota sets one. */
  quotaNetworkIntervalMsDefault: 86_400_000,
  /** The shortest window a rate quota may set. */
  quotaIntervalMsMin: 1_000,
  /** The longest window a rate quota may set (31 days). */
  quotaIntervalMsMax: 31 * 86_400_000,
  /** A claim's admission slot stops counting after this long (a server that crashed mid-claim). */
  quotaClaimSlotTtlMs: 10 * 60_000,
  /** How long a server trusts a team's quota rows before reading them again (other servers' edits). */
  quotaCacheTtlMs: 5_000,
  quotaCacheTeamsMax: 10_000,
  /** API request counts are added to Postgres in one statement per team this often (not per request). */
  apiRequestFlushMs: 2_000,
  /** Usage (sandbox seconds, storage, network bytes) is billed into hourly windows this often. */
  usageSampleIntervalMs: 60_000,
  /** A sampler that last ran longer ago than this bills only this much (the server was down). */
  usageSampleGapMaxMs: 5 * 60_000,
  /** The length of a usage window. */
  usageWindowMs: 3_600_000,
  usageWindowsListDefault: 100,
  usageWindowsListMax: 1_000,
  /** Teams one admin's team may create (children), a bound on what one key can make. */
  teamsPerParentMax: 1_000,

  // ---- CLI: sandboxes and templates (src/cli/sandbox-command.ts, template-command.ts) ----
  /** One `s0 sandbox exec` command or `run` statement (the server's exec timeout ends it first). */
  cliExecTimeoutMs: 24 * 3_600_000,
  /** `s0 sandbox exec` asks whether the command has ended this often (its output streams meanwhile). */
  cliExecPollMs: 200,
  /** `s0 sandbox restore` waits this long for the server to put the root back. */
  cliRestoreTimeoutMs: 3_600_000,
  /** `s0 template create|from-sandbox --wait`: the default bound, and how often it asks. */
  cliTemplateWaitDefaultMs: 30 * 60_000,
  cliTemplatePollMs: 500,
  // --- Execution sessions (src/sandboxes/sessions), issue 16 §5 ---
  /** Sessions one sandbox may hold (each is a supervised process and a journal). */
  sessionsPerSandboxMax: 64,
  /** A session's journal is capped at this many bytes of event payload unless its spec says less. */
  sessionRetentionBytesDefault: 4 * MiB,
  sessionRetentionBytesMin: 4 * KiB,
  sessionRetentionBytesMax: 64 * MiB,
  /** Events older than this go unless the spec says less (seconds). */
  sessionRetentionAgeSecDefault: 7 * 86_400,
  sessionRetentionAgeSecMax: 30 * 86_400,
  sessionEventPageDefault: 500,
  sessionEventPageMax: 5_000,
  /** Output is journaled in chunks of at most this many bytes (a larger read is split). */
  sessionOutputChunkBytes: 32 * KiB,
  /** Output waits this long to be inserted with the next chunks (one INSERT per batch, not per read). */
  sessionFlushMs: 50,
  /** A batch is flushed early once it holds this many bytes. */
  sessionFlushBytes: 256 * KiB,
  /** One input's decoded bytes. */
  sessionInputBytesMax: 1 * MiB,
  /** Input ids remembered per session (for idempotency); the oldest go beyond this. */
  sessionInputIdsMax: 10_000,
  sessionCommandArgsMax: 4096,
  sessionCommandArgBytesMax: 128 * KiB,
  sessionNameCharsMax: 256,
  /** Restart policy bounds. */
  sessionMaxRestartsMax: 10_000,
  sessionRestartWindowSecMax: 86_400,
  sessionBackoffMsMax: 3_600_000,
  sessionBackoffInitialMsDefault: 500,
  sessionBackoffMaxMsDefault: 30_000,
  sessionRestartWindowSecDefault: 300,
  sessionMaxRestartsDefault: 10,
  sessionStopGraceSecDefault: 10,
  sessionStopGraceSecMax: 3_600,
  /** idle_timeout_seconds / max_lifetime_seconds bound (0: none). */
  sessionTimeoutSecMax: 30 * 86_400,
  sessionReadinessMsMax: 3_600_000,
  sessionReadinessOutputCharsMax: 4_096,
  /** SSE comment lines keep idle proxies from closing a quiet event stream. */
  sessionStreamHeartbeatMs: 15_000,
  /** Scale-out (docs/DEPLOY.md): how often an agent heartbeats its `nodes` row. */
  nodeHeartbeatMs: 2_000,
  /** How often each API replica and agent looks for dead nodes. */
  nodeReapIntervalMs: 2_000,
  /** Default of S0_NODE_DEAD_AFTER_S: a node with no heartbeat for this long is dead. */
  nodeDeadAfterSDefault: 15,
  /** An API replica's copy of an agent's OpenAPI paths (what it forwards): kept this long. */
  nodeOpenApiCacheMs: 60_000,
  /** How long a replica waits for an agent's OpenAPI document. */
  nodeOpenApiTimeoutMs: 5_000,
  /** A placement lease's life: a claim that never reached its node stops counting after this. */
  placementLeaseMs: 120_000,
  /** An API replica's idle kept-alive socket to an agent is closed after this (below the agent's keepAliveTimeout). */
  nodeProxyIdleSocketMs: 30_000,
  /** How long a listener keeps an idle kept-alive connection (fastify's own default). */
  httpKeepAliveTimeoutMs: 72_000,
  /** Bytes of a claim body an API replica reads to place it (the body is then forwarded as is). */
  placementBodyBytesMax: 1024 * 1024,

  // --- containerd driver (src/runtime/containerd/) ---
  /** Our containerd answers Version within this time after spawn (measured ~0.1 s idle). */
  containerdStartTimeoutMs: 20_000,
  containerdStartPollMs: 25,
  /** SIGTERM to SIGKILL of our containerd at close (its containers keep running under their shims). */
  containerdStopGraceMs: 5_000,

  // --- SSH in a cluster (src/sandboxes/ssh/relay.ts) ---
  /** An API replica's SSH connection to the owning agent must be up within this. */
  sshRelayReadyTimeoutMs: 20_000,
  /** The replica's keepalive towards the agent (a dead agent ends the user's connection). */
  sshRelayKeepaliveMs: 15_000,
  /** Default of S0_SSH_PUBLIC_PORT on an agent: the replicas' own default S0_SSH_PORT. */
  sshPublicPortDefault: 2222,
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
check(
  limits.restoreRangeMaxBytes >= limits.packSizeTargetBytes + limits.chunkSizeMaxBytes,
  'a planned read must be able to take a whole pack in one GET',
)
check(
  limits.hashPoolJobBytesMin > 0 && limits.hashPoolWorkersMax >= 1,
  'the hash pool needs a worker and a threshold',
)
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
