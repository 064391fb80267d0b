// `s0 server`: opens Postgres and the chunk store, bootstraps the first API key, serves the API
// until SIGINT/SIGTERM, then shuts down in order (HTTP, pending packs, database).
// `s0 agent` is the same process serving one host of a cluster (docs/DEPLOY.md): it registers as
// a node, heartbeats, serves only what API replicas forward, and stops when fenced.
// `s0 api` is a stateless API replica: accounts served here, the rest forwarded to agents.
import { createHash } from 'node:crypto'
import os from 'node:os'
import path from 'node:path'
import { buildServer } from '../api/server.js'
import { EgressStack, SandboxService } from '../sandboxes/index.js'
import { TemplateStore } from '../runtime/templates.js'
import { authenticate, ensureBootstrap, findTeamSshKey } from '../accounts/index.js'
import {
  clientHost,
  loadClusterSshHostKey,
  loadSandboxSshHostKey,
  setAgentSshPort,
  SshRelay,
  SshServer,
  type SshAuthenticator,
} from '../sandboxes/ssh/index.js'
import { CredentialSourceService, loadSecretKey, type SecretKey } from '../egress/credentials/index.js'
import { openChunkStore } from '../blockstore/open.js'
import { VolumeEngine } from '../snapshots/engine.js'
import { MountManager } from '../fuse/mounts.js'
import { loadConfig, type Config } from '../core/config.js'
import { openDb, type Db } from '../core/db.js'
import { EventLog } from '../core/events.js'
import { EventSigner } from '../core/event-signing.js'
import { openDatabase } from '../core/database.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { NodeMembership, NodeReaper } from '../sandboxes/cluster/index.js'
import { createLogger, type Logger } from '../core/log.js'

const USAGE = {
  server: `usage: s0 server

Starts the API on S0_HOST:S0_PORT (default 127.0.0.1:8080). On the first start it creates the
default team and prints an admin API key (also saved to $S0_STATE_DIR/token).
Configuration comes from S0_* environment variables (see README).
`,
  agent: `usage: s0 agent

Runs this host's sandboxes for a cluster (docs/DEPLOY.md): registers as node S0_NODE_NAME,
reachable at S0_ADVERTISE_URL, and serves on S0_HOST:S0_PORT only what API replicas forward
(S0_CLUSTER_TOKEN). Needs DATABASE_URL and S0_OBJECT_STORE=s3 shared with the replicas.
`,
  api: `usage: s0 api

A stateless API replica (docs/DEPLOY.md): serves the whole API on S0_HOST:S0_PORT, places
sandboxes on the cluster's agents and forwards their calls (S0_CLUSTER_TOKEN). Run any number
behind a load balancer. Needs DATABASE_URL shared with the agents.
`,
}

type Role = 'server' | 'agent'

export function run(args: string[]): Promise<number> {
  return runRole('server', args)
}

export function runAgent(args: string[]): Promise<number> {
  return runRole('agent', args)
}

/** --help and stray arguments; undefined: go on. */
function checkArgs(role: keyof typeof USAGE, args: string[]): number | undefined {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE[role])
    return 0
  }
  if (args.length > 0) {
    process.stderr.write(`s0 ${role}: unexpected argument ${JSON.stringify(args[0])}\n\n${USAGE[role]}`)
    return 2
  }
  return undefined
}

/** What a cluster role needs that a single server does not: shared Postgres, S3, the token. */
function clusterConfig(role: 'agent' | 'api', config: Config): string {
  const missing: string[] = []
  if (!config.databaseUrl) missing.push('DATABASE_URL (a Postgres every replica and agent shares)')
  if (role === 'agent' && config.objectStore !== 's3')
    missing.push('S0_OBJECT_STORE=s3 (an object store every agent shares)')
  if (!config.clusterToken || config.clusterToken.length < 32)
    missing.push('S0_CLUSTER_TOKEN (at least 32 characters, the same on replicas and agents)')
  if (missing.length > 0) throw new S0Error('config_invalid', `s0 ${role} needs ${missing.join('; ')}`)
  return config.clusterToken as string
}

async function runRole(role: Role, args: string[]): Promise<number> {
  const early = checkArgs(role, args)
  if (early !== undefined) return early
  const config = loadConfig()
  const log = createLogger(config.logLevel)
  const clusterToken = role === 'agent' ? clusterConfig('agent', config) : undefined
  // First, so that a missing or badly protected key stops the start before anything is opened.
  const secretKey = await loadSecretKey({ stateDir: config.stateDir, envValue: process.env['S0_SECRET_KEY'] })
  const database = await openDatabase(config, log)
  const chunkStore = await openChunkStore(config, database.db, log).catch(async (err: unknown) => {
    await database.close({ stopServer: 'always' })
    throw err
  })
  // A stable owner id per host and state directory (an agent: per node name): after a crash, the
  // restarted server takes its volume leases back at once instead of waiting for them to expire.
  const nodeName = config.nodeName ?? os.hostname()
  const ownerId = role === 'agent' ? nodeId(nodeName) : serverOwnerId(config.stateDir)
  const volumes = new VolumeEngine({ db: database.db, chunks: chunkStore, log, ownerId })
  const mounts = new MountManager({
    engine: volumes,
    log,
    rootDir: config.mountDir,
    durability: config.fuseDurability,
    transport: config.fuseTransport,
  })
  // Sandboxes survive a restart of the server: the next start adopts those still running. The
  // cgroup and netns names carry the server's identity, so that two servers on one host (two
  // state directories) never reconcile away each other's sandboxes.
  const tag = serverTag(ownerId)
  // Every event is signed with the server's key (created under the state directory at first start).
  const events = new EventLog(database.db, log, ownerId, {
    signer: await EventSigner.load(config.stateDir),
    region: config.regionId,
  })
  const credentials = new CredentialSourceService({ db: database.db, key: secretKey, log })
  const closeStorage = async (): Promise<void> => {
    await events.close()
    await volumes.close()
    await chunkStore.close()
    await database.close({ stopServer: 'always' })
  }
  const stack = config.sandboxNetwork
    ? await EgressStack.open({
        db: database.db,
        key: secretKey,
        events,
        credentials: credentials.resolver,
        stateDir: path.join(config.stateDir, 'egress'),
        tag,
        cidr: config.sandboxCidr,
        resolverUpstream: config.egressResolver,
        hostsFile: config.egressHostsFile,
        upstreamCaFile: config.egressCaFile,
        log,
      }).catch(async (err: unknown) => {
        await closeStorage()
        throw err
      })
    : undefined
  const sandboxes = await SandboxService.open({
    cgroupPrefix: `s0-${tag}`,
    netnsPrefix: `s0${tag}-`,
    mounts,
    db: database.db,
    templates: new TemplateStore({ dir: config.templateDir, mirror: config.debianMirror, log }),
    stateDir: path.join(config.stateDir, 'runtime'),
    hostId: ownerId,
    preference: config.runtimes,
    containerd: config.containerdRuntimes,
    autoResumeWaitMs: config.autoResumeWaitMs,
    nodeDeadAfterS: config.nodeDeadAfterS,
    diskBytesDefault: config.sandboxDiskBytes,
    ...(stack ? { network: { network: stack.network, egress: stack.egress } } : {}),
    credentials: credentials.resolver,
    events,
    retention: {
      maxAgeMs: config.observabilityRetentionDays * 86_400_000,
      eventBytesPerTeam: config.eventRetentionBytesPerTeam,
      logBytesPerSandbox: config.logBytesPerSandbox,
    },
    images: { key: secretKey, insecureHosts: config.registryInsecureHosts },
    log,
    metrics: { intervalMs: config.metricsIntervalMs, retentionMs: config.metricsRetentionMs },
    webhooks: { attemptsMax: config.webhookAttemptsMax, ageMsMax: config.webhookAgeMsMax },
  }).catch(async (err: unknown) => {
    await stack?.close()
    await closeStorage()
    throw err
  })
  const app = buildServer(
    {
      db: database.db,
      chunkStore,
      volumes,
      sandboxes,
      mounts,
      credentials,
      config,
      log,
    },
    clusterToken !== undefined ? { cluster: { role: 'agent', token: clusterToken } } : {},
  )
  let ssh: SshServer | undefined
  let membership: NodeMembership | undefined
  let heartbeatDb: Db | undefined
  const reaper =
    role === 'agent'
      ? new NodeReaper({
          db: database.db,
          deadAfterS: config.nodeDeadAfterS,
          intervalMs: limits.nodeReapIntervalMs,
          log,
        })
      : undefined
  const fenced = new Promise<string>((resolve) => {
    if (role !== 'agent') return
    membership = new NodeMembership({
      db: (heartbeatDb = openDb(config.databaseUrl as string, {
        poolSize: 1,
        applicationName: 's0-heartbeat',
      })),
      deadAfterS: config.nodeDeadAfterS,
      spec: {
        id: ownerId,
        name: nodeName,
        advertiseUrl: config.advertiseUrl ?? `http://${config.host}:${config.port}`,
        capacity: {
          maxSandboxes: config.nodeMaxSandboxes,
          // Unset: unbounded, as S0_NODE_MAX_SANDBOXES (placement leases only what is advertised).
          cpuMillis: config.nodeCpuMillis,
          memoryBytes: config.nodeMemoryBytes,
        },
        labels: config.nodeLabels,
      },
      log,
      onFenced: resolve,
    })
  })
  const shutdown = async (): Promise<void> => {
    await membership?.leave()
    await heartbeatDb?.close()
    await reaper?.close()
    await ssh?.close()
    await app.close()
    await sandboxes.close()
    await stack?.close()
    await mounts.close()
    await closeStorage()
  }

  try {
    if (role === 'server') await ensureBootstrap(database.db, config.stateDir, log)
    const address = await app.listen({ host: config.host, port: config.port })
    if (membership) {
      // Listening first: a replica may forward to it as soon as the row is live.
      await membership.register()
      membership.start()
      reaper?.start()
      log.info('s0 agent listening', { address, node: nodeName, id: ownerId, stateDir: config.stateDir })
    } else log.info('s0 API listening', { address, stateDir: config.stateDir })
    if (config.sshEnabled) {
      // An agent's endpoint is private: only replicas relaying users log in (docs/DEPLOY.md, SSH).
      const agent =
        clusterToken !== undefined
          ? { token: clusterToken, hostKey: await loadClusterSshHostKey(database.db, secretKey) }
          : undefined
      ssh = await startSsh(config, database.db, sandboxes, log, agent)
      if (agent) await setAgentSshPort(database.db, ownerId, ssh?.address.port ?? null)
    }
  } catch (err) {
    log.error('server failed to start', { err })
    await shutdown()
    return 1
  }
  const why = await Promise.race([waitForSignal(log).then(() => undefined), fenced])
  if (why !== undefined) {
    // Fenced: other nodes own this one's sandboxes now. Kill their runtimes without touching a
    // row or a volume (never `close({stopSandboxes})`, which deletes the host's sandboxes), and
    // exit non-zero so a supervisor restarts a fresh life, which adopts nothing.
    await sandboxes.fence().catch((err: unknown) => log.error('killing fenced sandboxes failed', { err }))
    await shutdown()
    return EXIT_FENCED
  }
  await shutdown()
  log.info(`s0 ${role} stopped`)
  return 0
}

/** `s0 agent` exits with this when fenced (EX_TEMPFAIL: a supervisor should restart it). */
export const EXIT_FENCED = 75

/** A node's host id: stable per node name (sandboxes.host, volume leases, cgroup names). */
export function nodeId(name: string): string {
  return `node-${createHash('sha256').update(name).digest('hex').slice(0, 16)}`
}

/** `s0 api`: a stateless replica over the shared database (docs/DEPLOY.md). */
export async function runApi(args: string[]): Promise<number> {
  const early = checkArgs('api', args)
  if (early !== undefined) return early
  const config = loadConfig()
  const log = createLogger(config.logLevel)
  const token = clusterConfig('api', config)
  const secretKey = await loadSecretKey({ stateDir: config.stateDir, envValue: process.env['S0_SECRET_KEY'] })
  const database = await openDatabase(config, log)
  const credentials = new CredentialSourceService({ db: database.db, key: secretKey, log })
  const reaper = new NodeReaper({
    db: database.db,
    deadAfterS: config.nodeDeadAfterS,
    intervalMs: limits.nodeReapIntervalMs,
    log,
  })
  const app = buildServer(
    { db: database.db, credentials, config, log },
    { cluster: { role: 'api', token, deadAfterS: config.nodeDeadAfterS } },
  )
  let ssh: SshRelay | undefined
  const shutdown = async (): Promise<void> => {
    await ssh?.close()
    await reaper.close()
    await app.close()
    await database.close({ stopServer: 'always' })
  }
  try {
    await ensureBootstrap(database.db, config.stateDir, log)
    const address = await app.listen({ host: config.host, port: config.port })
    reaper.start()
    log.info('s0 API listening', { address, role: 'api', stateDir: config.stateDir })
    if (config.sshEnabled) ssh = await startSshRelay(config, database.db, secretKey, token, log)
  } catch (err) {
    log.error('API replica failed to start', { err })
    await shutdown()
    return 1
  }
  await waitForSignal(log)
  await shutdown()
  log.info('s0 api stopped')
  return 0
}

/**
 * The SSH endpoint into sandboxes, logins checked against the accounts domain. A port already
 * in use leaves the API up without SSH (`Sandbox.ssh` is then absent), said loudly.
 */
async function startSsh(
  config: Config,
  db: Db,
  sandboxes: SandboxService,
  log: Logger,
  agent?: { token: string; hostKey: string },
): Promise<SshServer | undefined> {
  // What `Sandbox.ssh` names: an agent, the replicas' public endpoint (its own port is private).
  const advertised = agent
    ? config.sshPublicHost
      ? { host: config.sshPublicHost, port: config.sshPublicPort ?? limits.sshPublicPortDefault }
      : null
    : config.sshPublicPort
      ? { host: config.sshPublicHost || clientHost(config.sshHost), port: config.sshPublicPort }
      : undefined
  try {
    return await SshServer.start({
      sandboxes,
      hostKey: agent?.hostKey ?? (await loadSandboxSshHostKey(config.stateDir)),
      host: config.sshHost,
      port: config.sshPort,
      ...(config.sshPublicHost ? { publicHost: config.sshPublicHost } : {}),
      ...(advertised !== undefined ? { advertised } : {}),
      ...(agent ? { clusterToken: agent.token } : {}),
      tokenAuth: config.sshTokenAuth,
      auth: sshAuth(db),
      log,
    })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    log.error('SSH endpoint not started: the port is in use (set S0_SSH_PORT, or S0_SSH_ENABLED=false)', {
      host: config.sshHost,
      port: config.sshPort,
    })
    return undefined
  }
}

/** `s0 api`: users' SSH, relayed to the agents (docs/DEPLOY.md, SSH); a port in use as startSsh. */
async function startSshRelay(
  config: Config,
  db: Db,
  key: SecretKey,
  clusterToken: string,
  log: Logger,
): Promise<SshRelay | undefined> {
  try {
    return await SshRelay.start({
      db,
      auth: sshAuth(db),
      hostKey: await loadClusterSshHostKey(db, key),
      host: config.sshHost,
      port: config.sshPort,
      tokenAuth: config.sshTokenAuth,
      clusterToken,
      deadAfterS: config.nodeDeadAfterS,
      log,
    })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    log.error('SSH relay not started: the port is in use (set S0_SSH_PORT, or S0_SSH_ENABLED=false)', {
      host: config.sshHost,
      port: config.sshPort,
    })
    return undefined
  }
}

function sshAuth(db: Db): SshAuthenticator {
  return {
    teamKey: (teamId, offered) => findTeamSshKey(db, teamId, offered),
    apiKeyTeam: async (token) => (await authenticate(db, token).catch(() => undefined))?.teamId,
  }
}

/**
 * Resolves on the first SIGINT/SIGTERM. Later signals are only logged (tsx and some supervisors
 * relay the first one twice); a shutdown that hangs is cut off after limits.serverShutdownTimeoutMs instead.
 */
function waitForSignal(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    let received = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (received) {
        log.warn('already shutting down', { signal })
        return
      }
      received = true
      log.info('shutting down', { signal })
      setTimeout(() => {
        log.error('shutdown did not finish in time; exiting', { timeoutMs: limits.serverShutdownTimeoutMs })
        process.exit(1)
      }, limits.serverShutdownTimeoutMs).unref()
      resolve()
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}

/** A stable owner id per host and state directory (volume leases, sandboxes' host). */
export function serverOwnerId(stateDir: string): string {
  return `server-${createHash('sha256').update(`${os.hostname()}:${stateDir}`).digest('hex').slice(0, 16)}`
}

/** The short tag in the names of a server's cgroups, netns, veths and nftables table. */
export function serverTag(ownerId: string): string {
  return ownerId.slice(-6)
}
