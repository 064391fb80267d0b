// Claimed sandboxes: Postgres rows (the truth for the API) over the runtimes (the processes) and
// the volume engine (root file systems beyond the template, and volumes). This is the service the
// routes call: claim (cold, warm, or from a rootfs snapshot), reads, updates, the lifecycle
// operations (sandbox-lifecycle.ts), auto-resume for runtime calls, the sweeper (ttl pauses,
// hard_ttl deletes, expired snapshots, warm pools) and reconcile at start (sandbox-host.ts).
import path from 'node:path'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { randomHexId, type TeamId } from '../core/ids.js'
import { silentLogger, type Logger } from '../core/log.js'
import type { MountManager } from '../fuse/mounts.js'
import { prepareCrunHost } from '../runtime/crun.js'
import { pickDriver } from '../runtime/detect.js'
import type { DriverName } from '../runtime/driver.js'
import type { TemplateStore } from '../runtime/templates.js'
import { contextLimits, type ContextManager } from './context-manager.js'
import { checkMounts, claimConfig } from './sandbox-claim.js'
import { SandboxHost } from './sandbox-host.js'
import { SandboxLifecycle } from './sandbox-lifecycle.js'
import type { WarmPool } from './sandbox-pool.js'
import type { RootfsSnapshotRow } from './sandbox-rootfs.js'
import {
  sandboxLimitsApi,
  type ClaimRequest,
  type MountStatus,
  type SandboxConfig,
  type SandboxRow,
  type SandboxStatus,
  type VolumeMountRequest,
} from './sandbox-rows.js'
import { SandboxStore } from './sandbox-store.js'
import { WarmSandboxes } from './sandbox-warm.js'
import { checkedMemory, TemplateCatalog } from './template-catalog.js'

export { isoOrNull, sandboxLimitsApi, SANDBOX_ID } from './sandbox-rows.js'
export type { ClaimRequest, MountStatus, SandboxConfig, SandboxRow, SandboxStatus, VolumeMountRequest }

const ORPHAN_SWEEP_EVERY_MS = 60_000

export interface SandboxServiceOptions {
  db: Db
  templates: TemplateStore
  /** Runtime state: `<stateDir>/<driver>/...`; memory images: `<stateDir>/memory/<id>`. */
  stateDir: string
  /** This server's identity (host + state dir): reconcile only touches its own rows. */
  hostId: string
  /** Driver preference for sandboxes whose template names none (first working one wins). */
  preference?: readonly DriverName[]
  cgroupPrefix?: string
  netnsPrefix?: string
  sweepIntervalMs?: number
  /** `/exec` time limit (default 30 s, as Sandbox0); tests lower it. */
  execTimeoutMs?: number
  /**
   * FUSE mounts of this host: volumes at claim, and root-filesystem checkpoints. Without it,
   * claim `mounts`, pause, resume, snapshots and forks are not supported.
   */
  mounts?: MountManager
  /** How long a runtime call to a paused sandbox waits for its auto-resume before a 503. */
  autoResumeWaitMs?: number
  log?: Logger
}

export class SandboxService {
  readonly catalog: TemplateCatalog
  private readonly store: SandboxStore
  private readonly host: SandboxHost
  private readonly lifecycle: SandboxLifecycle
  private readonly warm: WarmSandboxes
  private defaultDriver: DriverName | undefined
  private runtimeError: unknown
  private sweeper: NodeJS.Timeout | undefined
  private sweeping = false
  private lastOrphanSweep = 0
  private crunReady: Promise<unknown> | undefined
  private readonly log: Logger

  private constructor(private readonly opts: SandboxServiceOptions) {
    this.catalog = new TemplateCatalog(opts.db, opts.templates)
    this.log = (opts.log ?? silentLogger).child({ component: 'sandboxes' })
    this.store = new SandboxStore(opts.db)
    this.host = new SandboxHost({
      store: this.store,
      catalog: this.catalog,
      stateDir: opts.stateDir,
      hostId: opts.hostId,
      ...(opts.cgroupPrefix ? { cgroupPrefix: opts.cgroupPrefix } : {}),
      ...(opts.netnsPrefix ? { netnsPrefix: opts.netnsPrefix } : {}),
      ...(opts.mounts ? { mounts: opts.mounts } : {}),
      log: this.log,
    })
    this.lifecycle = new SandboxLifecycle({
      host: this.host,
      store: this.store,
      hostId: opts.hostId,
      checkQuota: (teamId) => this.checkQuota(teamId),
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
    })
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
      })
      svc.defaultDriver = picked.name
      svc.log.info('sandbox runtime', { driver: picked.name })
    } catch (err) {
      svc.runtimeError = err
      svc.log.warn('no sandbox runtime: claims will fail', { err })
    }
    await svc.host.reconcile()
    svc.sweeper = setInterval(
      () => void svc.sweep(),
      opts.sweepIntervalMs ?? sandboxLimitsApi.sweepIntervalMs,
    )
    svc.sweeper.unref()
    return svc
  }

  get execTimeoutMs(): number {
    return this.opts.execTimeoutMs ?? contextLimits.execTimeoutMsDefault
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

  async claim(teamId: TeamId, req: ClaimRequest): Promise<SandboxRow> {
    const cfg = req.config ?? {}
    const tpl = await this.catalog.resolve(teamId, req.template)
    const wanted = checkMounts(req.mounts ?? [], tpl, this.opts.mounts)
    const config = claimConfig(tpl, cfg, wanted)
    const driver = await this.driverFor(tpl.row.driver)
    await this.checkQuota(teamId)
    if (wanted.length === 0 && req.snapshot_id === undefined) {
      const warm = await this.warm.take(teamId, tpl, config, cfg)
      if (warm) return warm
    }
    let rootfsVolumeId: string | null = null
    if (req.snapshot_id !== undefined) {
      const snap = await this.host.checkpoints.getSnapshot(teamId, req.snapshot_id)
      rootfsVolumeId = await this.host.checkpoints.newTarget(teamId, snap.volumeId)
    }
    const id = `sb-${randomHexId(6)}`
    await this.store.db.query(
      `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host, rootfs_volume_id, expires_at, hard_expires_at)
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
      ],
    )
    try {
      await this.host.startRuntime(await this.store.rowOf(id))
    } catch (err) {
      await this.store.setStatus(id, 'failed', `start failed: ${(err as Error).message}`.slice(0, 2000))
      throw err
    }
    await this.store.setStatus(id, 'running', '')
    return this.store.get(teamId, id)
  }

  private async checkQuota(teamId: TeamId): Promise<void> {
    const active = await this.store.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sandboxes WHERE team_id = $1 AND status IN ('starting', 'running') AND pool_key IS NULL`,
      [teamId],
    )
    if ((active.rows[0]?.n ?? 0) >= sandboxLimitsApi.activeSandboxesPerTeamMax)
      throw new S0Error(
        'quota_exceeded',
        `a team may run at most ${sandboxLimitsApi.activeSandboxesPerTeamMax} sandboxes`,
        {
          retryAfterS: 5,
        },
      )
  }

  get(teamId: TeamId, id: string): Promise<SandboxRow> {
    return this.store.get(teamId, id)
  }

  list(
    teamId: TeamId,
    q: { status?: string; templateId?: string; paused?: boolean; limit?: number; offset?: number },
  ): Promise<{ rows: SandboxRow[]; count: number }> {
    return this.store.list(teamId, q)
  }

  // Lifecycle operations: see sandbox-lifecycle.ts.
  pause(
    teamId: TeamId,
    id: string,
    o: { keepMemory?: boolean } = {},
  ): Promise<{ row: SandboxRow; paused: boolean }> {
    return this.lifecycle.pause(teamId, id, o)
  }

  resume(teamId: TeamId, id: string): Promise<SandboxRow> {
    return this.lifecycle.resume(teamId, id)
  }

  createSnapshot(
    teamId: TeamId,
    id: string,
    meta: { name?: string; description?: string; expiresAt?: Date },
  ): Promise<RootfsSnapshotRow> {
    return this.lifecycle.createSnapshot(teamId, id, meta)
  }

  listSnapshots(teamId: TeamId, id: string): Promise<RootfsSnapshotRow[]> {
    return this.lifecycle.listSnapshots(teamId, id)
  }

  getSnapshot(teamId: TeamId, snapshotId: string): Promise<RootfsSnapshotRow> {
    return this.lifecycle.getSnapshot(teamId, snapshotId)
  }

  deleteSnapshot(teamId: TeamId, snapshotId: string): Promise<void> {
    return this.lifecycle.deleteSnapshot(teamId, snapshotId)
  }

  fork(teamId: TeamId, id: string, cfg: { ttl?: number; hard_ttl?: number } = {}): Promise<SandboxRow> {
    return this.lifecycle.fork(teamId, id, cfg)
  }

  restore(teamId: TeamId, id: string, snapshotId: string): Promise<SandboxRow> {
    return this.lifecycle.restore(teamId, id, snapshotId)
  }

  /** The sandbox and all its state (rootfs snapshots outlive it). */
  remove(id: string): Promise<void> {
    return this.lifecycle.remove(id)
  }

  /**
   * A running sandbox of the team (contexts and files need one). A paused one with auto_resume
   * (the default) is resumed, and the call waits up to autoResumeWaitMs for it (503 `unavailable`,
   * "waking up", after that). Sandboxes run by this process are answered from memory: every
   * write to their row drops the entry, so the routes a REPL round trip takes cost no query.
   */
  async running(teamId: TeamId, id: string): Promise<SandboxRow> {
    const cached = this.store.cached(id)
    if (cached && cached.teamId === teamId && this.host.live.has(id) && !this.lifecycle.busy(id))
      return cached
    const op = this.lifecycle.busy(id)
    if (op?.kind === 'pause' || op?.kind === 'delete')
      throw new S0Error(
        'unavailable',
        `sandbox ${id} is ${op.kind === 'pause' ? 'pausing' : 'being deleted'}`,
        {
          retryAfterS: 1,
        },
      )
    if (op && op.kind !== 'resume') await op.done.catch(() => undefined) // a brief freeze (snapshot, fork)
    const gen = this.store.generation
    let row = await this.store.get(teamId, id)
    if (row.status === 'paused' && row.config.auto_resume !== false) {
      const waking = this.resume(teamId, id)
      waking.catch(() => undefined)
      let timer: NodeJS.Timeout | undefined
      const waitMs = this.opts.autoResumeWaitMs ?? sandboxLimitsApi.autoResumeWaitMsDefault
      const res = await Promise.race([
        waking,
        new Promise<'waiting'>((r) => (timer = setTimeout(() => r('waiting'), waitMs))),
      ])
      clearTimeout(timer)
      if (res === 'waiting')
        throw new S0Error('unavailable', `sandbox ${id} is waking up`, { retryAfterS: 1 })
      row = res
    }
    if (row.status !== 'running' || !this.host.live.has(id)) {
      const why = row.statusReason ? `: ${row.statusReason}` : ''
      throw new S0Error('sandbox_not_running', `sandbox ${id} is ${row.status}${why}`)
    }
    // A row write while we read may have dropped an entry we would now put back stale.
    this.store.remember(row, gen)
    return row
  }

  /** The host path of a running sandbox's root (files API); a paused one is woken first. */
  async rootfs(teamId: TeamId, id: string): Promise<string> {
    await this.running(teamId, id)
    return this.host.runtimeOf(id).get(id).rootfs
  }

  /** What the claim reports in `bootstrap_mounts`. */
  mountStatus(id: string): MountStatus[] {
    return (this.host.live.get(id)?.volumes ?? []).map((v) => v.status)
  }

  /** PUT: env_vars (omitted = keep, {} = clear), memory (applied live), ttl / hard_ttl (from now), network, auto_resume. */
  async update(teamId: TeamId, id: string, cfg: SandboxConfig): Promise<SandboxRow> {
    const row = await this.store.get(teamId, id)
    const config = { ...row.config }
    if (cfg.env_vars !== undefined) config.env_vars = cfg.env_vars
    if (cfg.network !== undefined) config.network = cfg.network
    if (cfg.auto_resume !== undefined) config.auto_resume = cfg.auto_resume
    if (cfg.resources?.memory !== undefined) {
      config.memory_bytes = checkedMemory(cfg.resources.memory, 'resources.memory')
      config.resources = { memory: cfg.resources.memory }
      if (row.status === 'running' && this.host.live.has(id))
        await this.host.runtimeOf(id).setResources(id, { memoryBytes: config.memory_bytes })
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
      [id, JSON.stringify(config), ttl, cfg.hard_ttl ?? null],
    )
    this.store.written(id)
    return this.store.get(teamId, id)
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
      [id, ttl, hard],
    )
    this.store.written(id)
    return this.store.get(teamId, id)
  }

  async delete(teamId: TeamId, id: string): Promise<void> {
    await this.store.get(teamId, id)
    await this.remove(id)
  }

  /** hard_ttl: delete. ttl: pause. Expired rootfs snapshots go; warm pools fill. */
  async sweep(): Promise<void> {
    if (this.sweeping) return
    this.sweeping = true
    try {
      const hard = await this.store.db.query<{ id: string }>(
        `SELECT id FROM sandboxes WHERE host = $1 AND hard_expires_at < now() AND status NOT IN ('terminating', 'idle')`,
        [this.opts.hostId],
      )
      for (const { id } of hard.rows)
        await this.remove(id).catch((err: unknown) => this.log.warn('hard_ttl delete failed', { id, err }))
      const soft = await this.store.db.query<{ id: string; team_id: TeamId }>(
        `SELECT id, team_id FROM sandboxes WHERE host = $1 AND expires_at < now() AND status = 'running'`,
        [this.opts.hostId],
      )
      for (const { id, team_id } of soft.rows) {
        if (this.lifecycle.busy(id)) continue
        if (!this.host.keepsRootfs || !this.host.live.has(id)) {
          await this.host.stopRuntime(await this.store.rowOf(id)).catch(() => undefined)
          await this.store.setStatus(
            id,
            'failed',
            'ttl expired and this server cannot pause sandboxes: it was stopped',
          )
          continue
        }
        await this.pause(team_id, id)
          .then(() =>
            this.store.setReason(id, 'paused: its ttl expired (resume it, or call it: auto_resume wakes it)'),
          )
          .catch((err: unknown) => this.log.warn('ttl pause failed', { id, err }))
      }
      if (this.host.keepsRootfs) {
        await this.host.checkpoints.deleteExpiredSnapshots()
        if (Date.now() - this.lastOrphanSweep > ORPHAN_SWEEP_EVERY_MS) {
          this.lastOrphanSweep = Date.now()
          await this.host.checkpoints.sweepOrphans(sandboxLimitsApi.orphanGraceMs)
        }
      }
      if (this.defaultDriver) await this.warm.pool.tick()
    } catch (err) {
      this.log.warn('sweep failed', { err })
    } finally {
      this.sweeping = false
    }
  }

  /**
   * Stops the sweeper and the contexts. Sandboxes keep running (the next start adopts those it
   * can, and pauses those it cannot, with their files) unless `stopSandboxes`, which removes
   * every sandbox of this server (tests, host teardown). Warm sandboxes always go.
   */
  async close(opts: { stopSandboxes?: boolean } = {}): Promise<void> {
    clearInterval(this.sweeper)
    while (this.sweeping) await new Promise((r) => setTimeout(r, 20))
    await this.warm.pool.idle()
    await this.lifecycle.idle()
    await this.host.contexts.closeAll()
    const { rows } = await this.store.db.query<{ id: string; status: SandboxStatus }>(
      `SELECT id, status FROM sandboxes WHERE host = $1`,
      [this.opts.hostId],
    )
    for (const r of rows) {
      if (r.status !== 'idle' && !opts.stopSandboxes) continue
      await this.remove(r.id).catch((err: unknown) =>
        this.log.warn('delete at close failed', { id: r.id, err }),
      )
    }
  }
}
