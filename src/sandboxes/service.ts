// Claimed sandboxes: Postgres rows (the truth for the API) over the runtimes (the processes) and
// the volume engine (root file systems beyond the template, and volumes). This is the service the
// API calls: claim (cold, warm, or from a rootfs snapshot), reads, updates, the lifecycle
// operations (lifecycle.ts), auto-resume for runtime calls, the sandbox's file view, the sweeper
// (sweeper.ts) and reconcile at start (host.ts). Ids come from the wire as strings: a malformed
// one is simply a sandbox that does not exist.
import path from 'node:path'
import type { Db } from '../core/db.js'
import { isS0Error, S0Error } from '../core/errors.js'
import { isSandboxId, newSandboxId, type SandboxId, type TeamId, type VolumeId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { silentLogger, type Logger } from '../core/log.js'
import type { MountManager } from '../fuse/mounts.js'
import { prepareCrunHost } from '../runtime/crun.js'
import { pickDriver } from '../runtime/detect.js'
import type { DriverName } from '../runtime/driver.js'
import type { TemplateStore } from '../runtime/templates.js'
import type { SandboxNetwork } from '../runtime/network.js'
import type { CredentialResolver } from '../egress/credentials/resolve.js'
import { checkPolicy } from '../egress/policy/compile.js'
import { DEFAULT_NETWORK_POLICY, type SandboxNetworkPolicy } from '../egress/policy/types.js'
import { checkMounts, claimConfig, warmCandidate } from './claim.js'
import { admitClaim, type ClaimSlot } from './claim-quota.js'
import type { Context } from './contexts/context.js'
import type { ContextManager } from './contexts/manager.js'
import { createContext, type ContextRequest } from './contexts/requests.js'
import type { SandboxView } from '../runtime/view.js'
import type { ExecOptions, SandboxProcess } from '../runtime/sandbox-runtime.js'
import { SandboxTree } from './files/paths.js'
import { TreeWatch, type TreeWatchOptions } from './files/watch.js'
import type { SandboxEgress } from './egress.js'
import { SandboxHost } from './host.js'
import { AppServices, type AppService } from './services/index.js'
import type { EventLog } from '../core/events.js'
import { SandboxLifecycle } from './lifecycle.js'
import type { WarmPool } from './pool.js'
import type {
  ClaimRequest,
  ListQuery,
  MountStatus,
  RootfsSnapshotRow,
  SandboxConfig,
  SandboxRow,
  StoredConfig,
} from './rows.js'
import { SandboxStore } from './store.js'
import { Sweeper } from './sweeper.js'
import { checkedMemory, TemplateCatalog, type ResolvedTemplate } from './templates.js'
import { ImagePuller } from '../runtime/image-pull.js'
import type { SecretKey } from '../egress/credentials/key.js'
import { RegistryCredentials } from './registry-credentials.js'
import { ImageVolumes } from './image-volumes.js'
import { TemplateBuilds } from './template-builds.js'
import { TemplatesFromSandbox } from './template-from-sandbox.js'
import { WarmSandboxes } from './warm.js'
import { SandboxAudit, errorAttributes } from './audit.js'
import { SandboxLogs } from './logs.js'
import { ContextRecorder } from './observer.js'
import { ObservabilityRetention, type RetentionPolicy } from './retention.js'
import {
  MetricsSampler,
  queryMetrics,
  runningSandboxes,
  TeamCounters,
  type MetricsQuery,
  type MetricsResult,
} from './metrics/index.js'
import { checkWebhook, WebhookDeliverer, WebhookWatches } from './webhooks/index.js'
import type { SessionManager, SessionSandbox } from './sessions/index.js'

export interface SandboxServiceOptions {
  db: Db
  templates: TemplateStore
  /** Runtime state: `<stateDir>/<driver>/...`; memory images: `<stateDir>/memory/<id>`. */
  stateDir: string
  /** This server's identity (host + state dir): reconcile only touches its own rows. */
  hostId: string
  /** Driver preference for sandboxes whose template names none (first working one wins). */
  preference?: readonly DriverName[]
  /** Runtimes driven through our own containerd (S0_RUNTIMES `containerd:<name>`, Config.containerdRuntimes). */
  containerd?: readonly DriverName[]
  cgroupPrefix?: string
  netnsPrefix?: string
  sweepIntervalMs?: number
  /** `/exec` time limit (default limits.execTimeoutMsDefault, as Sandbox0); tests lower it. */
  execTimeoutMs?: number
  /**
   * FUSE mounts of this host: volumes at claim, and root-filesystem checkpoints. Without it,
   * claim `mounts`, pause, resume, snapshots and forks are not supported.
   */
  mounts?: MountManager
  /** How long a runtime call to a paused sandbox waits for its auto-resume before a 503. */
  autoResumeWaitMs?: number
  /** Cluster (docs/DEPLOY.md): a node without a heartbeat for this long is dead (S0_NODE_DEAD_AFTER_S). */
  nodeDeadAfterS?: number
  /** A sandbox's writable root when neither template nor claim sets ephemeralStorage. */
  diskBytesDefault?: number
  /** The sandbox network and egress (egress-stack.ts); none: sandboxes have loopback only. */
  network?: { network: SandboxNetwork; egress: SandboxEgress }
  /** Credential sources: a policy's bindings must name one of the team's, of a fitting kind. */
  credentials?: CredentialResolver
  /** The event log (lifecycle, processes, files, ingress requests as api_access events). */
  events?: EventLog
  /** Keep every context's output (`observability/logs`); default true (the bench compares off). */
  recordOutput?: boolean
  /** Retention of events and output logs (defaults: limits.ts). */
  retention?: Partial<RetentionPolicy>
  /**
   * Registry images: pulled into `dir` (default `<templates dir>/images`), with the teams'
   * registry credentials sealed by `key` (without it, only public images), over http for the
   * `insecureHosts` (S0_REGISTRY_INSECURE_HOSTS) and loopback registries.
   */
  images?: { dir?: string; key?: SecretKey; insecureHosts?: readonly string[] }
  log?: Logger
  /** Runtime metrics sampling (S0_METRICS_*): default every 5 s, kept 7 days. */
  metrics?: { intervalMs?: number; retentionMs?: number }
  /** Webhook delivery (S0_WEBHOOK_*): retry bounds; tests shorten the poll and backoff. */
  webhooks?: {
    attemptsMax?: number
    ageMsMax?: number
    pollMs?: number
    backoffFirstMs?: number
    backoffMaxMs?: number
  }
}

/** A sandbox id from the wire, or `not_found` (a malformed id names no sandbox). */
function sandboxId(id: string): SandboxId {
  if (!isSandboxId(id)) throw new S0Error('not_found', `no sandbox ${JSON.stringify(id)}`)
  return id
}

export class SandboxService {
  readonly catalog: TemplateCatalog
  /** App services (public exposure) of the team's sandboxes. */
  readonly services: AppServices
  private readonly store: SandboxStore
  private readonly host: SandboxHost
  private readonly lifecycle: SandboxLifecycle
  private readonly warm: WarmSandboxes
  private readonly sweeper: Sweeper
  /** Records lifecycle, process and file events. */
  readonly audit: SandboxAudit
  /** What contexts printed. */
  readonly logs: SandboxLogs
  private readonly retention: ObservabilityRetention
  private defaultDriver: DriverName | undefined
  private runtimeError: unknown
  /** fence() was called: close() writes nothing of the sandboxes (see close). */
  private fenced = false
  private crunReady: Promise<unknown> | undefined
  private readonly log: Logger
  /** The teams' private registry credentials (absent without a secret key). */
  readonly registryCredentials: RegistryCredentials | undefined
  readonly templateBuilds: TemplateBuilds
  readonly templatesFromSandbox: TemplatesFromSandbox
  /** Runtime metrics of the sandboxes this server runs (metrics/). */
  readonly metricsSampler: MetricsSampler
  /** Per-team aggregates of the server's Prometheus endpoint (metrics/team-counters.ts). */
  readonly teamCounters: TeamCounters
  /** Webhook delivery of the sandboxes this server runs (webhooks/). */
  readonly webhooks: WebhookDeliverer
  private readonly webhookWatches: WebhookWatches | undefined
  private webhookWatchTimer: NodeJS.Timeout | undefined

  private constructor(private readonly opts: SandboxServiceOptions) {
    this.registryCredentials = opts.images?.key
      ? new RegistryCredentials({ db: opts.db, key: opts.images.key })
      : undefined
    this.catalog = new TemplateCatalog(opts.db, opts.templates, opts.diskBytesDefault, {
      puller: new ImagePuller({
        dir: opts.images?.dir ?? path.join(opts.templates.dir, 'images'),
        ...(opts.log ? { log: opts.log } : {}),
        // Unpacked images into the chunk engine (image-volumes.ts), where there is one.
        store: opts.mounts
          ? new ImageVolumes({ db: opts.db, engine: opts.mounts.engine, log: opts.log ?? silentLogger })
          : undefined,
      }),
      credentials: this.registryCredentials,
      insecureHosts: opts.images?.insecureHosts ?? [],
    })
    this.log = (opts.log ?? silentLogger).child({ component: 'sandboxes' })
    this.store = new SandboxStore(opts.db)
    this.audit = new SandboxAudit(opts.events)
    this.logs = new SandboxLogs(opts.db, this.log)
    this.retention = new ObservabilityRetention({
      db: opts.db,
      policy: {
        maxAgeMs: opts.retention?.maxAgeMs ?? limits.observabilityRetentionDaysDefault * 86_400_000,
        eventBytesPerTeam: opts.retention?.eventBytesPerTeam ?? limits.eventRetentionBytesPerTeamDefault,
        logBytesPerSandbox: opts.retention?.logBytesPerSandbox ?? limits.logBytesPerSandboxDefault,
      },
      audit: this.audit,
      log: this.log,
    })
    this.host = new SandboxHost({
      ...(opts.recordOutput === false && !opts.events
        ? {}
        : {
            contextObserver: new ContextRecorder(
              this.audit,
              opts.recordOutput === false ? undefined : this.logs,
            ),
          }),
      store: this.store,
      catalog: this.catalog,
      stateDir: opts.stateDir,
      hostId: opts.hostId,
      ...(opts.cgroupPrefix ? { cgroupPrefix: opts.cgroupPrefix } : {}),
      ...(opts.netnsPrefix ? { netnsPrefix: opts.netnsPrefix } : {}),
      ...(opts.mounts ? { mounts: opts.mounts } : {}),
      ...(opts.diskBytesDefault !== undefined ? { diskBytesDefault: opts.diskBytesDefault } : {}),
      ...(opts.network ? { network: opts.network } : {}),
      ...(opts.containerd ? { containerd: opts.containerd } : {}),
      log: this.log,
    })
    this.lifecycle = new SandboxLifecycle({
      host: this.host,
      store: this.store,
      hostId: opts.hostId,
      // active_sandboxes counts paused sandboxes too (claim-quota.ts): a resume adds none.
      checkQuota: async () => undefined,
      ...(opts.nodeDeadAfterS !== undefined ? { nodeDeadAfterS: opts.nodeDeadAfterS } : {}),
      audit: this.audit,
      log: this.log,
    })
    this.warm = new WarmSandboxes({
      host: this.host,
      store: this.store,
      catalog: this.catalog,
      hostId: opts.hostId,
      driverFor: (name) => this.driverFor(name),
      remove: (id) => this.lifecycle.remove(id),
      log: this.log,
      ...(opts.nodeDeadAfterS !== undefined ? { nodeDeadAfterS: opts.nodeDeadAfterS } : {}),
    })
    this.services = new AppServices({
      get: (teamId, id) => this.store.get(teamId, id),
      lookup: (id) => this.ingressRow(id),
      running: (teamId, id) => this.running(teamId, id),
      live: (id) => this.host.live.has(id),
      address: (id) => opts.network?.network.attachmentOf(id)?.address,
      store: (row, services) => this.storeServices(row, services),
      supervisor: this.host.supervisor,
    })
    this.catalog.dropVolume = (teamId, volumeId) => this.host.checkpoints.drop(teamId, volumeId as VolumeId)
    // Built before templatesFromSandbox, which it calls only at start (resume) and later.
    this.templateBuilds = new TemplateBuilds({
      catalog: this.catalog,
      hostId: opts.hostId,
      log: this.log,
      resumeCapture: (row) => this.templatesFromSandbox.resume(row),
    })
    this.templatesFromSandbox = new TemplatesFromSandbox({
      db: opts.db,
      catalog: this.catalog,
      builds: this.templateBuilds,
      hostId: opts.hostId,
      log: this.log,
      getSandbox: (teamId, id) => this.store.get(teamId, id),
      snapshot: (teamId, id, meta) => this.createSnapshot(teamId, id, meta),
      getSnapshot: (teamId, id) => this.getSnapshot(teamId, id),
      deleteSnapshot: (teamId, id) => this.deleteSnapshot(teamId, id),
      forkVolume: async (teamId, volumeId) => this.host.checkpoints.newTarget(teamId, volumeId as VolumeId),
      dropVolume: (teamId, volumeId) => this.host.checkpoints.drop(teamId, volumeId as VolumeId),
    })
    this.sweeper = new Sweeper({
      host: this.host,
      store: this.store,
      lifecycle: this.lifecycle,
      hostId: opts.hostId,
      pool: () => (this.defaultDriver ? this.warm.pool : undefined),
      audit: this.audit,
      log: this.log,
    })
    this.teamCounters = new TeamCounters(opts.db)
    this.metricsSampler = new MetricsSampler({
      onTick: (readings) => {
        for (const { s, stats } of readings)
          this.teamCounters.reading(s.teamId, s.id, s.record.createdAt, {
            cpuUsec: stats.cpuUsageUsec,
            ...(stats.network ? { rx: stats.network.rxBytes, tx: stats.network.txBytes } : {}),
          })
        this.teamCounters.retain(new Set(readings.map((r) => r.s.id)))
      },
      db: opts.db,
      intervalMs: opts.metrics?.intervalMs ?? limits.metricsIntervalMsDefault,
      retentionMs: opts.metrics?.retentionMs ?? limits.metricsRetentionMsDefault,
      sandboxes: () => runningSandboxes(opts.db, opts.hostId, this.host),
      log: this.log,
    })
    this.webhooks = new WebhookDeliverer({
      db: opts.db,
      hostId: opts.hostId,
      attemptsMax: opts.webhooks?.attemptsMax ?? limits.webhookAttemptsMaxDefault,
      ageMsMax: opts.webhooks?.ageMsMax ?? limits.webhookAgeMsMaxDefault,
      ...opts.webhooks,
      log: this.log.child({ component: 'webhooks' }),
    })
    this.webhookWatches = opts.events
      ? new WebhookWatches({
          events: opts.events,
          log: this.log,
          targets: async () =>
            (await runningSandboxes(opts.db, opts.hostId, this.host, { withWatchDir: true })).map((r) => ({
              sandboxId: r.id,
              teamId: r.teamId,
              dir: r.watchDir ?? '/',
              generation: r.record.createdAt,
            })),
          open: async (t, emit) => {
            const row = await this.store.rowOf(t.sandboxId as SandboxId)
            const tree = await SandboxTree.open(this.host.viewOf(row.id))
            return TreeWatch.start({
              tree,
              path: t.dir,
              recursive: true,
              budget: { dirs: 0 },
              volumes: await this.host.mountedVolumes(row),
              emit,
              onOverflow: () => undefined,
            })
          },
        })
      : undefined
  }

  /** Seeds the built-in templates, picks the default driver, reconciles, starts the sweeper. */
  static async open(opts: SandboxServiceOptions): Promise<SandboxService> {
    const svc = new SandboxService(opts)
    await svc.catalog.ensureBuiltins()
    try {
      const busybox = await opts.templates.ensure('busybox')
      const picked = await pickDriver({
        stateDir: path.join(opts.stateDir, 'detect'),
        probeRootfs: busybox,
        ...(opts.preference ? { preference: opts.preference } : {}),
        ...(opts.containerd ? { containerd: opts.containerd } : {}),
      })
      svc.defaultDriver = picked.name
      svc.log.info('sandbox runtime', { driver: picked.name, via: picked.via ?? 'cli' })
    } catch (err) {
      svc.runtimeError = err
      svc.log.warn('no sandbox runtime: claims will fail', { err })
    }
    await svc.host.reconcile()
    await svc.templateBuilds.resume()
    svc.sweeper.start(opts.sweepIntervalMs ?? limits.sandboxSweepIntervalMs)
    svc.retention.start()
    svc.metricsSampler.start()
    svc.webhooks.start()
    svc.startWebhookWatches()
    return svc
  }

  /** watch_dir watches follow the running sandboxes (checked every webhook poll). */
  private startWebhookWatches(): void {
    const w = this.webhookWatches
    if (!w) return
    const tick = (): void => {
      this.webhookWatchTimer = setTimeout(() => {
        w.reconcile()
          .catch((err: unknown) => this.log.warn('webhook watches', { err }))
          .finally(() => this.webhookWatchTimer !== undefined && tick())
      }, this.opts.webhooks?.pollMs ?? limits.webhookPollMsDefault)
      this.webhookWatchTimer.unref()
    }
    tick()
  }

  /** A sandbox's runtime metrics (its samples, bucketed); another team's sandbox is not found. */
  async metrics(teamId: TeamId, id: string, q: MetricsQuery): Promise<MetricsResult> {
    const row = await this.store.get(teamId, id)
    return queryMetrics(this.store.db, teamId, row.id, q, {
      intervalMs: this.metricsSampler.intervalMs,
      retentionMs: this.metricsSampler.retentionMs,
    })
  }

  get execTimeoutMs(): number {
    return this.opts.execTimeoutMs ?? limits.execTimeoutMsDefault
  }

  get events(): EventLog | undefined {
    return this.opts.events
  }

  get driver(): DriverName | undefined {
    return this.defaultDriver
  }

  get contexts(): ContextManager {
    return this.host.contexts
  }

  get pool(): WarmPool {
    return this.warm.pool
  }

  /** The driver for a template's sandboxes (its own, or the default), with its host step done. */
  private async driverFor(name: DriverName | null): Promise<DriverName> {
    const driver = name ?? this.defaultDriver
    if (!driver) throw this.runtimeError ?? new S0Error('runtime_unavailable', 'no OCI runtime')
    // A template may name a driver the start-up probe did not pick: crun then needs its host step.
    if (driver === 'crun') await (this.crunReady ??= prepareCrunHost())
    return driver
  }

  /** A new sandbox (warm if one fits), recorded as a `sandbox.claim` result event. */
  async claim(teamId: TeamId, req: ClaimRequest): Promise<SandboxRow> {
    const webhook = checkWebhook(req.config?.webhook)
    const cfg = { ...req.config }
    if (webhook) cfg.webhook = { ...webhook }
    else delete cfg.webhook
    const started = performance.now()
    const { row, warm } = await this.claimRow(teamId, { ...req, config: cfg })
    this.teamCounters.claimed(teamId, warm)
    // A crash before this is caught up by the deliverer's sync (it reads config.webhook).
    if (webhook) await this.webhooks.subscribe(row.id, teamId, webhook)
    this.audit.record(teamId, row.id, {
      eventType: 'lifecycle',
      action: 'sandbox.claim',
      phase: 'result',
      outcome: 'succeeded',
      attributes: {
        duration_ms: Math.round(performance.now() - started),
        template: row.templateId,
        ...(row.config.resources ? { resources: row.config.resources } : {}),
        ...(req.snapshot_id ? { snapshot_id: req.snapshot_id } : {}),
      },
    })
    await this.audit.durable()
    return row
  }

  /** `warm`: a hit (true) or a miss (false) of the warm pool; undefined: not eligible for one. */
  private async claimRow(
    teamId: TeamId,
    req: ClaimRequest,
  ): Promise<{ row: SandboxRow; warm: boolean | undefined }> {
    const cfg = req.config ?? {}
    const tpl = await this.catalog.resolve(teamId, req.template)
    const wanted = checkMounts(req.mounts ?? [], tpl, this.opts.mounts)
    const config = claimConfig(tpl, cfg, wanted)
    await this.checkBindings(teamId, config.network, cfg.network ? 'config.network' : 'template spec.network')
    const driver = await this.driverFor(tpl.row.driver)
    // The team's quotas (active_sandboxes, sandbox_claims); the slot counts until the row exists.
    const slot = await admitClaim(this.store.db, teamId)
    try {
      return await this.claimAdmitted(teamId, req, tpl, config, driver, slot)
    } finally {
      await slot.release()
    }
  }

  private async claimAdmitted(
    teamId: TeamId,
    req: ClaimRequest,
    tpl: ResolvedTemplate,
    config: StoredConfig,
    driver: DriverName,
    slot: ClaimSlot,
  ): Promise<{ row: SandboxRow; warm: boolean | undefined }> {
    const cfg = req.config ?? {}
    // A template made from a sandbox seeds its claims' root from its own volume (no warm pool).
    const base = req.snapshot_id === undefined ? (tpl.row.baseVolumeId ?? null) : null
    const eligible = warmCandidate(req, tpl.row)
    if (eligible) {
      const warm = await this.warm.take(teamId, tpl, config, cfg)
      if (warm) {
        // The sandbox counts by its row now (until the slot goes, it counts twice: refusing, never
        // admitting, more). A miss keeps the slot: the cold insert below deletes it.
        await slot.release()
        return { row: warm, warm: true }
      }
    }
    let rootfsVolumeId: VolumeId | null = null
    if (req.snapshot_id !== undefined) {
      const snap = await this.host.checkpoints.getSnapshot(teamId, req.snapshot_id)
      rootfsVolumeId = await this.host.checkpoints.newTarget(teamId, snap.volumeId)
    } else if (base !== null) rootfsVolumeId = await this.host.checkpoints.newTarget(teamId, base as VolumeId)
    const id = newSandboxId()
    await this.store.db.query(
      // The admission slot goes in the same statement: the sandbox counts once, from its row.
      `WITH admitted AS (DELETE FROM quota_claim_slots WHERE id = $10)
       INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host, rootfs_volume_id, expires_at, hard_expires_at)
       VALUES ($1, $2, $3, 'starting', $4, $5, $6, $7,
               CASE WHEN $8::int > 0 THEN now() + make_interval(secs => $8::int) END,
               CASE WHEN $9::int > 0 THEN now() + make_interval(secs => $9::int) END)`,
      [
        id,
        teamId,
        tpl.row.id,
        JSON.stringify(config),
        driver,
        this.opts.hostId,
        rootfsVolumeId,
        cfg.ttl ?? 0,
        cfg.hard_ttl ?? 0,
        slot.id,
      ],
    )
    const row = await this.store.rowOf(id)
    // A cluster's reaper fails the claims of a node it declared dead: this one has lost it.
    if (row.status !== 'starting') throw lostClaim(id)
    try {
      await this.host.startRuntime(row)
    } catch (err) {
      await this.store.setStatus(row, 'failed', `start failed: ${(err as Error).message}`.slice(0, 2000))
      this.audit.record(teamId, row.id, {
        eventType: 'lifecycle',
        action: 'sandbox.failure',
        phase: 'result',
        outcome: 'failed',
        attributes: { during: 'claim', ...errorAttributes(err) },
      })
      throw err
    }
    if (!(await this.store.advance(row, 'running', ''))) {
      await this.host.stopRuntime(row).catch(() => undefined)
      throw lostClaim(id)
    }
    return { row: await this.store.get(teamId, id), warm: eligible ? false : undefined }
  }

  get(teamId: TeamId, id: string): Promise<SandboxRow> {
    return this.store.get(teamId, id)
  }

  /**
   * Events and logs of a sandbox are the team's while the sandbox exists and, once it is deleted,
   * until retention removes them: `not_found` when it is neither (another team's included).
   */
  async requireObservable(teamId: TeamId, id: string): Promise<void> {
    const { rows } = await this.store.db.query(
      `SELECT 1 FROM sandboxes WHERE team_id = $1 AND id = $2
       UNION ALL SELECT 1 FROM (SELECT 1 FROM sandbox_events WHERE team_id = $1 AND sandbox_id = $2 LIMIT 1) e
       LIMIT 1`,
      [teamId, id],
    )
    if (rows.length === 0) throw new S0Error('not_found', `no sandbox ${JSON.stringify(id)}`)
  }

  list(teamId: TeamId, q: ListQuery): Promise<{ rows: SandboxRow[]; count: number }> {
    return this.store.list(teamId, q)
  }

  // Lifecycle operations: see lifecycle.ts.
  pause(
    teamId: TeamId,
    id: string,
    o: { keepMemory?: boolean } = {},
  ): Promise<{ row: SandboxRow; paused: boolean }> {
    return this.timed('pause', teamId, this.lifecycle.pause(teamId, sandboxId(id), o))
  }

  resume(teamId: TeamId, id: string): Promise<SandboxRow> {
    return this.timed('resume', teamId, this.lifecycle.resume(teamId, sandboxId(id)))
  }

  /** Observes how long a successful pause or resume took (Prometheus histograms). */
  private async timed<T>(op: 'pause' | 'resume', teamId: TeamId, p: Promise<T>): Promise<T> {
    const started = performance.now()
    const r = await p
    this.teamCounters.observe(op, teamId, (performance.now() - started) / 1000)
    return r
  }

  createSnapshot(
    teamId: TeamId,
    id: string,
    meta: { name?: string; description?: string; expiresAt?: Date },
  ): Promise<RootfsSnapshotRow> {
    return this.lifecycle.createSnapshot(teamId, sandboxId(id), meta)
  }

  /** Snapshots outlive their sandbox: those of a deleted one are listed too. */
  listSnapshots(teamId: TeamId, id: string): Promise<RootfsSnapshotRow[]> {
    if (!isSandboxId(id)) return Promise.resolve([])
    return this.lifecycle.listSnapshots(teamId, id)
  }

  getSnapshot(teamId: TeamId, snapshotId: string): Promise<RootfsSnapshotRow> {
    return this.lifecycle.getSnapshot(teamId, snapshotId)
  }

  deleteSnapshot(teamId: TeamId, snapshotId: string): Promise<void> {
    return this.lifecycle.deleteSnapshot(teamId, snapshotId)
  }

  async fork(teamId: TeamId, id: string, cfg: { ttl?: number; hard_ttl?: number } = {}): Promise<SandboxRow> {
    // A fork is a new sandbox: admitted against the quotas as a claim is.
    const slot = await admitClaim(this.store.db, teamId)
    try {
      return await this.lifecycle.fork(teamId, sandboxId(id), cfg)
    } finally {
      await slot.release()
    }
  }

  restore(teamId: TeamId, id: string, snapshotId: string): Promise<SandboxRow> {
    return this.lifecycle.restore(teamId, sandboxId(id), snapshotId)
  }

  /** The sandbox and all its state (rootfs snapshots outlive it). */
  async delete(teamId: TeamId, id: string): Promise<void> {
    const row = await this.store.get(teamId, id)
    await this.lifecycle.remove(row.id)
  }

  /**
   * A running sandbox of the team (contexts and files need one). A paused one with auto_resume
   * (the default) is resumed, and the call waits up to autoResumeWaitMs for it (503 `unavailable`,
   * "waking up", after that). Sandboxes run by this process are answered from memory: every
   * write to their row drops the entry, so the routes a REPL round trip takes cost no query.
   */
  async running(teamId: TeamId, wireId: string): Promise<SandboxRow> {
    const id = sandboxId(wireId)
    const cached = this.store.cached(id)
    if (cached && cached.teamId === teamId && this.host.live.has(id) && !this.lifecycle.busy(id))
      return cached
    let op = this.lifecycle.busy(id)
    // A pause ending (its row may already say paused while it finishes): a call that would wake
    // the sandbox waits for it, as long as it would wait for the wake, rather than fail.
    if (op?.kind === 'pause') {
      const pausing = op
      const waitMs = this.opts.autoResumeWaitMs ?? limits.autoResumeWaitMsDefault
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        pausing.done.catch(() => undefined),
        new Promise((r) => (timer = setTimeout(r, waitMs))),
      ])
      clearTimeout(timer)
      op = this.lifecycle.busy(id)
    }
    if (op?.kind === 'pause' || op?.kind === 'delete')
      throw new S0Error(
        'unavailable',
        `sandbox ${id} is ${op.kind === 'pause' ? 'pausing' : 'being deleted'}`,
        {
          retryAfterS: 1,
        },
      )
    // A brief freeze (snapshot, fork): wait for it to end, whatever its outcome (its caller gets that).
    if (op && op.kind !== 'resume') await op.done.catch(() => undefined)
    const gen = this.store.generation
    let row = await this.store.get(teamId, id)
    if (row.status === 'paused' && row.config.auto_resume !== false) row = await this.wake(row)
    if (row.status !== 'running' || !this.host.live.has(id)) {
      const why = row.statusReason ? `: ${row.statusReason}` : ''
      throw new S0Error('sandbox_not_running', `sandbox ${id} is ${row.status}${why}`)
    }
    // A row write while we read may have dropped an entry we would now put back stale.
    this.store.remember(row, gen)
    return row
  }

  /**
   * A sandbox of any team by id, for the ingress proxy (its public URL names it): answered from
   * memory while it runs here, like `running`; undefined if there is none (warm ones included).
   */
  private async ingressRow(id: SandboxId): Promise<SandboxRow | undefined> {
    const cached = this.store.cached(id)
    if (cached && this.host.live.has(id) && !this.lifecycle.busy(id)) return cached
    const gen = this.store.generation
    const row = await this.store.rowOf(id).catch((err: unknown) => {
      if (isS0Error(err) && err.code === 'not_found') return undefined
      throw err
    })
    if (!row || row.status === 'idle') return undefined
    if (row.status === 'running' && this.host.live.has(id) && !this.lifecycle.busy(id))
      this.store.remember(row, gen)
    return row
  }

  private async storeServices(row: SandboxRow, services: AppService[]): Promise<SandboxRow> {
    await this.store.db.query(
      `UPDATE sandboxes SET config = jsonb_set(config, '{services}', $2::jsonb), updated_at = now() WHERE id = $1`,
      [row.id, JSON.stringify(services)],
    )
    this.store.written(row.id)
    return this.store.get(row.teamId, row.id)
  }

  /** Auto-resume: resumes a paused sandbox and waits up to autoResumeWaitMs for it. */
  private async wake(row: SandboxRow): Promise<SandboxRow> {
    const waking = this.lifecycle.resume(row.teamId, row.id)
    // If we stop waiting, the resume goes on; its failure is recorded on the row and seen by the next call.
    waking.catch(() => undefined)
    let timer: NodeJS.Timeout | undefined
    const waitMs = this.opts.autoResumeWaitMs ?? limits.autoResumeWaitMsDefault
    const res = await Promise.race([
      waking,
      new Promise<'waiting'>((r) => (timer = setTimeout(() => r('waiting'), waitMs))),
    ])
    clearTimeout(timer)
    if (res === 'waiting')
      throw new S0Error('unavailable', `sandbox ${row.id} is waking up`, { retryAfterS: 1 })
    return res
  }

  /**
   * What a running sandbox's processes see as their file tree, as host directories (files API,
   * watch); a paused one is woken first.
   */
  async view(teamId: TeamId, id: string): Promise<SandboxView> {
    const row = await this.running(teamId, id)
    return this.host.viewOf(row.id)
  }

  // ---- contexts --------------------------------------------------------------------------------

  /** A new context (or a warm one) in the sandbox, woken first if paused. */
  async createContext(teamId: TeamId, id: string, req: ContextRequest): Promise<Context> {
    const row = await this.running(teamId, id)
    return createContext(this.host.contexts, row, req, this.execTimeoutMs)
  }

  async listContexts(teamId: TeamId, id: string): Promise<Context[]> {
    const row = await this.store.get(teamId, id)
    return this.host.contexts.list(row.id)
  }

  /** A context of a sandbox of the team; `context_not_found` otherwise. */
  async context(teamId: TeamId, id: string, ctxId: string): Promise<Context> {
    const row = await this.store.get(teamId, id)
    const ctx = this.host.contexts.get(row.id, ctxId)
    // Its output is stored by the time its end is visible: whoever reads the logs after seeing
    // the end (`s0 sandbox exec`) misses nothing.
    if (!ctx.running) await this.logs.flush()
    return ctx
  }

  async deleteContext(teamId: TeamId, id: string, ctxId: string): Promise<void> {
    const row = await this.store.get(teamId, id)
    await this.host.contexts.delete(row.id, ctxId)
  }

  /** Starts the context's process again (the sandbox is woken first if paused). */
  async restartContext(teamId: TeamId, id: string, ctxId: string): Promise<Context> {
    const row = await this.running(teamId, id)
    const ctx = this.host.contexts.get(row.id, ctxId)
    await ctx.restart()
    return ctx
  }

  /**
   * Watches a directory of a running sandbox (woken first if paused): events carry the paths its
   * processes see; volumes are watched through their change feed.
   */
  async watchFiles(
    teamId: TeamId,
    id: string,
    o: Omit<TreeWatchOptions, 'tree' | 'volumes'>,
  ): Promise<TreeWatch> {
    const row = await this.running(teamId, id)
    const tree = await SandboxTree.open(this.host.viewOf(row.id))
    return TreeWatch.start({ ...o, tree, volumes: await this.host.mountedVolumes(row) })
  }

  /** What the claim reports in `bootstrap_mounts`. */
  mountStatus(id: SandboxId): MountStatus[] {
    return (this.host.live.get(id)?.volumes ?? []).map((v) => v.status)
  }

  /** PUT: env_vars (omitted = keep, {} = clear), memory (applied live), ttl / hard_ttl (from now), network, auto_resume. */
  async update(teamId: TeamId, id: string, cfg: SandboxConfig): Promise<SandboxRow> {
    const row = await this.store.get(teamId, id)
    const config = { ...row.config }
    if (cfg.env_vars !== undefined) config.env_vars = cfg.env_vars
    if (cfg.network !== undefined) {
      config.network = checkPolicy(cfg.network, 'config.network')
      await this.checkBindings(teamId, config.network, 'config.network')
    }
    if (cfg.auto_resume !== undefined) config.auto_resume = cfg.auto_resume
    if (cfg.resources?.memory !== undefined) {
      config.memory_bytes = checkedMemory(cfg.resources.memory, 'resources.memory')
      config.resources = { memory: cfg.resources.memory }
      if (row.status === 'running' && this.host.live.has(row.id))
        await this.host.runtimeOf(row.id).setResources(row.id, { memoryBytes: config.memory_bytes })
    }
    if (cfg.ttl !== undefined) config.ttl = cfg.ttl
    if (cfg.hard_ttl !== undefined) config.hard_ttl = cfg.hard_ttl
    // A paused sandbox's soft ttl starts again when it resumes.
    const ttl = cfg.ttl === undefined || row.status === 'paused' ? null : cfg.ttl
    await this.store.db.query(
      `UPDATE sandboxes SET config = $2, updated_at = now(),
         expires_at = CASE WHEN $3::int IS NULL THEN expires_at WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END,
         hard_expires_at = CASE WHEN $4::int IS NULL THEN hard_expires_at WHEN $4::int > 0 THEN now() + make_interval(secs => $4::int) END
       WHERE id = $1`,
      [row.id, JSON.stringify(config), ttl, cfg.hard_ttl ?? null],
    )
    this.store.written(row.id)
    if (cfg.network !== undefined) this.host.policyChanged(row.id, config.network as SandboxNetworkPolicy)
    return this.store.get(teamId, id)
  }

  /** The sandbox's egress policy: its claim's, its template's, or the last one set. */
  async networkPolicy(teamId: TeamId, id: string): Promise<SandboxNetworkPolicy> {
    const row = await this.store.get(teamId, id)
    return row.config.network ?? DEFAULT_NETWORK_POLICY
  }

  /**
   * Replaces the sandbox's egress policy (checked whole first: nothing is half-applied). A running
   * sandbox's new connections follow it at once; a paused one gets it at resume.
   */
  async setNetworkPolicy(teamId: TeamId, id: string, policy: unknown): Promise<SandboxNetworkPolicy> {
    const checked = checkPolicy(policy, 'network')
    const row = await this.store.get(teamId, id)
    await this.checkBindings(teamId, checked, 'network')
    await this.store.db.query(
      `UPDATE sandboxes SET config = jsonb_set(config, '{network}', $2::jsonb), updated_at = now() WHERE id = $1`,
      [row.id, JSON.stringify(checked)],
    )
    this.store.written(row.id)
    this.host.policyChanged(row.id, checked)
    return checked
  }

  /**
   * Each credential binding names a source of the team that its projection can use: a policy
   * that cannot inject what it says is refused when it is written, not at the first request.
   */
  private async checkBindings(
    teamId: TeamId,
    policy: SandboxNetworkPolicy | undefined,
    field: string,
  ): Promise<void> {
    const bindings = policy?.credentialBindings ?? []
    const credentials = this.opts.credentials
    if (!credentials) return
    for (const [i, binding] of bindings.entries()) {
      try {
        await credentials.resolveBinding(teamId, binding)
      } catch (err) {
        if (!isS0Error(err, 'credential_source_not_found')) throw err
        throw new S0Error(
          'invalid_request',
          `${field}.credentialBindings[${i}].sourceRef: this team has no credential source ${JSON.stringify(binding.sourceRef)} (create it with POST /api/v1/credential-sources first)`,
          { details: { field: `${field}.credentialBindings[${i}].sourceRef` } },
        )
      }
    }
  }

  /** Restarts both timers from now (`duration` replaces the soft ttl for this period). */
  async refresh(teamId: TeamId, id: string, durationSec?: number): Promise<SandboxRow> {
    const row = await this.store.get(teamId, id)
    const ttl = row.status === 'paused' ? 0 : (durationSec ?? row.config.ttl ?? 0)
    const hard = row.config.hard_ttl ?? 0
    await this.store.db.query(
      `UPDATE sandboxes SET updated_at = now(),
         expires_at = CASE WHEN $2::int > 0 THEN now() + make_interval(secs => $2::int) END,
         hard_expires_at = CASE WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END
       WHERE id = $1`,
      [row.id, ttl, hard],
    )
    this.store.written(row.id)
    return this.store.get(teamId, id)
  }

  /** One sweeper pass now (tests; the sweeper also runs on its own timer). */
  sweep(): Promise<void> {
    return this.sweeper.sweep()
  }

  // ---- SSH endpoint (sandboxes/ssh) -------------------------------------------------------------

  /** Where the SSH endpoint is reached (`Sandbox.ssh`); set by the SSH server while it listens. */
  sshEndpoint: { host: string; port: number } | undefined

  /** The team of a sandbox the API may show, or undefined (an SSH login names only the sandbox). */
  async ownerOf(wireId: string): Promise<TeamId | undefined> {
    if (!isSandboxId(wireId)) return undefined
    const { rows } = await this.store.db.query<{ team_id: TeamId }>(
      `SELECT team_id FROM sandboxes WHERE id = $1 AND status <> 'idle'`,
      [wireId],
    )
    return rows[0]?.team_id
  }

  /**
   * A process in a running sandbox of the team (a paused one is woken first), with the sandbox's
   * env_vars under `opts.env`: an SSH shell or command, on the runtime's one exec path.
   */
  async spawn(
    teamId: TeamId,
    id: string,
    argv: readonly string[],
    opts: ExecOptions,
  ): Promise<SandboxProcess> {
    const row = await this.running(teamId, id)
    return this.host.runtimeOf(row.id).exec(row.id, argv, {
      ...opts,
      env: { ...row.config.env_vars, ...opts.env },
    })
  }

  /** The sandbox's address on its veth (undefined without a sandbox network, or not running here). */
  addressOf(id: SandboxId): string | undefined {
    return this.opts.network?.network.attachmentOf(id)?.address
  }

  /**
   * Stops the sweeper and the contexts. Sandboxes keep running (the next start adopts those it
   * can, and pauses those it cannot, with their files) unless `stopSandboxes`, which removes
   * every sandbox of this server (tests, host teardown). Warm sandboxes always go.
   */
  // ---- execution sessions (sessions/) -----------------------------------------------------------

  get sessions(): SessionManager {
    return this.host.sessions
  }

  /**
   * The team's sandbox for a session call (`not_found` otherwise); with `wake`, a paused one is
   * resumed first like for contexts (processes need it running).
   */
  async sessionSandbox(teamId: TeamId, id: string, o: { wake?: boolean } = {}): Promise<SessionSandbox> {
    const row = o.wake ? await this.running(teamId, id) : await this.store.get(teamId, id)
    return {
      id: row.id,
      teamId: row.teamId,
      runtimeGeneration: row.runtimeGeneration,
      live: row.status === 'running' && this.host.live.has(row.id),
    }
  }

  /**
   * This node was declared dead (cluster): every sandbox it runs is another node's now. Kills
   * their runtimes without a write of any kind; `close()` then ends the rest without writing
   * anything of theirs either.
   */
  async fence(): Promise<void> {
    this.fenced = true
    await this.host.killAll()
  }

  async close(opts: { stopSandboxes?: boolean } = {}): Promise<void> {
    clearTimeout(this.webhookWatchTimer)
    this.webhookWatchTimer = undefined
    this.webhookWatches?.close()
    await this.metricsSampler.stop()
    await this.webhooks.stop()
    await this.sweeper.stop()
    await this.retention.stop()
    await this.templateBuilds.idle()
    await this.warm.pool.idle()
    await this.lifecycle.idle()
    await this.host.contexts.closeAll()
    // Supervised services end with this process (an adopting server starts them again).
    await this.host.supervisor.close()
    if (this.fenced) {
      // Fenced: the rows, sessions and warm slots under this host id are another life's or
      // another node's now (a process started again with this node's name has the same id).
      // Suspending the sessions or removing the idle rows would write over theirs.
      await this.logs.close()
      await this.host.closeDrivers()
      return
    }
    // So do sessions' processes (suspended; recovered by runtime_recovery when the sandbox runs again).
    await this.host.sessions.close()
    const { rows } = await this.store.db.query<{ id: SandboxId; status: string }>(
      `SELECT id, status FROM sandboxes WHERE host = $1`,
      [this.opts.hostId],
    )
    for (const r of rows) {
      if (r.status !== 'idle' && !opts.stopSandboxes) continue
      await this.lifecycle
        .remove(r.id)
        .catch((err: unknown) => this.log.warn('delete at close failed', { id: r.id, err }))
    }
    await this.logs.close()
    // Last: the removals above went through the drivers (containerd's daemon stops here).
    await this.host.closeDrivers()
  }
}

/** A claim whose row another process failed meanwhile (its node was declared dead). */
function lostClaim(id: string): S0Error {
  return new S0Error(
    'unavailable',
    `sandbox ${id} failed while it started: this node was declared dead meanwhile`,
    {
      retryAfterS: 1,
    },
  )
}
