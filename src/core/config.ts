// Configuration: defaults, then an optional JSON config file, then environment variables (which
// win). Every key is documented in the README; unknown or malformed values fail at start.
import { readFileSync, existsSync } from 'node:fs'
import path from 'node:path'
import { S0Error } from './errors.js'
import { limits } from './limits.js'
import { isLogLevel, type LogLevel } from './log.js'

export interface S3Config {
  endpoint: string | undefined
  region: string
  bucket: string
  prefix: string
  forcePathStyle: boolean
  accessKeyId: string | undefined
  secretAccessKey: string | undefined
}

export interface Config {
  stateDir: string
  host: string
  port: number
  databaseUrl: string | undefined
  /** Also listen on 127.0.0.1:embeddedPgPort; unset: the embedded Postgres has a Unix socket only. */
  embeddedPgPort: number | undefined
  objectStore: 'local' | 's3'
  s3: S3Config
  memoryCacheBytes: number
  diskCacheBytes: number
  gcGracePeriodMs: number
  logLevel: LogLevel
  /** OCI runtimes to try for sandboxes, in order (the first that works is the default). */
  runtimes: ('runc' | 'crun' | 'runsc')[]
  /**
   * Those of `runtimes` named `containerd:<runtime>` in S0_RUNTIMES: driven through our own
   * containerd (src/runtime/containerd/) instead of their CLI. Empty by default.
   */
  containerdRuntimes: ('runc' | 'runsc')[]
  /** A sandbox's writable root when neither its template nor its claim says (ephemeralStorage). */
  sandboxDiskBytes: number
  /** Template root file systems cache. */
  templateDir: string
  debianMirror: string
  /** Where the server mounts volumes asked for through the API. */
  mountDir: string
  /** When a write through a FUSE mount becomes durable: at close (default) or only at fsync. */
  fuseDurability: 'close' | 'fsync'
  /** FUSE transport: our libfuse 3 low-level addon (default) or fuse-native (libfuse 2). */
  fuseTransport: 'lowlevel' | 'fuse-native'
  /** How long a call to a paused sandbox waits for its auto-resume before a 503. */
  autoResumeWaitMs: number
  /** The sandboxes' address pool (src/runtime/network.ts checks it against the host's routes). */
  sandboxCidr: string
  /** Sandboxes get a network through the egress proxy (true) or loopback only (false). */
  sandboxNetwork: boolean
  /** The egress resolver's upstream DNS server (`address[:port]`); unset: the host's. */
  egressResolver: string | undefined
  /** A hosts-format file the egress resolver consults before DNS. */
  egressHostsFile: string | undefined
  /** PEM bundle the proxy trusts when it re-originates TLS; unset: Node's default store. */
  egressCaFile: string | undefined
  /** Public URLs of app services: `<scheme>://<service>--<sandbox>.<domain>`; unset: `localhost:<port>`. */
  exposureDomain: string | undefined
  exposureScheme: 'http' | 'https'
  /** Registries pulled over plain http / unverified TLS besides loopback ones (host or host:port). */
  registryInsecureHosts: string[]
  /** The SSH endpoint into sandboxes (src/sandboxes/ssh): on, where, what clients are told. */
  sshEnabled: boolean
  sshHost: string
  /** 0: an ephemeral port. */
  sshPort: number
  sshPublicHost: string | undefined
  /** Accept an API key as SSH password (off: public keys only). */
  sshTokenAuth: boolean
  /** Sandbox events and logs older than this are deleted (0: kept by size only). */
  observabilityRetentionDays: number
  /** A team's stored events at most; beyond it its oldest go. */
  eventRetentionBytesPerTeam: number
  /** A sandbox's stored output logs at most; beyond it its oldest go. */
  logBytesPerSandbox: number
  /** The region id in events, logs and `/regions`. */
  regionId: string
  /** How often every running sandbox's cgroup, veth and writable root are sampled. */
  metricsIntervalMs: number
  /** How long metric samples are kept. */
  metricsRetentionMs: number
  /** Webhook retries: attempts per event and its age before it is given up on. */
  webhookAttemptsMax: number
  webhookAgeMsMax: number
  /** Scale-out (docs/DEPLOY.md): the API replicas' secret towards agents. */
  clusterToken: string | undefined
  /** `s0 agent`: this node's name, where replicas reach it, its capacity and labels. */
  nodeName: string | undefined
  advertiseUrl: string | undefined
  nodeMaxSandboxes: number
  nodeCpuMillis: number
  nodeMemoryBytes: number
  nodeLabels: Record<string, string>
  /** A node with no heartbeat for this long is dead. */
  nodeDeadAfterS: number
  /** `Sandbox.ssh.port` clients are told (a load balancer's; an agent's: the replicas'). */
  sshPublicPort: number | undefined
}

/** Private and rarely used (Docker takes 172.17+/16 and 192.168/16, Kubernetes 10.42-10.244). */
export const DEFAULT_SANDBOX_CIDR = '10.231.0.0/16'

/** Environment variable → config file key → parser. The README table is generated from this. */
export const CONFIG_KEYS = [
  {
    env: 'S0_STATE_DIR',
    key: 'stateDir',
    doc: 'State directory: embedded database, local object store, caches, token.',
    default: './.s0',
  },
  { env: 'S0_HOST', key: 'host', doc: 'Address the API listens on.', default: '127.0.0.1' },
  { env: 'S0_PORT', key: 'port', doc: 'Port the API listens on.', default: '8080' },
  {
    env: 'DATABASE_URL',
    key: 'databaseUrl',
    doc: 'External Postgres (postgres://...). Unset: embedded Postgres under the state directory.',
    default: '',
  },
  {
    env: 'S0_PG_PORT',
    key: 'embeddedPgPort',
    doc: 'Embedded Postgres: also listen on 127.0.0.1:PORT (for psql). Unset: a Unix socket only, so servers with different state directories run side by side (see Troubleshooting).',
    default: '',
  },
  {
    env: 'S0_OBJECT_STORE',
    key: 'objectStore',
    doc: '`local` (a directory under the state directory) or `s3`.',
    default: 'local',
  },
  {
    env: 'S0_S3_ENDPOINT',
    key: 's3.endpoint',
    doc: 'S3 endpoint URL (MinIO, R2, Ceph RGW, s3rver). Unset: AWS.',
    default: '',
  },
  { env: 'S0_S3_REGION', key: 's3.region', doc: 'S3 region.', default: 'us-east-1' },
  { env: 'S0_S3_BUCKET', key: 's3.bucket', doc: 'S3 bucket (must exist).', default: 's0' },
  { env: 'S0_S3_PREFIX', key: 's3.prefix', doc: 'Key prefix inside the bucket.', default: '' },
  {
    env: 'S0_S3_FORCE_PATH_STYLE',
    key: 's3.forcePathStyle',
    doc: 'Path-style addressing (needed by MinIO, Ceph, s3rver).',
    default: 'true',
  },
  {
    env: 'S0_S3_ACCESS_KEY_ID',
    key: 's3.accessKeyId',
    doc: 'S3 access key. Unset: the AWS SDK default chain.',
    default: '',
  },
  { env: 'S0_S3_SECRET_ACCESS_KEY', key: 's3.secretAccessKey', doc: 'S3 secret key.', default: '' },
  {
    env: 'S0_MEMORY_CACHE_BYTES',
    key: 'memoryCacheBytes',
    doc: 'In-memory chunk cache size.',
    default: String(limits.memoryCacheBytesMax),
  },
  {
    env: 'S0_DISK_CACHE_BYTES',
    key: 'diskCacheBytes',
    doc: 'On-disk chunk cache size (0 disables it).',
    default: String(limits.diskCacheBytesMax),
  },
  {
    env: 'S0_GC_GRACE_MS',
    key: 'gcGracePeriodMs',
    doc: 'GC grace period: unreferenced chunks younger than this are kept.',
    default: String(limits.gcGracePeriodMs),
  },
  {
    env: 'S0_LOG_LEVEL',
    key: 'logLevel',
    doc: '`debug`, `info`, `warn`, `error` or `silent`.',
    default: 'info',
  },
  {
    env: 'S0_RUNTIMES',
    key: 'runtimes',
    doc: "OCI runtimes for sandboxes, in order of preference (comma list of `runc`, `crun`, `runsc`); the first that works is the default, a template may name another. `containerd:runc` or `containerd:runsc` drives that runtime through a containerd daemon of the server's own instead of its CLI.",
    default: 'runc,crun,runsc',
  },
  {
    env: 'S0_SANDBOX_DISK_BYTES',
    key: 'sandboxDiskBytes',
    doc: "Bytes a sandbox may write to its root file system when neither its template nor its claim sets `resources.ephemeralStorage` (an ext4 image per sandbox on the state directory's disk; writes past it get ENOSPC).",
    default: String(limits.sandboxDiskBytesDefault),
  },
  {
    env: 'S0_TEMPLATE_DIR',
    key: 'templateDir',
    doc: 'Cache of template root file systems (built once). Unset: `templates` under the state directory.',
    default: '',
  },
  {
    env: 'S0_DEBIAN_MIRROR',
    key: 'debianMirror',
    doc: 'Debian mirror mmdebstrap builds the `default` template from.',
    default: 'http://deb.debian.org/debian',
  },
  {
    env: 'S0_MOUNT_DIR',
    key: 'mountDir',
    doc: 'Directory the server mounts volumes under (API mounts). Unset: `mounts` under the state directory.',
    default: '',
  },
  {
    env: 'S0_FUSE_DURABILITY',
    key: 'fuseDurability',
    doc: 'When a write through a FUSE mount is durable: `close` (closing a written file makes it durable) or `fsync` (only fsync does; faster for scratch data).',
    default: 'close',
  },
  {
    env: 'S0_FUSE_TRANSPORT',
    key: 'fuseTransport',
    doc: 'How FUSE mounts talk to the kernel: `lowlevel` (our addon over libfuse 3; caller ownership, nanosecond times, exact kernel caching) or `fuse-native` (libfuse 2, for hosts without libfuse 3). See docs/ARCHITECTURE.md, "FUSE transports".',
    default: 'lowlevel',
  },
  {
    env: 'S0_AUTO_RESUME_WAIT_MS',
    key: 'autoResumeWaitMs',
    doc: 'A runtime call (context, files) to a paused sandbox with `auto_resume` resumes it and waits this long for it, then answers 503 `unavailable` ("waking up") with Retry-After. 0: answer 503 at once.',
    default: String(limits.autoResumeWaitMsDefault),
  },
  {
    env: 'S0_SANDBOX_CIDR',
    key: 'sandboxCidr',
    doc: "Sandboxes' address pool: a private IPv4 range (/12 to /24), one /30 per running sandbox (its address and its gateway on the host). It must not overlap any route of the host: the server refuses to start if it does.",
    default: DEFAULT_SANDBOX_CIDR,
  },
  {
    env: 'S0_SANDBOX_NETWORK',
    key: 'sandboxNetwork',
    doc: "`true`: each sandbox gets a veth, an address from `S0_SANDBOX_CIDR` and a network that goes only through this server's egress proxy and resolver, by its network policy (needs nftables). `false`: sandboxes have loopback only, and network policies are stored but have nothing to apply to.",
    default: 'true',
  },
  {
    env: 'S0_EGRESS_RESOLVER',
    key: 'egressResolver',
    doc: "Upstream DNS server of the egress resolver (`address[:port]`, port 53 by default). Unset: the first `nameserver` of the host's /etc/resolv.conf.",
    default: '',
  },
  {
    env: 'S0_EGRESS_HOSTS',
    key: 'egressHostsFile',
    doc: 'A hosts-format file (`address name...` per line) the egress resolver and proxy consult before DNS: for air-gapped sites and tests. Re-read when it changes.',
    default: '',
  },
  {
    env: 'S0_EGRESS_CA_FILE',
    key: 'egressCaFile',
    doc: "PEM bundle the egress proxy trusts when it re-originates TLS to a destination (an intercepting corporate proxy's CA, a private registry). Unset: Node's default trust store.",
    default: '',
  },
  {
    env: 'S0_EXPOSURE_DOMAIN',
    key: 'exposureDomain',
    doc: "Domain of app services' public URLs, `<service>--<sandbox>.<domain>` (e.g. `sandboxes.example.com` behind a wildcard DNS record `*.sandboxes.example.com` and a TLS terminator that forwards to this server, keeping `Host`). Unset: `localhost:<S0_PORT>`, which browsers and curl resolve to loopback with no DNS (docs/SERVICES.md).",
    default: '',
  },
  {
    env: 'S0_EXPOSURE_SCHEME',
    key: 'exposureScheme',
    doc: '`http` or `https`: the scheme of public URLs (`https` when a TLS terminator fronts the server).',
    default: 'http',
  },
  {
    env: 'S0_SSH_ENABLED',
    key: 'sshEnabled',
    doc: '`true`: the server also runs an SSH endpoint into sandboxes (`ssh <sandbox-id>@host -p PORT`, scp, sftp, `ssh -L`; see docs/SSH.md). `false`: none.',
    default: 'true',
  },
  { env: 'S0_SSH_HOST', key: 'sshHost', doc: 'Address the SSH endpoint listens on.', default: '127.0.0.1' },
  {
    env: 'S0_SSH_PORT',
    key: 'sshPort',
    doc: 'Port of the SSH endpoint (0: any free port, reported in `Sandbox.ssh`).',
    default: '2222',
  },
  {
    env: 'S0_SSH_PUBLIC_HOST',
    key: 'sshPublicHost',
    doc: '`Sandbox.ssh.host` clients are told (a DNS name in front of the server). Unset: the address the endpoint listens on.',
    default: '',
  },
  {
    env: 'S0_SSH_TOKEN_AUTH',
    key: 'sshTokenAuth',
    doc: "`true`: the SSH endpoint also accepts an API key of the sandbox's team as password (sent over SSH). `false`: registered public keys only (`s0 ssh-key add`).",
    default: 'false',
  },
  {
    env: 'S0_SECRET_KEY',
    key: '',
    doc: 'Environment only: the 32-byte key that seals credential sources in Postgres (AES-256-GCM), as 64 hex digits or base64. Unset: `secret.key` under the state directory (created with mode 0600 on first start; refused if its mode is wider). Losing it loses every stored credential.',
    default: '',
  },
  {
    env: 'S0_FUSE_TRACE',
    key: '',
    doc: 'Debugging (environment only): `1` prints every FUSE operation that fails unexpectedly (not a catalogued error) to stderr with its stack, whatever `S0_LOG_LEVEL` says.',
    default: '',
  },
  {
    env: 'S0_FUSE_DEBUG',
    key: '',
    doc: "Debugging (environment only): `1` mounts with libfuse's `debug` option, which prints every FUSE request and reply to stderr (very verbose).",
    default: '',
  },
  {
    env: 'S0_CONFIG',
    key: '',
    doc: 'Path of an optional JSON config file with the keys above (default `$S0_STATE_DIR/config.json`).',
    default: '',
  },
  {
    env: 'S0_REGISTRY_INSECURE_HOSTS',
    key: 'registryInsecureHosts',
    doc: 'Comma-separated registries (`host` or `host:port`) that template image pulls reach over plain http or without verifying TLS, besides loopback ones (`localhost`, `127.x`), which always may. For a private registry on a trusted network only.',
    default: '',
  },
  {
    env: 'S0_OBSERVABILITY_RETENTION_DAYS',
    key: 'observabilityRetentionDays',
    doc: 'Sandbox events and output logs older than this many days are deleted by a background job (those of deleted sandboxes too). 0: age is no limit (sizes still are).',
    default: String(limits.observabilityRetentionDaysDefault),
  },
  {
    env: 'S0_EVENT_RETENTION_BYTES_PER_TEAM',
    key: 'eventRetentionBytesPerTeam',
    doc: "A team's stored sandbox events at most (bytes as Postgres stores them); beyond it the oldest are deleted.",
    default: String(limits.eventRetentionBytesPerTeamDefault),
  },
  {
    env: 'S0_LOG_BYTES_PER_SANDBOX',
    key: 'logBytesPerSandbox',
    doc: "A sandbox's stored output logs (stdout, stderr, pty of every context) at most; beyond it the oldest are deleted and a `logs.truncated` event says how many.",
    default: String(limits.logBytesPerSandboxDefault),
  },
  {
    env: 'S0_REGION_ID',
    key: 'regionId',
    doc: 'The region id this server reports in events, logs and `/regions`.',
    default: 'local',
  },
  {
    env: 'S0_METRICS_INTERVAL_MS',
    key: 'metricsIntervalMs',
    doc: "How often each running sandbox's CPU, memory, processes, network counters and writable-root usage are sampled into Postgres (`GET /api/v1/sandboxes/{id}/metrics`; docs/METRICS.md).",
    default: String(limits.metricsIntervalMsDefault),
  },
  {
    env: 'S0_METRICS_RETENTION_MS',
    key: 'metricsRetentionMs',
    doc: 'How long sandbox metric samples are kept (a background job deletes older ones).',
    default: String(limits.metricsRetentionMsDefault),
  },
  {
    env: 'S0_WEBHOOK_ATTEMPTS_MAX',
    key: 'webhookAttemptsMax',
    doc: "A webhook event is retried (exponential backoff, 1 s doubling to 5 min) until it is acknowledged with a 2xx or this many attempts failed; then it is dropped, logged and counted, and the sandbox's next event goes (docs/WEBHOOKS.md).",
    default: String(limits.webhookAttemptsMaxDefault),
  },
  {
    env: 'S0_WEBHOOK_AGE_MS_MAX',
    key: 'webhookAgeMsMax',
    doc: 'A webhook event older than this is dropped instead of retried again, whatever its attempts.',
    default: String(limits.webhookAgeMsMaxDefault),
  },
  {
    env: 'S0_CLUSTER_TOKEN',
    key: 'clusterToken',
    doc: "`s0 api` and `s0 agent` (docs/DEPLOY.md): the secret API replicas present to agents (at least 32 characters, e.g. `openssl rand -hex 32`). Agents serve nothing without it; users' API keys never reach them.",
    default: '',
  },
  {
    env: 'S0_NODE_NAME',
    key: 'nodeName',
    doc: "`s0 agent`: this node's name in the cluster (unique). Unset: the host name.",
    default: '',
  },
  {
    env: 'S0_ADVERTISE_URL',
    key: 'advertiseUrl',
    doc: '`s0 agent`: the URL API replicas reach this agent at. Unset: `http://<S0_HOST>:<S0_PORT>`.',
    default: '',
  },
  {
    env: 'S0_NODE_MAX_SANDBOXES',
    key: 'nodeMaxSandboxes',
    doc: '`s0 agent`: sandboxes (warm slots included) placement puts on this node at most; 0: unbounded.',
    default: '0',
  },
  {
    env: 'S0_NODE_CPU_MILLIS',
    key: 'nodeCpuMillis',
    doc: '`s0 agent`: CPU placement may lease to sandboxes on this node, in millicores (the sum of their `cpu_millis`); 0: unbounded.',
    default: '0',
  },
  {
    env: 'S0_NODE_MEMORY_BYTES',
    key: 'nodeMemoryBytes',
    doc: '`s0 agent`: memory placement may lease to sandboxes on this node, in bytes (the sum of their memory limits); 0: unbounded.',
    default: '0',
  },
  {
    env: 'S0_NODE_LABELS',
    key: 'nodeLabels',
    doc: "`s0 agent`: `key=value` labels, comma separated (a template's `pod.nodeSelector` places its sandboxes on nodes that carry them).",
    default: '',
  },
  {
    env: 'S0_NODE_DEAD_AFTER_S',
    key: 'nodeDeadAfterS',
    doc: 'A node with no heartbeat for this many seconds is dead: its paused sandboxes resume elsewhere, its running ones are paused on their last checkpoint (docs/DEPLOY.md).',
    default: String(limits.nodeDeadAfterSDefault),
  },
  {
    env: 'S0_SSH_PUBLIC_PORT',
    key: 'sshPublicPort',
    doc: `\`Sandbox.ssh.port\` clients are told (a load balancer in front). Unset: the port the endpoint listens on; on \`s0 agent\`, whose own SSH port only API replicas reach, ${limits.sshPublicPortDefault} (the replicas' default), reported only when S0_SSH_PUBLIC_HOST is set (docs/DEPLOY.md, "SSH").`,
    default: '',
  },
] as const

type Raw = Record<string, string | undefined>

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const stateDirRaw = env['S0_STATE_DIR'] ?? './.s0'
  const stateDir = path.resolve(stateDirRaw)
  const file = env['S0_CONFIG'] ?? path.join(stateDir, 'config.json')
  const fromFile: Raw = existsSync(file) ? flattenFile(file) : {}
  if (env['S0_CONFIG'] && !existsSync(file))
    throw new S0Error('config_invalid', `config file not found: ${file}`)

  const raw: Raw = {}
  for (const k of CONFIG_KEYS) {
    if (k.key === '') continue
    const envValue = env[k.env]
    raw[k.key] =
      envValue !== undefined && envValue !== ''
        ? envValue
        : (fromFile[k.key] ?? (k.default === '' ? undefined : k.default))
  }
  raw['stateDir'] = stateDir

  const objectStore = raw['objectStore']
  if (objectStore !== 'local' && objectStore !== 's3') {
    throw new S0Error(
      'config_invalid',
      `S0_OBJECT_STORE must be "local" or "s3", got ${JSON.stringify(objectStore)}`,
    )
  }
  const logLevel = raw['logLevel'] ?? 'info'
  if (!isLogLevel(logLevel))
    throw new S0Error('config_invalid', `S0_LOG_LEVEL: unknown level ${JSON.stringify(logLevel)}`)

  return {
    stateDir,
    host: raw['host'] ?? '127.0.0.1',
    port: int(raw, 'port', 0, 65535),
    databaseUrl: raw['databaseUrl'],
    embeddedPgPort: raw['embeddedPgPort'] === undefined ? undefined : int(raw, 'embeddedPgPort', 1, 65535),
    objectStore,
    s3: {
      endpoint: raw['s3.endpoint'],
      region: raw['s3.region'] ?? 'us-east-1',
      bucket: raw['s3.bucket'] ?? 's0',
      prefix: raw['s3.prefix'] ?? '',
      forcePathStyle: bool(raw, 's3.forcePathStyle'),
      accessKeyId: raw['s3.accessKeyId'],
      secretAccessKey: raw['s3.secretAccessKey'],
    },
    memoryCacheBytes: int(raw, 'memoryCacheBytes', 1024 * 1024, Number.MAX_SAFE_INTEGER),
    diskCacheBytes: int(raw, 'diskCacheBytes', 0, Number.MAX_SAFE_INTEGER),
    gcGracePeriodMs: int(raw, 'gcGracePeriodMs', 0, Number.MAX_SAFE_INTEGER),
    logLevel,
    runtimes: runtimeList(raw['runtimes'] ?? 'runc,crun,runsc'),
    containerdRuntimes: containerdRuntimeList(raw['runtimes'] ?? 'runc,crun,runsc'),
    sandboxDiskBytes: int(raw, 'sandboxDiskBytes', limits.sandboxDiskBytesMin, limits.sandboxDiskBytesMax),
    templateDir: path.resolve(stateDir, raw['templateDir'] ?? 'templates'),
    debianMirror: raw['debianMirror'] ?? 'http://deb.debian.org/debian',
    mountDir: path.resolve(stateDir, raw['mountDir'] ?? 'mounts'),
    fuseDurability: durability(raw['fuseDurability'] ?? 'close'),
    fuseTransport: fuseTransport(raw['fuseTransport'] ?? 'lowlevel'),
    autoResumeWaitMs: int(raw, 'autoResumeWaitMs', 0, limits.autoResumeWaitMsMax),
    sandboxCidr: cidr(raw['sandboxCidr'] ?? DEFAULT_SANDBOX_CIDR),
    sandboxNetwork: raw['sandboxNetwork'] === undefined ? true : bool(raw, 'sandboxNetwork'),
    egressResolver: raw['egressResolver'] || undefined,
    egressHostsFile: raw['egressHostsFile'] ? path.resolve(raw['egressHostsFile']) : undefined,
    egressCaFile: raw['egressCaFile'] ? path.resolve(raw['egressCaFile']) : undefined,
    exposureDomain: exposureDomain(raw['exposureDomain']),
    exposureScheme: exposureScheme(raw['exposureScheme'] ?? 'http'),
    registryInsecureHosts: hostList(raw['registryInsecureHosts'] ?? ''),
    sshEnabled: raw['sshEnabled'] === undefined ? true : bool(raw, 'sshEnabled'),
    sshHost: raw['sshHost'] ?? '127.0.0.1',
    sshPort: int(raw, 'sshPort', 0, 65535),
    sshPublicHost: raw['sshPublicHost'] || undefined,
    sshTokenAuth: bool(raw, 'sshTokenAuth'),
    observabilityRetentionDays: int(raw, 'observabilityRetentionDays', 0, 36_500),
    eventRetentionBytesPerTeam: int(raw, 'eventRetentionBytesPerTeam', 1024 * 1024, Number.MAX_SAFE_INTEGER),
    logBytesPerSandbox: int(raw, 'logBytesPerSandbox', 64 * 1024, Number.MAX_SAFE_INTEGER),
    regionId: regionId(raw['regionId'] ?? 'local'),
    metricsIntervalMs: int(
      raw,
      'metricsIntervalMs',
      limits.metricsIntervalMsMin,
      limits.metricsIntervalMsMax,
    ),
    metricsRetentionMs: int(raw, 'metricsRetentionMs', limits.metricsRetentionMsMin, Number.MAX_SAFE_INTEGER),
    webhookAttemptsMax: int(raw, 'webhookAttemptsMax', 1, 1_000),
    webhookAgeMsMax: int(raw, 'webhookAgeMsMax', 1_000, Number.MAX_SAFE_INTEGER),
    clusterToken: raw['clusterToken'] || undefined,
    nodeName: raw['nodeName'] || undefined,
    advertiseUrl: advertiseUrl(raw['advertiseUrl']),
    nodeMaxSandboxes: int(raw, 'nodeMaxSandboxes', 0, 1_000_000),
    nodeCpuMillis: int(raw, 'nodeCpuMillis', 0, Number.MAX_SAFE_INTEGER),
    nodeMemoryBytes: int(raw, 'nodeMemoryBytes', 0, Number.MAX_SAFE_INTEGER),
    nodeLabels: labels(raw['nodeLabels'] ?? ''),
    nodeDeadAfterS: int(raw, 'nodeDeadAfterS', 1, 86_400),
    sshPublicPort: raw['sshPublicPort'] ? int(raw, 'sshPublicPort', 1, 65535) : undefined,
  }
}

function advertiseUrl(v: string | undefined): string | undefined {
  if (!v) return undefined
  let u: URL | undefined
  try {
    u = new URL(v)
  } catch {
    u = undefined
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:') || u.pathname !== '/' || u.search !== '')
    throw new S0Error(
      'config_invalid',
      `S0_ADVERTISE_URL must be an http(s)://host:port URL, got ${JSON.stringify(v)}`,
    )
  return v.replace(/\/$/, '')
}

function labels(v: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')) {
    const m = /^([A-Za-z0-9._/-]{1,63})=([A-Za-z0-9._-]{0,63})$/.exec(part)
    if (!m) throw new S0Error('config_invalid', `S0_NODE_LABELS: ${JSON.stringify(part)} is not key=value`)
    out[m[1] as string] = m[2] as string
  }
  return out
}

function regionId(v: string): string {
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(v))
    throw new S0Error(
      'config_invalid',
      `S0_REGION_ID must be lower-case letters, digits and '-' (got ${JSON.stringify(v)})`,
    )
  return v
}

/** A host name (optionally with a port), lower case, no scheme or path. */
function exposureDomain(v: string | undefined): string | undefined {
  if (v === undefined || v === '') return undefined
  const d = v.toLowerCase().replace(/\.$/, '')
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/.test(d))
    throw new S0Error(
      'config_invalid',
      `S0_EXPOSURE_DOMAIN must be a domain like sandboxes.example.com (optionally :port), got ${JSON.stringify(v)}`,
    )
  return d
}

function exposureScheme(v: string): 'http' | 'https' {
  if (v !== 'http' && v !== 'https')
    throw new S0Error(
      'config_invalid',
      `S0_EXPOSURE_SCHEME must be "http" or "https", got ${JSON.stringify(v)}`,
    )
  return v
}

function durability(v: string): 'close' | 'fsync' {
  if (v !== 'close' && v !== 'fsync')
    throw new S0Error(
      'config_invalid',
      `S0_FUSE_DURABILITY must be "close" or "fsync", got ${JSON.stringify(v)}`,
    )
  return v
}

function fuseTransport(v: string): 'lowlevel' | 'fuse-native' {
  if (v !== 'lowlevel' && v !== 'fuse-native')
    throw new S0Error(
      'config_invalid',
      `S0_FUSE_TRANSPORT must be "lowlevel" or "fuse-native", got ${JSON.stringify(v)}`,
    )
  return v
}

/** The form only; the range itself is checked where it is used (src/runtime/address-pool.ts). */
function cidr(v: string): string {
  if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(v))
    throw new S0Error(
      'config_invalid',
      `S0_SANDBOX_CIDR must be an IPv4 CIDR (a.b.c.d/n), got ${JSON.stringify(v)}`,
    )
  return v
}

function flattenFile(file: string): Raw {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new S0Error('config_invalid', `config file ${file} is not valid JSON`, { cause: err })
  }
  if (typeof parsed !== 'object' || parsed === null)
    throw new S0Error('config_invalid', `config file ${file} must hold an object`)
  const out: Raw = {}
  const known = new Set<string>(CONFIG_KEYS.map((k) => k.key))
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const key = prefix + k
      if (v !== null && typeof v === 'object' && !Array.isArray(v))
        walk(v as Record<string, unknown>, key + '.')
      else if (!known.has(key))
        throw new S0Error('config_invalid', `config file ${file}: unknown key ${JSON.stringify(key)}`)
      else out[key] = String(v)
    }
  }
  walk(parsed as Record<string, unknown>, '')
  return out
}

function runtimeEntries(value: string): string[] {
  return value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '')
}

const CONTAINERD_PREFIX = 'containerd:'

function runtimeList(value: string): Config['runtimes'] {
  const entries = runtimeEntries(value)
  const names = entries.map((e) => (e.startsWith(CONTAINERD_PREFIX) ? e.slice(CONTAINERD_PREFIX.length) : e))
  const known = ['runc', 'crun', 'runsc']
  const bad = names.find((n) => !known.includes(n))
  const viaContainerd = ['runc', 'runsc']
  const badVia = entries.find(
    (e) => e.startsWith(CONTAINERD_PREFIX) && !viaContainerd.includes(e.slice(CONTAINERD_PREFIX.length)),
  )
  if (names.length === 0 || bad !== undefined || badVia !== undefined || new Set(names).size !== names.length)
    throw new S0Error(
      'config_invalid',
      `S0_RUNTIMES must list runc, crun or runsc (each once; containerd:runc, containerd:runsc through containerd), got ${JSON.stringify(value)}`,
    )
  return names as Config['runtimes']
}

function containerdRuntimeList(value: string): Config['containerdRuntimes'] {
  return runtimeEntries(value)
    .filter((e) => e.startsWith(CONTAINERD_PREFIX))
    .map((e) => e.slice(CONTAINERD_PREFIX.length)) as Config['containerdRuntimes']
}

function int(raw: Raw, key: string, min: number, max: number): number {
  const value = raw[key]
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new S0Error(
      'config_invalid',
      `${key} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`,
    )
  }
  return n
}

function bool(raw: Raw, key: string): boolean {
  const value = (raw[key] ?? '').toLowerCase()
  if (['1', 'true', 'yes'].includes(value)) return true
  if (['0', 'false', 'no', ''].includes(value)) return false
  throw new S0Error('config_invalid', `${key} must be true or false, got ${JSON.stringify(raw[key])}`)
}

/** S0_REGISTRY_INSECURE_HOSTS: `host[:port]` entries, comma separated. */
function hostList(v: string): string[] {
  const hosts = v
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== '')
  for (const h of hosts)
    if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$/.test(h))
      throw new S0Error(
        'config_invalid',
        `S0_REGISTRY_INSECURE_HOSTS: ${JSON.stringify(h)} is not a host or host:port`,
      )
  return hosts
}
