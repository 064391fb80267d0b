// Claimed sandboxes: Postgres rows (the truth for the API) over SandboxRuntime (the processes)
// and the volume engine (their root file systems beyond the template, and their volumes).
// Owns the lifecycle: claim (cold, from a warm pool, or from a rootfs snapshot), update,
// refresh, pause (capture the writable root into a checkpoint, stop), resume (a new runtime
// generation over the checkpoint, fetched lazily), rootfs snapshots, fork, restore, delete; the
// sweeper (ttl pauses, hard_ttl deletes, expired snapshots, warm pools); and reconcile at start
// (adopt what still runs, capture what a crash stopped, clean every leak).
import { access, rm } from 'node:fs/promises'
import path from 'node:path'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { randomHexId, type TeamId } from '../core/ids.js'
import { silentLogger, type Logger } from '../core/log.js'
import type { MountManager } from '../fuse/mounts.js'
import { prepareCrunHost } from '../runtime/crun.js'
import { makeDriver, pickDriver } from '../runtime/detect.js'
import { DRIVER_NAMES, type DriverName } from '../runtime/driver.js'
import type { CaptureManifest, CaptureStats } from '../runtime/rootfs-capture.js'
import { SandboxRuntime } from '../runtime/sandbox-runtime.js'
import type { BindMount } from '../runtime/bundle.js'
import type { TemplateStore } from '../runtime/templates.js'
import { ContextManager, contextLimits } from './context-manager.js'
import { RootfsStore, type RootfsSnapshotRow } from './sandbox-rootfs.js'
import { poolKey, poolSpec, poolTarget, WarmPool, type PoolHost } from './sandbox-pool.js'
import {
  sandboxLimitsApi,
  SANDBOX_ID,
  teamOf,
  toRow,
  type ClaimRequest,
  type MountStatus,
  type Row,
  type SandboxConfig,
  type SandboxRow,
  type SandboxStatus,
  type StoredConfig,
  type VolumeMountRequest,
} from './sandbox-rows.js'
import {
  checkedMemory,
  cpuForMemory,
  TemplateCatalog,
  type ResolvedTemplate,
  type TemplateRow,
  type WarmProcessSpec,
} from './template-catalog.js'

export { isoOrNull, sandboxLimitsApi, SANDBOX_ID } from './sandbox-rows.js'
export type { ClaimRequest, MountStatus, SandboxConfig, SandboxRow, SandboxStatus, VolumeMountRequest }

const NETNS_LETTER: Record<DriverName, string> = { runc: 'r', crun: 'c', runsc: 'g' }
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

/** What this process holds for a sandbox it runs. */
interface Live {
  driver: DriverName
  templateDir: string
  /** The checkpoint under the overlay (read-only FUSE mount). */
  lower?: { mountId: string; volumeId: string; dir: string }
  volumes: Array<{ mountId: string; volumeId: string; status: MountStatus }>
  /** Volume mount points: never part of a capture. */
  exclude: string[]
  /** This generation's capture target (snapshots of the running sandbox capture into it). */
  work?: { volumeId: string; manifest?: CaptureManifest }
}

type OpKind = 'pause' | 'resume' | 'snapshot' | 'fork' | 'restore' | 'delete'

export class SandboxService implements PoolHost {
  readonly catalog: TemplateCatalog
  readonly contexts: ContextManager
  readonly pool: WarmPool
  private readonly rootfsStore: RootfsStore | undefined
  private readonly runtimes = new Map<DriverName, SandboxRuntime>()
  private readonly live = new Map<string, Live>()
  /** Rows of running sandboxes served here (see `running`), bounded by the sandboxes we run. */
  private readonly runningRows = new Map<string, SandboxRow>()
  private rowWrites = 0
  /** One lifecycle operation per sandbox at a time. */
  private readonly ops = new Map<string, { kind: OpKind; done: Promise<unknown> }>()
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
    this.contexts = new ContextManager((id, argv, o) => this.runtimeOf(id).exec(id, argv, o))
    this.rootfsStore = opts.mounts
      ? new RootfsStore({ db: opts.db, mounts: opts.mounts, log: this.log })
      : undefined
    this.pool = new WarmPool({ db: opts.db, hostId: opts.hostId, log: this.log, host: this })
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
    await svc.reconcile()
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

  private get checkpoints(): RootfsStore {
    if (!this.rootfsStore)
      throw new S0Error('not_supported', 'this server keeps no root-filesystem state (no volume engine)')
    return this.rootfsStore
  }

  private runtimeFor(driver: DriverName): SandboxRuntime {
    let rt = this.runtimes.get(driver)
    if (!rt) {
      const stateDir = path.join(this.opts.stateDir, driver)
      rt = new SandboxRuntime({
        stateDir,
        driver: makeDriver(driver, stateDir),
        cgroupPrefix: `${this.opts.cgroupPrefix ?? 's0'}-${driver}`,
        netnsPrefix: `${this.opts.netnsPrefix ?? 's0-'}${NETNS_LETTER[driver]}-`,
        ...(this.opts.log ? { log: this.opts.log } : {}),
      })
      this.runtimes.set(driver, rt)
    }
    return rt
  }

  private runtimeOf(id: string): SandboxRuntime {
    const live = this.live.get(id)
    if (!live) throw new S0Error('sandbox_not_running', `sandbox ${id} is not running on this server`)
    return this.runtimeFor(live.driver)
  }

  private memoryImageDir(id: string): string {
    return path.join(this.opts.stateDir, 'memory', id)
  }

  // ---- reconcile -------------------------------------------------------------------------------

  /**
   * After a restart: sandboxes that still run and need nothing this process served (no
   * checkpoint under their root, no volumes) are adopted. Those that did (their FUSE mounts died
   * with the old process) and those whose processes are gone are stopped and their writable root
   * captured: they come back paused with every file. Warm sandboxes, half-made claims, captures
   * and deletions cut short are cleaned up; the runtimes remove every other leak.
   */
  async reconcile(): Promise<{ adopted: string[]; paused: string[]; failed: string[] }> {
    const { rows: raw } = await this.opts.db.query<Row>(
      `SELECT * FROM sandboxes WHERE host = $1 AND status IN ('idle', 'starting', 'running', 'terminating')`,
      [this.opts.hostId],
    )
    const rows = raw.map(toRow)
    const adoptable = (r: SandboxRow): boolean =>
      r.status === 'running' && r.rootfsVolumeId === null && (r.config.mounts ?? []).length === 0
    const adopted = new Set<string>()
    const kept = new Set<string>()
    for (const driver of DRIVER_NAMES) {
      const used = rows.some((r) => r.driver === driver)
      const dirExists = await access(path.join(this.opts.stateDir, driver)).then(
        () => true,
        () => false,
      )
      if (!used && !dirExists) continue
      const mine = rows.filter((r) => r.driver === driver)
      try {
        const report = await this.runtimeFor(driver).reconcile(
          mine.filter(adoptable).map((r) => r.id),
          { keep: this.rootfsStore ? mine.filter((r) => r.status === 'running').map((r) => r.id) : [] },
        )
        for (const id of report.adopted) adopted.add(id)
        for (const id of report.kept) kept.add(id)
      } catch (err) {
        this.log.warn('reconcile failed', { driver, err })
      }
    }
    const paused: string[] = []
    const failed: string[] = []
    for (const r of rows) {
      if (r.workVolumeId && !kept.has(r.id)) await this.dropWork(r)
      if (adopted.has(r.id)) {
        const templateDir = await this.templateDirOf(r)
        this.live.set(r.id, { driver: r.driver, templateDir, volumes: [], exclude: [] })
        continue
      }
      if (kept.has(r.id)) {
        if (await this.recoverStopped(r)) paused.push(r.id)
        else failed.push(r.id)
        continue
      }
      if (r.status === 'terminating' || r.status === 'idle') {
        await this.finishRemoval(r)
        continue
      }
      failed.push(r.id)
      await this.setStatus(
        r.id,
        'failed',
        'its processes were gone when the server restarted' +
          (r.rootfsVolumeId ? '; its last checkpoint is intact (fork or snapshot it)' : ''),
      )
    }
    await this.opts.mounts?.sweepStale()
    this.log.info('sandboxes reconciled', { adopted: [...adopted], paused, failed })
    return { adopted: [...adopted], paused, failed }
  }

  /** A sandbox a crash stopped, with its upper kept: capture it and leave it paused. */
  private async recoverStopped(r: SandboxRow): Promise<boolean> {
    const rt = this.runtimeFor(r.driver)
    try {
      await this.dropWork(r)
      const target = await this.newWork(r)
      const templateDir = await this.templateDirOf(r)
      await this.checkpoints.capture({
        teamId: teamOf(r),
        target,
        upperDir: rt.get(r.id).upperDir,
        templateDir,
        exclude: (r.config.mounts ?? []).map((m) => m.mount_point),
      })
      await this.checkpoints.release(teamOf(r), target)
      await this.commitPause(
        r,
        target,
        'the server restarted: the sandbox was paused with its files (its processes were lost); resume it',
      )
      return true
    } catch (err) {
      this.log.error('capture after restart failed', { id: r.id, err })
      await this.setStatus(
        r.id,
        'failed',
        `its files could not be captured after the server restarted: ${(err as Error).message}`.slice(
          0,
          2000,
        ),
      )
      return false
    } finally {
      await rt
        .delete(r.id)
        .catch((err: unknown) => this.log.warn('cleanup after recovery', { id: r.id, err }))
    }
  }

  // ---- claim -----------------------------------------------------------------------------------

  async claim(teamId: TeamId, req: ClaimRequest): Promise<SandboxRow> {
    const cfg = req.config ?? {}
    const tpl = await this.catalog.resolve(teamId, req.template)
    const wanted = this.checkMounts(req.mounts ?? [], tpl)
    const config = this.claimConfig(tpl, cfg, wanted)
    const driver = tpl.row.driver ?? this.defaultDriver
    if (!driver) throw this.runtimeError ?? new S0Error('runtime_unavailable', 'no OCI runtime')
    // A template may name a driver the start-up probe did not pick: crun then needs its host step.
    if (driver === 'crun') await (this.crunReady ??= prepareCrunHost())
    await this.checkQuota(teamId)
    if (wanted.length === 0 && req.snapshot_id === undefined) {
      const warm = await this.takeWarm(teamId, tpl, config, cfg)
      if (warm) return warm
    }
    let rootfsVolumeId: string | null = null
    if (req.snapshot_id !== undefined) {
      const snap = await this.checkpoints.getSnapshot(teamId, req.snapshot_id)
      rootfsVolumeId = await this.checkpoints.newTarget(teamId, snap.volumeId)
    }
    const id = `sb-${randomHexId(6)}`
    await this.opts.db.query(
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
    const row = await this.rowOf(id)
    try {
      await this.startRuntime(row)
    } catch (err) {
      await this.setStatus(id, 'failed', `start failed: ${(err as Error).message}`.slice(0, 2000))
      throw err
    }
    await this.setStatus(id, 'running', '')
    return this.get(teamId, id)
  }

  private async checkQuota(teamId: TeamId): Promise<void> {
    const active = await this.opts.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sandboxes WHERE team_id = $1 AND status IN ('starting', 'running') AND pool_key IS NULL`,
      [teamId],
    )
    if ((active.rows[0]?.n ?? 0) >= sandboxLimitsApi.activeSandboxesPerTeamMax)
      throw new S0Error(
        'quota_exceeded',
        `a team may run at most ${sandboxLimitsApi.activeSandboxesPerTeamMax} sandboxes`,
        { retryAfterS: 5 },
      )
  }

  /** The stored config of a sandbox of this template with this claim config. */
  private claimConfig(
    tpl: ResolvedTemplate & { rootfsPath: string },
    cfg: SandboxConfig,
    mounts: readonly VolumeMountRequest[],
  ): StoredConfig {
    const memoryBytes =
      cfg.resources?.memory !== undefined
        ? checkedMemory(cfg.resources.memory, 'resources.memory')
        : tpl.memoryBytes
    return {
      ...cfg,
      memory_bytes: memoryBytes,
      cpu_millis: cfg.resources?.memory !== undefined ? cpuForMemory(memoryBytes) : tpl.cpuMillis,
      pids_max: tpl.pidsMax,
      ...(mounts.length > 0 ? { mounts: [...mounts] } : {}),
      template: { rootfs: tpl.row.rootfs, env: tpl.env, mount_paths: tpl.mountPaths },
    }
  }

  /**
   * Claim `mounts`: absolute, distinct mount points; each volume once. One writer per volume:
   * a writable mount needs the volume mounted nowhere else, a read-only one needs no writer.
   * Read-only when the claim says so or the template declares the mount point read-only.
   */
  private checkMounts(mounts: readonly VolumeMountRequest[], tpl: ResolvedTemplate): VolumeMountRequest[] {
    if (mounts.length === 0) return []
    const manager = this.opts.mounts
    if (!manager) throw new S0Error('not_supported', 'this server does not mount volumes')
    const points = new Set<string>()
    const volumes = new Set<string>()
    const out: VolumeMountRequest[] = []
    for (const m of mounts) {
      const p = m.mount_point
      if (
        !p.startsWith('/') ||
        p === '/' ||
        p.includes('\0') ||
        p.split('/').some((c) => c === '..' || c === '.')
      )
        throw new S0Error(
          'bad_request',
          `mount_point must be an absolute path without . or .. (${JSON.stringify(p)})`,
        )
      const norm = p.replace(/\/{2,}/g, '/').replace(/\/+$/, '')
      if (norm === '/tmp' || norm.startsWith('/proc') || norm.startsWith('/dev') || norm.startsWith('/sys'))
        throw new S0Error('bad_request', `mount_point ${norm} is reserved`)
      if (points.has(norm)) throw new S0Error('bad_request', `mount_point ${norm} is given twice`)
      if (volumes.has(m.sandboxvolume_id))
        throw new S0Error('bad_request', `volume ${m.sandboxvolume_id} is given twice`)
      const readOnly = m.read_only ?? tpl.readOnlyMountPaths.includes(norm)
      const others = manager.mountsOf(m.sandboxvolume_id)
      if (readOnly ? others.some((o) => !o.readOnly) : others.length > 0)
        throw new S0Error(
          'conflict',
          `volume ${m.sandboxvolume_id} is mounted ${readOnly ? 'for writing ' : ''}elsewhere (one writer at a time)`,
        )
      points.add(norm)
      volumes.add(m.sandboxvolume_id)
      out.push({
        sandboxvolume_id: m.sandboxvolume_id,
        mount_point: norm,
        ...(readOnly ? { read_only: true } : {}),
      })
    }
    return out
  }

  // ---- warm pools --------------------------------------------------------------------------------

  /** PoolHost: starts one warm sandbox of the template, idle once its warm processes are ready. */
  async startWarm(t: TemplateRow, key: string, spec: string): Promise<void> {
    const tpl = await this.catalog.resolveRow(t)
    const driver = t.driver ?? this.defaultDriver
    if (!driver) throw this.runtimeError ?? new S0Error('runtime_unavailable', 'no OCI runtime')
    if (driver === 'crun') await (this.crunReady ??= prepareCrunHost())
    const id = `sb-${randomHexId(6)}`
    await this.opts.db.query(
      `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host, pool_key, pool_spec)
       VALUES ($1, $2, $3, 'starting', $4, $5, $6, $7, $8)`,
      [
        id,
        t.teamId,
        t.id,
        JSON.stringify(this.claimConfig(tpl, {}, [])),
        driver,
        this.opts.hostId,
        key,
        spec,
      ],
    )
    try {
      await this.startRuntime(await this.rowOf(id))
      await this.startWarmProcesses(id, tpl.warmProcesses, tpl.env)
    } catch (err) {
      await this.remove(id).catch(() => undefined)
      throw err
    }
    const { rowCount } = await this.opts.db.query(
      `UPDATE sandboxes SET status = 'idle', updated_at = now() WHERE id = $1 AND status = 'starting'`,
      [id],
    )
    if (rowCount === 0) await this.remove(id) // removed meanwhile (template changed, shutdown)
  }

  /** Starts the template's warm processes and waits until each is ready. */
  private async startWarmProcesses(
    id: string,
    specs: readonly WarmProcessSpec[],
    env: Record<string, string>,
  ): Promise<void> {
    for (const w of specs) {
      const ctx = await this.contexts.create(id, {
        type: w.type,
        warm: true,
        env,
        ...(w.type === 'repl' ? { alias: w.alias } : { command: w.command }),
      })
      if (w.type !== 'cmd') continue // a REPL is ready when create returns (its first sentinel)
      const r = w.readiness ?? { type: 'process' }
      const timeoutMs = r.timeoutMs ?? 30_000
      let ready: Promise<boolean>
      if (r.type === 'output') ready = ctx.waitForOutput(r.output ?? '')
      else if (r.type === 'delay')
        ready = new Promise((res) => setTimeout(() => res(ctx.running), r.delayMs ?? 0))
      else ready = Promise.resolve(ctx.running)
      let timer: NodeJS.Timeout | undefined
      const ok = await Promise.race([
        ready,
        new Promise<boolean>((res) => (timer = setTimeout(() => res(false), timeoutMs))),
      ])
      clearTimeout(timer)
      if (!ok || !ctx.running)
        throw new S0Error('runtime_failed', `warm process ${JSON.stringify(w.command)} did not become ready`)
    }
  }

  /**
   * A warm sandbox of the template for this claim, or undefined (none idle). SKIP LOCKED: two
   * claimers never get the same one and never wait for each other.
   */
  private async takeWarm(
    teamId: TeamId,
    tpl: ResolvedTemplate,
    config: StoredConfig,
    cfg: SandboxConfig,
  ): Promise<SandboxRow | undefined> {
    if (poolTarget(tpl.row) === 0) return undefined
    for (let attempt = 0; attempt < 3; attempt++) {
      const { rows } = await this.opts.db.query<Row>(
        `UPDATE sandboxes SET team_id = $4, status = 'running', config = $5, pool_key = NULL,
                claimed_at = now(), created_at = now(), updated_at = now(),
                expires_at = CASE WHEN $6::int > 0 THEN now() + make_interval(secs => $6::int) END,
                hard_expires_at = CASE WHEN $7::int > 0 THEN now() + make_interval(secs => $7::int) END
          WHERE id = (SELECT id FROM sandboxes WHERE status = 'idle' AND pool_key = $1 AND pool_spec = $2 AND host = $3
                       ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING *`,
        [
          poolKey(tpl.row),
          poolSpec(tpl.row),
          this.opts.hostId,
          teamId,
          JSON.stringify(config),
          cfg.ttl ?? 0,
          cfg.hard_ttl ?? 0,
        ],
      )
      void this.pool.tick() // refill behind the claim
      const raw = rows[0]
      if (!raw) return undefined
      const row = toRow(raw)
      this.rowWritten(row.id)
      try {
        const rt = this.runtimeOf(row.id)
        if (!(await rt.alive(row.id))) throw new S0Error('sandbox_not_running', 'warm sandbox died')
        if (config.memory_bytes !== tpl.memoryBytes || config.cpu_millis !== tpl.cpuMillis)
          await rt.setResources(row.id, { memoryBytes: config.memory_bytes, cpuMillis: config.cpu_millis })
        if (cfg.env_vars && Object.keys(cfg.env_vars).length > 0)
          await rt.setEnv(row.id, { ...tpl.env, ...cfg.env_vars })
        return row
      } catch (err) {
        this.log.warn('warm sandbox unusable, trying another', { id: row.id, err })
        await this.remove(row.id).catch(() => undefined)
      }
    }
    return undefined
  }

  // ---- the runtime side --------------------------------------------------------------------------

  private async templateDirOf(row: SandboxRow): Promise<string> {
    const t = row.config.template
    if (t) return this.catalog.rootfsPath(t.rootfs)
    // Rows from before template snapshots were stored: the template as it is now.
    return (await this.catalog.resolve(teamOf(row), row.templateId)).rootfsPath
  }

  /** Mounts what the sandbox needs (checkpoint, volumes) and starts its container. */
  private async startRuntime(row: SandboxRow, o: { restoreImage?: string } = {}): Promise<void> {
    const teamId = teamOf(row)
    const mounts = row.config.mounts ?? []
    const live: Live = {
      driver: row.driver,
      templateDir: await this.templateDirOf(row),
      volumes: [],
      exclude: mounts.map((m) => m.mount_point),
    }
    try {
      if (row.rootfsVolumeId) {
        const m = await this.checkpoints.mountLower(teamId, row.rootfsVolumeId, row.id)
        live.lower = { mountId: m.id, volumeId: row.rootfsVolumeId, dir: m.dir }
      }
      const binds = await this.mountVolumes(teamId, row.id, mounts, live)
      const cfg = row.config
      await this.runtimeFor(row.driver).start({
        id: row.id,
        templateRootfs: live.templateDir,
        ...(live.lower ? { lowerDirs: [live.lower.dir] } : {}),
        resources: { memoryBytes: cfg.memory_bytes, cpuMillis: cfg.cpu_millis, pidsMax: cfg.pids_max },
        env: { ...cfg.template?.env, ...cfg.env_vars },
        hostname: row.id,
        ...(binds.length > 0 ? { mounts: binds } : {}),
        mkdirs: cfg.template?.mount_paths ?? [],
        ...(o.restoreImage ? { restoreImage: o.restoreImage } : {}),
      })
      this.live.set(row.id, live)
    } catch (err) {
      await this.releaseMounts(teamId, live)
      throw err
    }
  }

  /** FUSE-mounts each volume on the host; the runtime bind-mounts them into the sandbox. */
  private async mountVolumes(
    teamId: TeamId,
    id: string,
    wanted: readonly VolumeMountRequest[],
    live: Live,
  ): Promise<BindMount[]> {
    const manager = this.opts.mounts
    if (!manager || wanted.length === 0) return []
    const binds: BindMount[] = []
    for (const w of wanted) {
      const started = performance.now()
      const volume = await manager.engine.catalog.get(teamId, w.sandboxvolume_id)
      if (volume.kind !== 'volume') throw new S0Error('not_found', `volume ${w.sandboxvolume_id} not found`)
      const readOnly = w.read_only ?? false
      const others = manager.mountsOf(w.sandboxvolume_id)
      if (readOnly ? others.some((o) => !o.readOnly) : others.length > 0)
        throw new S0Error(
          'conflict',
          `volume ${w.sandboxvolume_id} is mounted elsewhere (one writer at a time)`,
        )
      const info = await manager.mount(teamId, w.sandboxvolume_id, { readOnly, sandboxId: id })
      live.volumes.push({
        mountId: info.id,
        volumeId: w.sandboxvolume_id,
        status: {
          sandboxvolume_id: w.sandboxvolume_id,
          mount_point: w.mount_point,
          state: 'mounted',
          mounted_at: info.mountedAt.toISOString(),
          mounted_duration_sec: (performance.now() - started) / 1000,
        },
      })
      binds.push({ hostPath: info.dir, containerPath: w.mount_point, readOnly })
    }
    return binds
  }

  /** Unmounts the sandbox's volumes and its checkpoint (the container is gone); failures are logged. */
  private async releaseMounts(teamId: TeamId, live: Live): Promise<void> {
    const manager = this.opts.mounts
    for (const v of live.volumes.splice(0)) {
      await manager
        ?.unmountById(v.mountId)
        .catch((err: unknown) => this.log.error('volume unmount failed', { mountId: v.mountId, err }))
    }
    const lower = live.lower
    live.lower = undefined
    if (lower)
      await this.checkpoints
        .unmountLower(teamId, lower)
        .catch((err: unknown) => this.log.error('checkpoint unmount failed', { mountId: lower.mountId, err }))
  }

  /**
   * Stops the sandbox's processes and removes what it had on the host. With `capture`, the
   * writable root is first captured into the target volume (durable when this returns); with
   * `memoryImage`, the processes are first saved there (runsc).
   */
  private async stopRuntime(
    row: SandboxRow,
    o: { capture?: { target: string; manifest?: CaptureManifest }; memoryImage?: string } = {},
  ): Promise<CaptureStats | undefined> {
    const id = row.id
    const live = this.live.get(id)
    this.rowWritten(id)
    await this.contexts.closeSandbox(id)
    if (!live) {
      await this.runtimeFor(row.driver).delete(id)
      return undefined
    }
    const rt = this.runtimeFor(live.driver)
    let stats: CaptureStats | undefined
    try {
      if (o.capture) {
        const rec = await rt.stop(id, o.memoryImage ? { memoryImage: o.memoryImage } : {})
        this.live.delete(id)
        await this.contexts.closeSandbox(id) // any created while it stopped
        // Volumes first: the container no longer holds them, and their writes are flushed.
        const volumesOnly = { ...live, lower: undefined }
        await this.releaseMounts(teamOf(row), volumesOnly)
        live.volumes = []
        stats = (
          await this.checkpoints.capture({
            teamId: teamOf(row),
            target: o.capture.target,
            upperDir: rec.upperDir,
            templateDir: live.templateDir,
            exclude: live.exclude,
            ...(o.capture.manifest ? { manifest: o.capture.manifest } : {}),
          })
        ).stats
      }
    } finally {
      this.live.delete(id)
      await rt.delete(id)
      await this.contexts.closeSandbox(id)
      await this.releaseMounts(teamOf(row), live)
    }
    return stats
  }

  /** A capture target for the running generation, recorded on the row before it is written. */
  private async newWork(row: SandboxRow): Promise<string> {
    const target = await this.checkpoints.newTarget(teamOf(row), row.rootfsVolumeId)
    await this.opts.db.query(`UPDATE sandboxes SET work_volume_id = $2 WHERE id = $1`, [row.id, target])
    this.rowWritten(row.id)
    const live = this.live.get(row.id)
    if (live) live.work = { volumeId: target }
    return target
  }

  /** Drops the generation's capture target (a failed capture leaves it in an unknown state). */
  private async dropWork(row: SandboxRow): Promise<void> {
    const live = this.live.get(row.id)
    const target = live?.work?.volumeId ?? row.workVolumeId
    if (live) live.work = undefined
    if (!target) return
    await this.opts.db.query(
      `UPDATE sandboxes SET work_volume_id = NULL WHERE id = $1 AND work_volume_id = $2`,
      [row.id, target],
    )
    this.rowWritten(row.id)
    await this.checkpoints.drop(teamOf(row), target)
  }

  /** The checkpoint is in: the row points at it, and the one before it goes. */
  private async commitPause(
    row: SandboxRow,
    checkpoint: string,
    reason: string,
    memoryImage?: string,
  ): Promise<void> {
    await this.opts.db.query(
      `UPDATE sandboxes SET status = 'paused', status_reason = $2, rootfs_volume_id = $3, work_volume_id = NULL,
              paused_at = now(), updated_at = now(), expires_at = NULL,
              config = CASE WHEN $4::text IS NULL THEN config - 'memory_image' ELSE jsonb_set(config, '{memory_image}', to_jsonb($4::text)) END
        WHERE id = $1`,
      [row.id, reason, checkpoint, memoryImage ?? null],
    )
    this.rowWritten(row.id)
    if (row.rootfsVolumeId && row.rootfsVolumeId !== checkpoint)
      await this.checkpoints
        .drop(teamOf(row), row.rootfsVolumeId)
        .catch((err: unknown) => this.log.warn('old checkpoint not deleted', { id: row.id, err }))
  }

  // ---- lifecycle operations ----------------------------------------------------------------------

  private exclusive<T>(id: string, kind: OpKind, fn: () => Promise<T>): Promise<T> {
    const cur = this.ops.get(id)
    if (cur)
      return Promise.reject(
        new S0Error('conflict', `sandbox ${id} is busy: a ${cur.kind} is in progress`, { retryAfterS: 1 }),
      )
    const done = fn()
    this.ops.set(id, { kind, done })
    const clear = (): void => {
      if (this.ops.get(id)?.done === done) this.ops.delete(id)
    }
    done.then(clear, clear)
    return done
  }

  /**
   * Pause: the writable root is captured (incrementally: into this generation's capture target,
   * which earlier snapshots may have filled already) and the processes stop; with
   * `keepMemory` (runsc), the processes are saved too and resume where they were. Answers when
   * the checkpoint is committed, or after pauseWaitMs with `paused: false` (it goes on).
   */
  async pause(
    teamId: TeamId,
    id: string,
    o: { keepMemory?: boolean } = {},
  ): Promise<{ row: SandboxRow; paused: boolean }> {
    const row = await this.get(teamId, id)
    if (row.status === 'paused' && !this.ops.has(id)) return { row, paused: true }
    const cur = this.ops.get(id)
    const job =
      cur?.kind === 'pause'
        ? (cur.done as Promise<SandboxRow>)
        : this.exclusive(id, 'pause', () => this.doPause(row, o))
    let timer: NodeJS.Timeout | undefined
    const res = await Promise.race([
      job,
      new Promise<'waiting'>((r) => (timer = setTimeout(() => r('waiting'), sandboxLimitsApi.pauseWaitMs))),
    ])
    clearTimeout(timer)
    if (res === 'waiting') {
      job.catch(() => undefined)
      return { row: await this.get(teamId, id), paused: false }
    }
    return { row: res, paused: true }
  }

  private async doPause(row: SandboxRow, o: { keepMemory?: boolean }): Promise<SandboxRow> {
    if (row.status !== 'running')
      throw new S0Error(
        'conflict',
        `sandbox ${row.id} is ${row.status}; only a running sandbox can be paused`,
      )
    const live = this.live.get(row.id)
    if (!live) throw new S0Error('sandbox_not_running', `sandbox ${row.id} is not running on this server`)
    let memoryImage: string | undefined
    if (o.keepMemory) {
      if (!this.runtimeFor(live.driver).driver.memoryCheckpoint)
        throw new S0Error(
          'not_supported',
          `${live.driver} cannot keep process memory across a pause here (runsc can; see docs/ARCHITECTURE.md)`,
        )
      memoryImage = this.memoryImageDir(row.id)
      await rm(memoryImage, { recursive: true, force: true })
    }
    const target = live.work?.volumeId ?? (await this.newWork(row))
    const manifest = this.live.get(row.id)?.work?.manifest
    const started = performance.now()
    let stats: CaptureStats | undefined
    try {
      stats = await this.stopRuntime(row, {
        capture: { target, ...(manifest ? { manifest } : {}) },
        ...(memoryImage ? { memoryImage } : {}),
      })
      await this.checkpoints.release(teamOf(row), target)
    } catch (err) {
      // The processes are gone; the last checkpoint is untouched.
      await this.dropWork({ ...row, workVolumeId: target }).catch(() => undefined)
      await this.setStatus(
        row.id,
        'failed',
        `pause failed: ${(err as Error).message}`.slice(0, 1500) +
          (row.rootfsVolumeId ? '; the last checkpoint is intact (fork or snapshot it)' : ''),
      )
      throw err
    }
    await this.commitPause(row, target, '', memoryImage)
    this.log.info('sandbox paused', { id: row.id, ms: Math.round(performance.now() - started), ...stats })
    return this.get(teamOf(row), row.id)
  }

  /**
   * Resume: a new runtime generation over the last checkpoint (mounted read-only, fetched on
   * demand: the cost does not grow with the root file system's size). Concurrent resumes of one
   * sandbox share one.
   */
  resume(teamId: TeamId, id: string): Promise<SandboxRow> {
    const cur = this.ops.get(id)
    if (cur?.kind === 'resume') return cur.done as Promise<SandboxRow>
    return this.exclusive(id, 'resume', async () => {
      const row = await this.get(teamId, id)
      if (row.status === 'running' && this.live.has(id)) return row
      if (row.status !== 'paused')
        throw new S0Error('conflict', `sandbox ${id} is ${row.status}; only a paused sandbox can be resumed`)
      await this.checkQuota(teamId)
      const image = (row.config as { memory_image?: string }).memory_image
      const hasImage =
        image !== undefined &&
        (await access(image).then(
          () => true,
          () => false,
        ))
      let reason = ''
      try {
        await this.startRuntime(row, hasImage ? { restoreImage: image } : {})
      } catch (err) {
        if (!hasImage)
          throw new S0Error(
            'sandbox_resume_failed',
            `sandbox ${id} could not resume: ${(err as Error).message}`,
            {
              cause: err,
            },
          )
        // The memory image did not restore: its files are in the checkpoint, start it afresh.
        this.log.warn('memory restore failed; resuming with files only', { id, err })
        reason = `its processes could not be restored (${(err as Error).message.slice(0, 300)}); it resumed with its files`
        try {
          await this.startRuntime(row)
        } catch (err2) {
          throw new S0Error(
            'sandbox_resume_failed',
            `sandbox ${id} could not resume: ${(err2 as Error).message}`,
            {
              cause: err2,
            },
          )
        }
      }
      if (image) await rm(image, { recursive: true, force: true })
      const ttl = row.config.ttl ?? 0
      await this.opts.db.query(
        `UPDATE sandboxes SET status = 'running', status_reason = $2, runtime_generation = runtime_generation + 1,
                paused_at = NULL, updated_at = now(), config = config - 'memory_image',
                expires_at = CASE WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END
          WHERE id = $1`,
        [id, reason, ttl],
      )
      this.rowWritten(id)
      this.log.info('sandbox resumed', { id, memory: hasImage && reason === '' })
      return this.get(teamId, id)
    })
  }

  /**
   * The sandbox's root file system now, as a new rootfs volume: a fork of the checkpoint if it
   * is paused (O(1)); if it runs, its processes are frozen while the upper is captured (only
   * what changed since this generation's last capture is read) and then go on.
   */
  private async captureNow(row: SandboxRow): Promise<string> {
    if (row.status === 'paused') return this.checkpoints.newTarget(teamOf(row), row.rootfsVolumeId)
    const live = this.live.get(row.id)
    if (row.status !== 'running' || !live)
      throw new S0Error(
        'conflict',
        `sandbox ${row.id} is ${row.status}; snapshot or fork a running or paused sandbox`,
      )
    const rt = this.runtimeFor(live.driver)
    const target = live.work?.volumeId ?? (await this.newWork(row))
    await rt.freeze(row.id)
    try {
      const { manifest } = await this.checkpoints.capture({
        teamId: teamOf(row),
        target,
        upperDir: rt.get(row.id).upperDir,
        templateDir: live.templateDir,
        exclude: live.exclude,
        ...(live.work?.manifest ? { manifest: live.work.manifest } : {}),
      })
      if (live.work) live.work.manifest = manifest
    } catch (err) {
      await this.dropWork(row).catch(() => undefined)
      throw err
    } finally {
      await rt.thaw(row.id)
    }
    return this.checkpoints.newTarget(teamOf(row), target)
  }

  async createSnapshot(
    teamId: TeamId,
    id: string,
    meta: { name?: string; description?: string; expiresAt?: Date },
  ): Promise<RootfsSnapshotRow> {
    const row = await this.get(teamId, id)
    return this.exclusive(id, 'snapshot', async () => {
      const volume = await this.captureNow(await this.get(teamId, row.id))
      try {
        return await this.checkpoints.createSnapshot(teamId, id, volume, meta)
      } catch (err) {
        await this.checkpoints.drop(teamId, volume)
        throw err
      }
    })
  }

  listSnapshots(teamId: TeamId, id: string): Promise<RootfsSnapshotRow[]> {
    return this.checkpoints.listSnapshots(teamId, id)
  }

  getSnapshot(teamId: TeamId, snapshotId: string): Promise<RootfsSnapshotRow> {
    return this.checkpoints.getSnapshot(teamId, snapshotId)
  }

  deleteSnapshot(teamId: TeamId, snapshotId: string): Promise<void> {
    return this.checkpoints.deleteSnapshot(teamId, snapshotId)
  }

  /** A new paused sandbox with the source's root file system and config (ttl / hard_ttl overridable). */
  async fork(teamId: TeamId, id: string, cfg: { ttl?: number; hard_ttl?: number } = {}): Promise<SandboxRow> {
    await this.get(teamId, id)
    return this.exclusive(id, 'fork', async () => {
      const src = await this.get(teamId, id)
      const volume = await this.captureNow(src)
      const childId = `sb-${randomHexId(6)}`
      const config: StoredConfig = { ...src.config }
      delete config.mounts // one writer per volume: the child starts without the source's volumes
      delete (config as { memory_image?: string }).memory_image
      if (cfg.ttl !== undefined) config.ttl = cfg.ttl
      if (cfg.hard_ttl !== undefined) config.hard_ttl = cfg.hard_ttl
      try {
        await this.opts.db.query(
          `INSERT INTO sandboxes (id, team_id, template_id, status, status_reason, config, driver, host, rootfs_volume_id,
                                  paused_at, hard_expires_at)
           VALUES ($1, $2, $3, 'paused', $4, $5, $6, $7, $8, now(),
                   CASE WHEN $9::int > 0 THEN now() + make_interval(secs => $9::int) END)`,
          [
            childId,
            teamId,
            src.templateId,
            `forked from ${src.id}`,
            JSON.stringify(config),
            src.driver,
            this.opts.hostId,
            volume,
            config.hard_ttl ?? 0,
          ],
        )
      } catch (err) {
        await this.checkpoints.drop(teamId, volume)
        throw err
      }
      return this.get(teamId, childId)
    })
  }

  /** Replaces a paused sandbox's root file system with a snapshot's (O(1)); it stays paused. */
  async restore(teamId: TeamId, id: string, snapshotId: string): Promise<SandboxRow> {
    await this.get(teamId, id)
    return this.exclusive(id, 'restore', async () => {
      const row = await this.get(teamId, id)
      if (row.status !== 'paused')
        throw new S0Error('conflict', `sandbox ${id} is ${row.status}; restore needs a paused sandbox`)
      const snap = await this.checkpoints.getSnapshot(teamId, snapshotId)
      const volume = await this.checkpoints.newTarget(teamId, snap.volumeId)
      await this.commitPause(row, volume, `restored from ${snapshotId}`)
      // Saved processes belong to the files that were replaced.
      await rm(this.memoryImageDir(id), { recursive: true, force: true })
      return this.get(teamId, id)
    })
  }

  // ---- reads -------------------------------------------------------------------------------------

  private async rowOf(id: string): Promise<SandboxRow> {
    const { rows } = await this.opts.db.query<Row>('SELECT * FROM sandboxes WHERE id = $1', [id])
    if (!rows[0]) throw new S0Error('not_found', `no sandbox ${id}`)
    return toRow(rows[0])
  }

  async get(teamId: TeamId, id: string): Promise<SandboxRow> {
    if (!SANDBOX_ID.test(id)) throw new S0Error('not_found', `no sandbox ${JSON.stringify(id)}`)
    const { rows } = await this.opts.db.query<Row>(
      `SELECT * FROM sandboxes WHERE id = $1 AND team_id = $2 AND status <> 'idle'`,
      [id, teamId],
    )
    const row = rows[0]
    if (!row) throw new S0Error('not_found', `no sandbox ${id}`)
    return toRow(row)
  }

  /**
   * A running sandbox of the team (contexts and files need one). A paused one with auto_resume
   * (the default) is resumed, and the call waits up to autoResumeWaitMs for it (503 `unavailable`,
   * "waking up", after that). Sandboxes run by this process are answered from memory: every
   * write to their row drops the entry, so the routes a REPL round trip takes cost no query.
   */
  async running(teamId: TeamId, id: string): Promise<SandboxRow> {
    const cached = this.runningRows.get(id)
    if (cached && cached.teamId === teamId && this.live.has(id) && !this.ops.has(id)) return cached
    const op = this.ops.get(id)
    if (op?.kind === 'pause' || op?.kind === 'delete')
      throw new S0Error(
        'unavailable',
        `sandbox ${id} is ${op.kind === 'pause' ? 'pausing' : 'being deleted'}`,
        {
          retryAfterS: 1,
        },
      )
    if (op && op.kind !== 'resume') await op.done.catch(() => undefined) // a brief freeze (snapshot, fork)
    const gen = this.rowWrites
    let row = await this.get(teamId, id)
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
    if (row.status !== 'running' || !this.live.has(id)) {
      const why = row.statusReason ? `: ${row.statusReason}` : ''
      throw new S0Error('sandbox_not_running', `sandbox ${id} is ${row.status}${why}`)
    }
    // A row write while we read may have dropped an entry we would now put back stale.
    if (gen === this.rowWrites) this.runningRows.set(id, row)
    return row
  }

  /** Drops the cached row after a write to it (see `running`). */
  private rowWritten(id: string): void {
    this.rowWrites++
    this.runningRows.delete(id)
  }

  /** The host path of a running sandbox's root (files API); a paused one is woken first. */
  async rootfs(teamId: TeamId, id: string): Promise<string> {
    await this.running(teamId, id)
    return this.runtimeOf(id).get(id).rootfs
  }

  /** What the claim reports in `bootstrap_mounts`. */
  mountStatus(id: string): MountStatus[] {
    return (this.live.get(id)?.volumes ?? []).map((v) => v.status)
  }

  async list(
    teamId: TeamId,
    q: { status?: string; templateId?: string; paused?: boolean; limit?: number; offset?: number },
  ): Promise<{ rows: SandboxRow[]; count: number }> {
    const where = [`team_id = $1`, `status <> 'idle'`]
    const params: unknown[] = [teamId]
    if (q.status !== undefined) where.push(`status = $${params.push(q.status)}`)
    if (q.templateId !== undefined) where.push(`template_id = $${params.push(q.templateId)}`)
    if (q.paused !== undefined) where.push(q.paused ? `status = 'paused'` : `status <> 'paused'`)
    const filter = where.join(' AND ')
    const total = await this.opts.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sandboxes WHERE ${filter}`,
      params,
    )
    const limit = q.limit ?? sandboxLimitsApi.listLimitDefault
    const { rows } = await this.opts.db.query<Row>(
      `SELECT * FROM sandboxes WHERE ${filter} ORDER BY created_at DESC, id LIMIT ${limit} OFFSET ${q.offset ?? 0}`,
      params,
    )
    return { rows: rows.map(toRow), count: total.rows[0]?.n ?? 0 }
  }

  // ---- updates -----------------------------------------------------------------------------------

  /** PUT: env_vars (omitted = keep, {} = clear), memory (applied live), ttl / hard_ttl (from now), network, auto_resume. */
  async update(teamId: TeamId, id: string, cfg: SandboxConfig): Promise<SandboxRow> {
    const row = await this.get(teamId, id)
    const config = { ...row.config }
    if (cfg.env_vars !== undefined) config.env_vars = cfg.env_vars
    if (cfg.network !== undefined) config.network = cfg.network
    if (cfg.auto_resume !== undefined) config.auto_resume = cfg.auto_resume
    if (cfg.resources?.memory !== undefined) {
      config.memory_bytes = checkedMemory(cfg.resources.memory, 'resources.memory')
      config.resources = { memory: cfg.resources.memory }
      if (row.status === 'running' && this.live.has(id))
        await this.runtimeOf(id).setResources(id, { memoryBytes: config.memory_bytes })
    }
    if (cfg.ttl !== undefined) config.ttl = cfg.ttl
    if (cfg.hard_ttl !== undefined) config.hard_ttl = cfg.hard_ttl
    // A paused sandbox's soft ttl starts again when it resumes.
    const ttl = cfg.ttl === undefined || row.status === 'paused' ? null : cfg.ttl
    await this.opts.db.query(
      `UPDATE sandboxes SET config = $2, updated_at = now(),
         expires_at = CASE WHEN $3::int IS NULL THEN expires_at WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END,
         hard_expires_at = CASE WHEN $4::int IS NULL THEN hard_expires_at WHEN $4::int > 0 THEN now() + make_interval(secs => $4::int) END
       WHERE id = $1`,
      [id, JSON.stringify(config), ttl, cfg.hard_ttl ?? null],
    )
    this.rowWritten(id)
    return this.get(teamId, id)
  }

  /** Restarts both timers from now (`duration` replaces the soft ttl for this period). */
  async refresh(teamId: TeamId, id: string, durationSec?: number): Promise<SandboxRow> {
    const row = await this.get(teamId, id)
    const ttl = row.status === 'paused' ? 0 : (durationSec ?? row.config.ttl ?? 0)
    const hard = row.config.hard_ttl ?? 0
    await this.opts.db.query(
      `UPDATE sandboxes SET updated_at = now(),
         expires_at = CASE WHEN $2::int > 0 THEN now() + make_interval(secs => $2::int) END,
         hard_expires_at = CASE WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END
       WHERE id = $1`,
      [id, ttl, hard],
    )
    this.rowWritten(id)
    return this.get(teamId, id)
  }

  async delete(teamId: TeamId, id: string): Promise<void> {
    await this.get(teamId, id)
    await this.remove(id)
  }

  /** PoolHost / delete / hard_ttl: the sandbox and all its state (snapshots outlive it). */
  async remove(id: string): Promise<void> {
    const cur = this.ops.get(id)
    if (cur?.kind === 'delete') {
      await cur.done
      return
    }
    if (cur) await cur.done.catch(() => undefined)
    await this.exclusive(id, 'delete', async () => {
      const row = await this.rowOf(id).catch(() => undefined)
      if (!row) return
      await this.setStatus(id, 'terminating', '')
      await this.stopRuntime(row)
      await this.finishRemoval(row)
      this.log.info('sandbox deleted', { id })
    })
  }

  /** Its volumes and memory image, then the row (a crash in between is finished at start). */
  private async finishRemoval(row: SandboxRow): Promise<void> {
    await this.runtimeFor(row.driver).delete(row.id)
    if (this.rootfsStore) {
      await this.rootfsStore.drop(teamOf(row), row.workVolumeId)
      await this.rootfsStore.drop(teamOf(row), row.rootfsVolumeId)
    }
    await rm(this.memoryImageDir(row.id), { recursive: true, force: true })
    await this.opts.db.query('DELETE FROM sandboxes WHERE id = $1', [row.id])
    this.rowWritten(row.id)
  }

  private async setStatus(id: string, status: SandboxStatus, reason: string): Promise<void> {
    await this.opts.db.query(
      'UPDATE sandboxes SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1',
      [id, status, reason],
    )
    this.rowWritten(id)
  }

  /** hard_ttl: delete. ttl: pause. Expired rootfs snapshots go; warm pools fill. */
  async sweep(): Promise<void> {
    if (this.sweeping) return
    this.sweeping = true
    try {
      const hard = await this.opts.db.query<{ id: string }>(
        `SELECT id FROM sandboxes WHERE host = $1 AND hard_expires_at < now() AND status NOT IN ('terminating', 'idle')`,
        [this.opts.hostId],
      )
      for (const { id } of hard.rows)
        await this.remove(id).catch((err: unknown) => this.log.warn('hard_ttl delete failed', { id, err }))
      const soft = await this.opts.db.query<{ id: string; team_id: TeamId }>(
        `SELECT id, team_id FROM sandboxes WHERE host = $1 AND expires_at < now() AND status = 'running'`,
        [this.opts.hostId],
      )
      for (const { id, team_id } of soft.rows) {
        if (this.ops.has(id)) continue
        if (!this.rootfsStore || !this.live.has(id)) {
          await this.stopRuntime(await this.rowOf(id)).catch(() => undefined)
          await this.setStatus(
            id,
            'failed',
            'ttl expired and this server cannot pause sandboxes: it was stopped',
          )
          continue
        }
        await this.pause(team_id, id)
          .then(() =>
            this.setReason(id, 'paused: its ttl expired (resume it, or call it: auto_resume wakes it)'),
          )
          .catch((err: unknown) => this.log.warn('ttl pause failed', { id, err }))
      }
      if (this.rootfsStore) {
        await this.rootfsStore.deleteExpiredSnapshots()
        if (Date.now() - this.lastOrphanSweep > ORPHAN_SWEEP_EVERY_MS) {
          this.lastOrphanSweep = Date.now()
          await this.rootfsStore.sweepOrphans(sandboxLimitsApi.orphanGraceMs)
        }
      }
      if (this.defaultDriver) await this.pool.tick()
    } catch (err) {
      this.log.warn('sweep failed', { err })
    } finally {
      this.sweeping = false
    }
  }

  private async setReason(id: string, reason: string): Promise<void> {
    await this.opts.db.query(`UPDATE sandboxes SET status_reason = $2 WHERE id = $1 AND status = 'paused'`, [
      id,
      reason,
    ])
    this.rowWritten(id)
  }

  /**
   * Stops the sweeper and the contexts. Sandboxes keep running (the next start adopts those it
   * can, and pauses those it cannot, with their files) unless `stopSandboxes`, which removes
   * every sandbox of this server (tests, host teardown). Warm sandboxes always go.
   */
  async close(opts: { stopSandboxes?: boolean } = {}): Promise<void> {
    clearInterval(this.sweeper)
    while (this.sweeping) await new Promise((r) => setTimeout(r, 20))
    await this.pool.idle()
    for (const p of [...this.ops.values()]) await p.done.catch(() => undefined)
    await this.contexts.closeAll()
    const { rows } = await this.opts.db.query<{ id: string; status: SandboxStatus }>(
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
