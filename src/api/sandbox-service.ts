// Claimed sandboxes: Postgres rows (the truth for the API) over SandboxRuntime (the processes).
// Owns the lifecycle (claim, update, refresh, delete), the TTL sweeper (ttl stops, hard_ttl
// deletes), reconcile at start (adopt what still runs, fail what was lost, clean leaks), and the
// contexts of every sandbox. One SandboxRuntime per OCI driver, each with its own state dir,
// cgroup parent and netns prefix, so reconciling one never touches another's sandboxes.
import { access, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { randomHexId, type TeamId } from '../core/ids.js'
import { silentLogger, type Logger } from '../core/log.js'
import { CGROUP_ROOT } from '../runtime/cgroups.js'
import { prepareCrunHost } from '../runtime/crun.js'
import { makeDriver, pickDriver } from '../runtime/detect.js'
import { DRIVER_NAMES, type DriverName } from '../runtime/driver.js'
import { SandboxRuntime } from '../runtime/sandbox-runtime.js'
import type { BindMount } from '../runtime/bundle.js'
import type { MountManager } from '../fuse/mounts.js'
import type { TemplateStore } from '../runtime/templates.js'
import { ContextManager, contextLimits } from './context-manager.js'
import { checkedMemory, cpuForMemory, TemplateCatalog } from './template-catalog.js'

export const sandboxLimitsApi = {
  sweepIntervalMs: 1_000,
  activeSandboxesPerTeamMax: 100,
  ttlSecMax: 30 * 24 * 3600,
  listLimitDefault: 50,
  listLimitMax: 200,
} as const

export type SandboxStatus = 'starting' | 'running' | 'paused' | 'terminating' | 'failed'
export const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,62}$/
const NETNS_LETTER: Record<DriverName, string> = { runc: 'r', crun: 'c', runsc: 'g' }

/** The claim / update config, in its wire shape. */
export interface SandboxConfig {
  env_vars?: Record<string, string>
  resources?: { memory?: string }
  ttl?: number
  hard_ttl?: number
  network?: Record<string, unknown>
  auto_resume?: boolean
  webhook?: Record<string, unknown>
  services?: unknown[]
}

export interface SandboxRow {
  id: string
  teamId: string
  templateId: string
  status: SandboxStatus
  statusReason: string
  config: SandboxConfig & {
    memory_bytes: number
    cpu_millis: number
    pids_max: number
    /** Volumes mounted at claim (Sandbox0's `mounts`). */
    mounts?: VolumeMountRequest[]
  }
  driver: DriverName
  runtimeGeneration: number
  claimedAt: Date
  expiresAt: Date | null
  hardExpiresAt: Date | null
  createdAt: Date
  updatedAt: Date
}

interface Row {
  id: string
  team_id: string
  template_id: string
  status: SandboxStatus
  status_reason: string
  config: SandboxRow['config']
  driver: DriverName
  runtime_generation: number
  claimed_at: Date
  expires_at: Date | null
  hard_expires_at: Date | null
  created_at: Date
  updated_at: Date
}

function toRow(r: Row): SandboxRow {
  return {
    id: r.id,
    teamId: r.team_id,
    templateId: r.template_id,
    status: r.status,
    statusReason: r.status_reason,
    config: r.config,
    driver: r.driver,
    runtimeGeneration: r.runtime_generation,
    claimedAt: r.claimed_at,
    expiresAt: r.expires_at,
    hardExpiresAt: r.hard_expires_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

export interface SandboxServiceOptions {
  db: Db
  templates: TemplateStore
  /** Runtime state: `<stateDir>/<driver>/...`. */
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
  /** FUSE mounts of this host: volumes at claim. Without it, claim `mounts` are not supported. */
  mounts?: MountManager
  log?: Logger
}

export interface VolumeMountRequest {
  sandboxvolume_id: string
  mount_point: string
}

/** Sandbox0's MountStatus, as the claim answers it in `bootstrap_mounts`. */
export interface MountStatus {
  sandboxvolume_id: string
  mount_point: string
  state: 'mounted'
  mounted_at: string
  mounted_duration_sec: number
}

export interface ClaimRequest {
  template: string
  config?: SandboxConfig
  mounts?: VolumeMountRequest[]
  snapshot_id?: string
}

export class SandboxService {
  readonly catalog: TemplateCatalog
  readonly contexts: ContextManager
  private readonly runtimes = new Map<DriverName, SandboxRuntime>()
  /** Which runtime runs each live sandbox of this server. */
  private readonly driverOf = new Map<string, DriverName>()
  /** Rows of running sandboxes served here (see `running`), bounded by the sandboxes we run. */
  private readonly runningRows = new Map<string, SandboxRow>()
  private rowWrites = 0
  /** Volumes each sandbox of this process mounted at claim (unmounted when it stops). */
  private readonly volumeMounts = new Map<string, Array<{ mountId: string; status: MountStatus }>>()
  private defaultDriver: DriverName | undefined
  private runtimeError: unknown
  private sweeper: NodeJS.Timeout | undefined
  private sweeping = false
  private crunReady: Promise<unknown> | undefined
  private readonly log: Logger

  private constructor(private readonly opts: SandboxServiceOptions) {
    this.catalog = new TemplateCatalog(opts.db, opts.templates)
    this.log = (opts.log ?? silentLogger).child({ component: 'sandboxes' })
    this.contexts = new ContextManager((id, argv, o) => this.runtimeOf(id).exec(id, argv, o))
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
    const driver = this.driverOf.get(id)
    if (!driver) throw new S0Error('sandbox_not_running', `sandbox ${id} is not running on this server`)
    return this.runtimeFor(driver)
  }

  /** Adopts this server's sandboxes that still run; marks the others failed; removes leaks. */
  async reconcile(): Promise<{ adopted: string[]; failed: string[] }> {
    const { rows } = await this.opts.db.query<Row>(
      `SELECT * FROM sandboxes WHERE host = $1 AND status IN ('starting', 'running', 'terminating')`,
      [this.opts.hostId],
    )
    const adopted = new Set<string>()
    for (const driver of DRIVER_NAMES) {
      const used = rows.some((r) => r.driver === driver)
      const dirExists = await access(path.join(this.opts.stateDir, driver)).then(
        () => true,
        () => false,
      )
      if (!used && !dirExists) continue
      const known = rows.filter((r) => r.driver === driver && r.status === 'running').map((r) => r.id)
      try {
        const report = await this.runtimeFor(driver).reconcile(known)
        for (const id of report.adopted) {
          adopted.add(id)
          this.driverOf.set(id, driver)
        }
      } catch (err) {
        this.log.warn('reconcile failed', { driver, err })
      }
    }
    const failed: string[] = []
    for (const r of rows) {
      if (adopted.has(r.id)) continue
      if (r.status === 'terminating') {
        await this.opts.db.query('DELETE FROM sandboxes WHERE id = $1', [r.id])
        continue
      }
      failed.push(r.id)
      await this.setStatus(r.id, 'failed', 'its processes were gone when the server restarted')
    }
    this.log.info('sandboxes reconciled', { adopted: [...adopted], failed })
    return { adopted: [...adopted], failed }
  }

  async claim(teamId: TeamId, req: ClaimRequest): Promise<SandboxRow> {
    if (req.snapshot_id !== undefined)
      throw new S0Error('not_supported', 'claiming from a rootfs snapshot is not supported yet')
    const wanted = this.checkMounts(req.mounts ?? [])
    const cfg = req.config ?? {}
    const tpl = await this.catalog.resolve(teamId, req.template)
    const memoryBytes =
      cfg.resources?.memory !== undefined
        ? checkedMemory(cfg.resources.memory, 'resources.memory')
        : tpl.memoryBytes
    const cpuMillis = cfg.resources?.memory !== undefined ? cpuForMemory(memoryBytes) : tpl.cpuMillis
    const driver = tpl.row.driver ?? this.defaultDriver
    if (!driver) throw this.runtimeError ?? new S0Error('runtime_unavailable', 'no OCI runtime')
    // A template may name a driver the start-up probe did not pick: crun then needs its host step.
    if (driver === 'crun') await (this.crunReady ??= prepareCrunHost())
    const active = await this.opts.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sandboxes WHERE team_id = $1 AND status IN ('starting', 'running')`,
      [teamId],
    )
    if ((active.rows[0]?.n ?? 0) >= sandboxLimitsApi.activeSandboxesPerTeamMax)
      throw new S0Error(
        'quota_exceeded',
        `a team may run at most ${sandboxLimitsApi.activeSandboxesPerTeamMax} sandboxes`,
      )
    const id = `sb-${randomHexId(6)}`
    const config = {
      ...cfg,
      memory_bytes: memoryBytes,
      cpu_millis: cpuMillis,
      pids_max: tpl.pidsMax,
      ...(wanted.length > 0 ? { mounts: wanted } : {}),
    }
    await this.opts.db.query(
      `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host, expires_at, hard_expires_at)
       VALUES ($1, $2, $3, 'starting', $4, $5, $6,
               CASE WHEN $7::int > 0 THEN now() + make_interval(secs => $7::int) END,
               CASE WHEN $8::int > 0 THEN now() + make_interval(secs => $8::int) END)`,
      [
        id,
        teamId,
        tpl.row.id,
        JSON.stringify(config),
        driver,
        this.opts.hostId,
        cfg.ttl ?? 0,
        cfg.hard_ttl ?? 0,
      ],
    )
    try {
      const binds = await this.mountVolumes(teamId, id, wanted)
      await this.runtimeFor(driver).start({
        id,
        templateRootfs: tpl.rootfsPath,
        resources: { memoryBytes, cpuMillis, pidsMax: tpl.pidsMax },
        env: { ...tpl.env, ...cfg.env_vars },
        hostname: id,
        ...(binds.length > 0 ? { mounts: binds } : {}),
      })
      this.driverOf.set(id, driver)
    } catch (err) {
      await this.unmountVolumes(id)
      await this.setStatus(id, 'failed', `start failed: ${(err as Error).message}`.slice(0, 2000))
      throw err
    }
    await this.setStatus(id, 'running', '')
    return this.get(teamId, id)
  }

  /**
   * Claim `mounts`: absolute, distinct mount points; each volume once, and not mounted by
   * anything else on this host (one writer per volume: a second claimer gets a conflict).
   */
  private checkMounts(mounts: readonly VolumeMountRequest[]): VolumeMountRequest[] {
    if (mounts.length === 0) return []
    const manager = this.opts.mounts
    if (!manager) throw new S0Error('not_supported', 'this server does not mount volumes')
    const points = new Set<string>()
    const volumes = new Set<string>()
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
      const norm = p.replace(/\/+$/, '').replace(/\/{2,}/g, '/')
      if (points.has(norm)) throw new S0Error('bad_request', `mount_point ${norm} is given twice`)
      if (volumes.has(m.sandboxvolume_id))
        throw new S0Error('bad_request', `volume ${m.sandboxvolume_id} is given twice`)
      if (manager.isMounted(m.sandboxvolume_id))
        throw new S0Error(
          'conflict',
          `volume ${m.sandboxvolume_id} is mounted elsewhere (one writer at a time)`,
        )
      points.add(norm)
      volumes.add(m.sandboxvolume_id)
    }
    return mounts.map((m) => ({
      sandboxvolume_id: m.sandboxvolume_id,
      mount_point: m.mount_point.replace(/\/+$/, ''),
    }))
  }

  /** FUSE-mounts each volume on the host; the runtime bind-mounts them into the sandbox. */
  private async mountVolumes(
    teamId: TeamId,
    id: string,
    wanted: readonly VolumeMountRequest[],
  ): Promise<BindMount[]> {
    const manager = this.opts.mounts
    if (!manager || wanted.length === 0) return []
    const done: Array<{ mountId: string; status: MountStatus }> = []
    this.volumeMounts.set(id, done)
    const binds: BindMount[] = []
    for (const w of wanted) {
      const started = performance.now()
      const info = await manager.mount(teamId, w.sandboxvolume_id)
      done.push({
        mountId: info.id,
        status: {
          sandboxvolume_id: w.sandboxvolume_id,
          mount_point: w.mount_point,
          state: 'mounted',
          mounted_at: info.mountedAt.toISOString(),
          mounted_duration_sec: (performance.now() - started) / 1000,
        },
      })
      binds.push({ hostPath: info.dir, containerPath: w.mount_point, readOnly: false })
    }
    return binds
  }

  /** Unmounts the sandbox's volumes (after its container is gone); failures are logged. */
  private async unmountVolumes(id: string): Promise<void> {
    const done = this.volumeMounts.get(id)
    this.volumeMounts.delete(id)
    const manager = this.opts.mounts
    if (!done || !manager) return
    for (const d of done) {
      await manager
        .unmountById(d.mountId)
        .catch((err: unknown) =>
          this.log.error('volume unmount failed', { sandboxId: id, mountId: d.mountId, err }),
        )
    }
  }

  /** What the claim reports in `bootstrap_mounts`. */
  mountStatus(id: string): MountStatus[] {
    return (this.volumeMounts.get(id) ?? []).map((d) => d.status)
  }

  async get(teamId: TeamId, id: string): Promise<SandboxRow> {
    if (!SANDBOX_ID.test(id)) throw new S0Error('not_found', `no sandbox ${JSON.stringify(id)}`)
    const { rows } = await this.opts.db.query<Row>('SELECT * FROM sandboxes WHERE id = $1 AND team_id = $2', [
      id,
      teamId,
    ])
    const row = rows[0]
    if (!row) throw new S0Error('not_found', `no sandbox ${id}`)
    return toRow(row)
  }

  /**
   * A running sandbox of the team (contexts and files need one). Sandboxes run by this process
   * are answered from memory: every write to their row below drops the entry, so the routes a
   * REPL round trip takes cost no query (~1 ms here).
   */
  async running(teamId: TeamId, id: string): Promise<SandboxRow> {
    const cached = this.runningRows.get(id)
    if (cached && cached.teamId === teamId && this.driverOf.has(id)) return cached
    const gen = this.rowWrites
    const row = await this.get(teamId, id)
    if (row.status !== 'running' || !this.driverOf.has(id)) {
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

  async rootfs(teamId: TeamId, id: string): Promise<string> {
    await this.running(teamId, id)
    return this.runtimeOf(id).get(id).rootfs
  }

  async list(
    teamId: TeamId,
    q: { status?: string; templateId?: string; paused?: boolean; limit?: number; offset?: number },
  ): Promise<{ rows: SandboxRow[]; count: number }> {
    const where = ['team_id = $1']
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
      if (row.status === 'running' && this.driverOf.has(id))
        await setMemoryLimit(this.runtimeOf(id).get(id).cgroupsPath, config.memory_bytes)
    }
    if (cfg.ttl !== undefined) config.ttl = cfg.ttl
    if (cfg.hard_ttl !== undefined) config.hard_ttl = cfg.hard_ttl
    await this.opts.db.query(
      `UPDATE sandboxes SET config = $2, updated_at = now(),
         expires_at = CASE WHEN $3::int IS NULL THEN expires_at WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END,
         hard_expires_at = CASE WHEN $4::int IS NULL THEN hard_expires_at WHEN $4::int > 0 THEN now() + make_interval(secs => $4::int) END
       WHERE id = $1`,
      [id, JSON.stringify(config), cfg.ttl ?? null, cfg.hard_ttl ?? null],
    )
    this.rowWritten(id)
    return this.get(teamId, id)
  }

  /** Restarts both timers from now (`duration` replaces the soft ttl for this period). */
  async refresh(teamId: TeamId, id: string, durationSec?: number): Promise<SandboxRow> {
    const row = await this.get(teamId, id)
    const ttl = durationSec ?? row.config.ttl ?? 0
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

  private async remove(id: string): Promise<void> {
    await this.setStatus(id, 'terminating', '')
    await this.stopRuntime(id)
    await this.opts.db.query('DELETE FROM sandboxes WHERE id = $1', [id])
    this.rowWritten(id)
    this.log.info('sandbox deleted', { id })
  }

  /** Kills the contexts, then the container and everything it had on the host. */
  private async stopRuntime(id: string): Promise<void> {
    await this.contexts.closeSandbox(id)
    const driver = this.driverOf.get(id)
    this.driverOf.delete(id)
    if (driver) await this.runtimeFor(driver).delete(id)
    await this.contexts.closeSandbox(id) // any created while the container was going away
    await this.unmountVolumes(id) // the container no longer holds them
  }

  private async setStatus(id: string, status: SandboxStatus, reason: string): Promise<void> {
    await this.opts.db.query(
      'UPDATE sandboxes SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1',
      [id, status, reason],
    )
    this.rowWritten(id)
  }

  /** hard_ttl: delete. ttl: stop (pause comes later), and say so in status_reason. */
  async sweep(): Promise<void> {
    if (this.sweeping) return
    this.sweeping = true
    try {
      const hard = await this.opts.db.query<{ id: string }>(
        `SELECT id FROM sandboxes WHERE host = $1 AND hard_expires_at < now() AND status <> 'terminating'`,
        [this.opts.hostId],
      )
      for (const { id } of hard.rows)
        await this.remove(id).catch((err: unknown) => this.log.warn('hard_ttl delete failed', { id, err }))
      const soft = await this.opts.db.query<{ id: string }>(
        `SELECT id FROM sandboxes WHERE host = $1 AND expires_at < now() AND status = 'running'`,
        [this.opts.hostId],
      )
      for (const { id } of soft.rows) {
        await this.stopRuntime(id).catch((err: unknown) => this.log.warn('ttl stop failed', { id, err }))
        await this.setStatus(
          id,
          'failed',
          'ttl expired: the sandbox was stopped and its processes and files are gone (pause on ttl is not implemented yet; claim a new sandbox)',
        )
        this.log.info('sandbox stopped: ttl expired', { id })
      }
    } catch (err) {
      this.log.warn('sweep failed', { err })
    } finally {
      this.sweeping = false
    }
  }

  /**
   * Stops the sweeper and the contexts. Sandboxes keep running (the next start adopts them)
   * unless `stopSandboxes`, which removes every sandbox of this server (tests, host teardown).
   */
  async close(opts: { stopSandboxes?: boolean } = {}): Promise<void> {
    clearInterval(this.sweeper)
    while (this.sweeping) await new Promise((r) => setTimeout(r, 20))
    await this.contexts.closeAll()
    if (opts.stopSandboxes) {
      for (const id of [...this.driverOf.keys()]) {
        await this.remove(id).catch((err: unknown) => this.log.warn('delete at close failed', { id, err }))
      }
    }
  }
}

/** cgroup v1: the memory+swap limit must stay >= the memory limit at every step. */
async function setMemoryLimit(cgroupsPath: string, bytes: number): Promise<void> {
  const dir = path.join(CGROUP_ROOT, 'memory', cgroupsPath)
  const limit = path.join(dir, 'memory.limit_in_bytes')
  const memsw = path.join(dir, 'memory.memsw.limit_in_bytes')
  const hasSwap = await access(memsw).then(
    () => true,
    () => false,
  )
  try {
    if (hasSwap) await writeFile(memsw, String(bytes)).catch(() => undefined) // fails when shrinking: retried below
    await writeFile(limit, String(bytes))
    if (hasSwap) await writeFile(memsw, String(bytes))
  } catch (err) {
    throw new S0Error('conflict', `memory limit ${bytes} cannot be applied now: ${(err as Error).message}`)
  }
}

export function isoOrNull(d: Date | null): string | null {
  return d ? d.toISOString() : null
}
