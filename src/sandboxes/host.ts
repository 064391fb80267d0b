// The runtime side of sandboxes on this server: the OCI runtimes (one per driver), what this
// process holds for each sandbox it runs (its checkpoint mounted under the overlay, its volumes,
// this generation's capture target), starting and stopping them with their mounts, capture
// targets and checkpoint commits, and reconcile after a restart.
import { access, rm } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import type { SandboxId, TeamId, VolumeId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { MountManager } from '../fuse/mounts.js'
import type { BindMount } from '../runtime/bundle.js'
import { makeDriver } from '../runtime/detect.js'
import { CONTAINERD_RUNTIMES, DRIVER_NAMES, type DriverName, type DriverVia } from '../runtime/driver.js'
import type { CaptureManifest, CaptureStats } from '../runtime/rootfs-capture.js'
import type { SandboxNetwork } from '../runtime/network.js'
import { SandboxRuntime } from '../runtime/sandbox-runtime.js'
import type { SandboxView } from '../runtime/view.js'
import { Checkpoints } from './checkpoints.js'
import { checkOneWriter } from './claim.js'
import { ContextManager } from './contexts/manager.js'
import type { ContextObserver, Spawner } from './contexts/types.js'
import type { AppService } from './services/model.js'
import { ServiceSupervisor } from './services/supervisor.js'
import { SessionManager } from './sessions/index.js'
import { SANDBOX_BUNDLE_PATH, SANDBOX_CA_PATH, type SandboxEgress } from './egress.js'
import type { WatchedVolume } from './files/watch.js'
import { toRow, type MountStatus, type Row, type SandboxRow, type VolumeMountRequest } from './rows.js'
import { assertTransition } from './status.js'
import type { SandboxStore } from './store.js'
import type { SandboxNetworkPolicy } from '../egress/policy/types.js'
import type { TemplateCatalog } from './templates.js'

const NETNS_LETTER: Record<DriverName, string> = { runc: 'r', crun: 'c', runsc: 'g' }

/** What this process holds for a sandbox it runs. */
export interface Live {
  driver: DriverName
  templateDir: string
  /** The checkpoint under the overlay (read-only FUSE mount). */
  lower?: { mountId: string; volumeId: VolumeId; dir: string }
  volumes: Array<{ mountId: string; volumeId: string; status: MountStatus }>
  /** Volume mount points: never part of a capture. */
  exclude: string[]
  /** This generation's capture target (snapshots of the running sandbox capture into it). */
  work?: { volumeId: VolumeId; manifest?: CaptureManifest }
}

export interface SandboxHostOptions {
  /** Hears every context's start, output and exit (events and logs). */
  contextObserver?: ContextObserver
  store: SandboxStore
  catalog: TemplateCatalog
  /** Runtime state: `<stateDir>/<driver>/...`; memory images: `<stateDir>/memory/<id>`. */
  stateDir: string
  hostId: string
  cgroupPrefix?: string
  netnsPrefix?: string
  /** FUSE mounts: volumes at claim and root-filesystem checkpoints (none: neither). */
  mounts?: MountManager
  /**
   * The sandbox network and its egress side (both or neither): each sandbox gets a veth, its
   * traffic goes through the egress proxy by its policy, and it trusts its own CA. None:
   * sandboxes have loopback only.
   */
  network?: { network: SandboxNetwork; egress: SandboxEgress }
  /** The writable root of a sandbox whose stored config has no disk_bytes (older rows). */
  diskBytesDefault?: number
  /**
   * Runtimes driven through our own containerd (S0_RUNTIMES `containerd:<name>`); the others
   * through their CLI. Rows keep the runtime's name either way.
   */
  containerd?: readonly DriverName[]
  log: Logger
}

export class SandboxHost {
  readonly live = new Map<SandboxId, Live>()
  /** The contexts of every sandbox this process runs; they start processes through the runtimes. */
  readonly contexts: ContextManager
  /** The `cmd` / `function` app services of the sandboxes this process runs. */
  readonly supervisor: ServiceSupervisor
  /** The execution sessions of the sandboxes this process runs (their rows live in Postgres). */
  readonly sessions: SessionManager
  private readonly runtimes = new Map<DriverName, SandboxRuntime>()
  private readonly rootfsStore: Checkpoints | undefined
  private readonly store: SandboxStore
  private readonly log: Logger

  constructor(private readonly opts: SandboxHostOptions) {
    this.store = opts.store
    this.log = opts.log
    // Contexts and supervised services start their processes the same way: the sandbox's runtime.
    const spawn: Spawner = (id, argv, o) => this.runtimeOf(id).exec(id, argv, o)
    this.contexts = new ContextManager(spawn, opts.contextObserver)
    this.supervisor = new ServiceSupervisor(spawn, opts.log.child({ component: 'services' }))
    // Sessions too, with a terminal when their io.mode is pty.
    this.sessions = new SessionManager(
      opts.store.db,
      (id, argv, o) => this.runtimeOf(id as SandboxId).exec(id, argv, o),
      opts.log.child({ component: 'sessions' }),
    )
    this.rootfsStore = opts.mounts
      ? new Checkpoints({ db: opts.store.db, mounts: opts.mounts, log: opts.log })
      : undefined
  }

  /** Whether this server keeps root-filesystem state (it has a volume engine and FUSE). */
  get keepsRootfs(): boolean {
    return this.rootfsStore !== undefined
  }

  runtimeFor(driver: DriverName): SandboxRuntime {
    let rt = this.runtimes.get(driver)
    if (!rt) {
      const stateDir = path.join(this.opts.stateDir, driver)
      rt = new SandboxRuntime({
        stateDir,
        driver: makeDriver(driver, stateDir, { via: this.viaOf(driver) }),
        cgroupPrefix: `${this.opts.cgroupPrefix ?? 's0'}-${driver}`,
        netnsPrefix: `${this.opts.netnsPrefix ?? 's0-'}${NETNS_LETTER[driver]}-`,
        ...(this.opts.network ? { network: this.opts.network.network } : {}),
        ...(this.opts.log ? { log: this.opts.log } : {}),
      })
      this.runtimes.set(driver, rt)
    }
    return rt
  }

  private viaOf(driver: DriverName): DriverVia {
    return this.opts.containerd?.includes(driver) ? 'containerd' : 'cli'
  }

  /**
   * Lets go of the drivers (containerd: stops our daemon). The sandboxes keep running (under
   * their shims); a server started again on this state dir adopts them in `reconcile`.
   */
  async closeDrivers(): Promise<void> {
    for (const [name, rt] of this.runtimes) {
      await rt.driver
        .close?.()
        .catch((err: unknown) => this.log.warn('driver close failed', { driver: name, err }))
    }
  }

  runtimeOf(id: SandboxId): SandboxRuntime {
    const live = this.live.get(id)
    if (!live) throw new S0Error('sandbox_not_running', `sandbox ${id} is not running on this server`)
    return this.runtimeFor(live.driver)
  }

  /** What the sandbox's processes see, as host directories (the files API resolves through it). */
  viewOf(id: SandboxId): SandboxView {
    return this.runtimeOf(id).view(id)
  }

  /** The volumes mounted in a running sandbox, with the Vfs behind each mount (file watch). */
  async mountedVolumes(row: SandboxRow): Promise<WatchedVolume[]> {
    const manager = this.opts.mounts
    if (!manager) return []
    const out: WatchedVolume[] = []
    for (const v of this.live.get(row.id)?.volumes ?? [])
      out.push({ containerPath: v.status.mountPoint, vfs: await manager.engine.vfs(row.teamId, v.volumeId) })
    return out
  }

  memoryImageDir(id: SandboxId): string {
    return path.join(this.opts.stateDir, 'memory', id)
  }

  get checkpoints(): Checkpoints {
    if (!this.rootfsStore)
      throw new S0Error('not_supported', 'this server keeps no root-filesystem state (no volume engine)')
    return this.rootfsStore
  }

  async templateDirOf(row: SandboxRow): Promise<string> {
    const t = row.config.template
    if (t) return this.opts.catalog.rootfsPath(t.rootfs)
    // Rows from before template snapshots were stored: the template as it is now.
    return (await this.opts.catalog.resolve(row.teamId, row.templateId)).rootfsPath
  }

  /** Mounts what the sandbox needs (checkpoint, volumes) and starts its container. */
  async startRuntime(row: SandboxRow, o: { restoreImage?: string } = {}): Promise<void> {
    const teamId = row.teamId
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
      const egress = await this.opts.network?.egress.prepare(
        { id: row.id, teamId, network: cfg.network },
        live.templateDir,
      )
      if (egress) live.exclude.push(SANDBOX_CA_PATH, SANDBOX_BUNDLE_PATH)
      await this.runtimeFor(row.driver).start({
        id: row.id,
        templateRootfs: live.templateDir,
        ...(live.lower ? { lowerDirs: [live.lower.dir] } : {}),
        resources: { memoryBytes: cfg.memory_bytes, cpuMillis: cfg.cpu_millis, pidsMax: cfg.pids_max },
        diskBytes: cfg.disk_bytes ?? this.opts.diskBytesDefault ?? limits.sandboxDiskBytesDefault,
        // The sandbox's own variables win (one that names another bundle knows what it wants).
        env: { ...egress?.env, ...cfg.template?.env, ...cfg.env_vars },
        ...(egress ? { files: egress.files, prepareRoot: egress.prepareRoot } : {}),
        hostname: row.id,
        ...(binds.length > 0 ? { mounts: binds } : {}),
        mkdirs: cfg.template?.mount_paths ?? [],
        ...(o.restoreImage ? { restoreImage: o.restoreImage } : {}),
      })
      this.live.set(row.id, live)
      // A memory image brings its processes back, supervised services included (running, but
      // no longer supervised by this process); otherwise they start here.
      if (!o.restoreImage) await this.startServices(row)
      // A resume runs the next runtime generation (the row is updated once this returns).
      this.startSessions(row, row.status === 'paused' ? row.runtimeGeneration + 1 : row.runtimeGeneration)
    } catch (err) {
      this.opts.network?.egress.stopped(row.id)
      await this.releaseMounts(teamId, live)
      throw err
    }
  }

  /** A live policy change of a sandbox this server runs (a paused one gets it at resume). */
  policyChanged(id: SandboxId, policy: SandboxNetworkPolicy): void {
    this.opts.network?.egress.policyChanged(id, policy)
  }

  /** A warm sandbox was claimed: its egress follows the claim's team and policy. */
  /** Variables every sandbox of this host gets before its template's (the egress CA's). */
  egressEnv(): Record<string, string> {
    return this.opts.network?.egress.env() ?? {}
  }

  claimed(row: SandboxRow): void {
    this.opts.network?.egress.claimed(row.id, row.teamId, row.config.network)
    this.startServices(row).catch((err: unknown) =>
      this.log.warn('services of a warm claim not started', { sandboxId: row.id, err }),
    )
  }

  /** Recovers the sandbox's execution sessions by their runtime_recovery (in the background). */
  startSessions(row: SandboxRow, generation: number): void {
    this.sessions
      .sandboxStarted({ id: row.id, teamId: row.teamId, runtimeGeneration: generation, live: true })
      .catch((err: unknown) => this.log.warn('sessions not recovered', { sandboxId: row.id, err }))
  }

  /** Starts the sandbox's supervised app services (a claim, a resume, a fork, a warm claim). */
  async startServices(row: SandboxRow): Promise<void> {
    const services = (row.config.services ?? []) as AppService[]
    if (services.length === 0) return
    await this.supervisor.apply(row.id, services, row.config.env_vars ?? {})
  }

  /** FUSE-mounts each volume on the host; the runtime bind-mounts them into the sandbox. */
  async mountVolumes(
    teamId: TeamId,
    id: SandboxId,
    wanted: readonly VolumeMountRequest[],
    live: Live,
  ): Promise<BindMount[]> {
    const manager = this.opts.mounts
    if (!manager || wanted.length === 0) return []
    const binds: BindMount[] = []
    for (const w of wanted) {
      const started = performance.now()
      await manager.engine.catalog.getUserVolume(teamId, w.sandboxvolume_id) // 404 for a rootfs volume too
      const readOnly = w.read_only ?? false
      checkOneWriter(manager, w.sandboxvolume_id, readOnly) // again: it may have changed since the claim
      const info = await manager.mount(teamId, w.sandboxvolume_id, { readOnly, sandboxId: id })
      live.volumes.push({
        mountId: info.id,
        volumeId: w.sandboxvolume_id,
        status: {
          volumeId: w.sandboxvolume_id,
          mountPoint: w.mount_point,
          mountedAt: info.mountedAt,
          mountedDurationSec: (performance.now() - started) / 1000,
        },
      })
      binds.push({ hostPath: info.dir, containerPath: w.mount_point, readOnly })
    }
    return binds
  }

  /** Unmounts the sandbox's volumes and its checkpoint (the container is gone); failures are logged. */
  async releaseMounts(teamId: TeamId, live: Live): Promise<void> {
    await this.releaseVolumes(live)
    const lower = live.lower
    live.lower = undefined
    if (lower)
      await this.checkpoints
        .unmountLower(teamId, lower)
        .catch((err: unknown) => this.log.error('checkpoint unmount failed', { mountId: lower.mountId, err }))
  }

  private async releaseVolumes(live: Live): Promise<void> {
    for (const v of live.volumes.splice(0)) {
      await this.opts.mounts
        ?.unmountById(v.mountId)
        .catch((err: unknown) => this.log.error('volume unmount failed', { mountId: v.mountId, err }))
    }
  }

  /**
   * Stops the sandbox's processes and removes what it had on the host. With `capture`, the
   * writable root is first captured into the target volume (durable when this returns); with
   * `memoryImage`, the processes are first saved there (runsc).
   */
  /**
   * A fenced agent (cluster/nodes.ts): its sandboxes belong to other nodes now. Their runtimes
   * are killed and nothing else is touched: no row, no volume, no checkpoint, no session journal
   * (another node may be writing them). The FUSE mounts go with the process.
   */
  async killAll(): Promise<void> {
    for (const [id, l] of [...this.live]) {
      this.live.delete(id)
      this.opts.network?.egress.stopped(id)
      await this.runtimeFor(l.driver)
        .delete(id)
        .catch((err: unknown) => this.log.warn('killing a fenced sandbox failed', { id, err }))
    }
  }

  async stopRuntime(
    row: SandboxRow,
    o: { capture?: { target: VolumeId; manifest?: CaptureManifest }; memoryImage?: string } = {},
  ): Promise<CaptureStats | undefined> {
    const id = row.id
    const live = this.live.get(id)
    this.store.written(id)
    await this.sessions.sandboxStopping(id, o.capture ? 'sandbox_paused' : 'sandbox_stopped')
    await this.supervisor.stop(id)
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
        await this.releaseVolumes(live)
        stats = (
          await this.checkpoints.capture({
            teamId: row.teamId,
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
      this.opts.network?.egress.stopped(id)
      await rt.delete(id)
      await this.contexts.closeSandbox(id)
      await this.releaseMounts(row.teamId, live)
    }
    return stats
  }

  /** A capture target for the running generation, recorded on the row before it is written. */
  async newWork(row: SandboxRow): Promise<VolumeId> {
    const target = await this.checkpoints.newTarget(row.teamId, row.rootfsVolumeId)
    await this.store.db.query(`UPDATE sandboxes SET work_volume_id = $2 WHERE id = $1`, [row.id, target])
    this.store.written(row.id)
    const live = this.live.get(row.id)
    if (live) live.work = { volumeId: target }
    return target
  }

  /** Drops the generation's capture target (a failed capture leaves it in an unknown state). */
  async dropWork(row: SandboxRow): Promise<void> {
    const live = this.live.get(row.id)
    const target = live?.work?.volumeId ?? row.workVolumeId
    if (live) live.work = undefined
    if (!target) return
    await this.store.db.query(
      `UPDATE sandboxes SET work_volume_id = NULL WHERE id = $1 AND work_volume_id = $2`,
      [row.id, target],
    )
    this.store.written(row.id)
    await this.checkpoints.drop(row.teamId, target)
  }

  /** The checkpoint is in: the row points at it, and the one before it goes. */
  async commitPause(
    row: SandboxRow,
    checkpoint: VolumeId,
    reason: string,
    memoryImage?: string,
  ): Promise<void> {
    assertTransition(row.id, row.status, 'paused')
    await this.store.db.query(
      `UPDATE sandboxes SET status = 'paused', status_reason = $2, rootfs_volume_id = $3, work_volume_id = NULL,
              paused_at = now(), updated_at = now(), expires_at = NULL,
              config = CASE WHEN $4::text IS NULL THEN config - 'memory_image' ELSE jsonb_set(config, '{memory_image}', to_jsonb($4::text)) END
        WHERE id = $1`,
      [row.id, reason, checkpoint, memoryImage ?? null],
    )
    this.store.written(row.id)
    if (row.rootfsVolumeId && row.rootfsVolumeId !== checkpoint)
      await this.checkpoints
        .drop(row.teamId, row.rootfsVolumeId)
        .catch((err: unknown) => this.log.warn('old checkpoint not deleted', { id: row.id, err }))
  }

  /** Its volumes and memory image, then the row (a crash in between is finished at start). */
  async finishRemoval(row: SandboxRow): Promise<void> {
    await this.runtimeFor(row.driver).delete(row.id)
    await this.opts.network?.egress.forget(row.id)
    if (this.rootfsStore) {
      await this.rootfsStore.drop(row.teamId, row.workVolumeId)
      await this.rootfsStore.drop(row.teamId, row.rootfsVolumeId)
    }
    await rm(this.memoryImageDir(row.id), { recursive: true, force: true })
    await this.store.db.query('DELETE FROM sandboxes WHERE id = $1', [row.id])
    this.store.written(row.id)
  }

  /**
   * After a restart: sandboxes that still run and need nothing this process served (no
   * checkpoint under their root, no volumes) are adopted. Those that did (their FUSE mounts died
   * with the old process) and those whose processes are gone are stopped and their writable root
   * captured: they come back paused with every file. Warm sandboxes, half-made claims, captures
   * and deletions cut short are cleaned up; the runtimes remove every other leak.
   */
  async reconcile(): Promise<{ adopted: string[]; paused: string[]; failed: string[] }> {
    const { rows: raw } = await this.store.db.query<Row>(
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
      await this.sweepOtherVia(driver).catch((err: unknown) =>
        this.log.warn('containers of the other way to drive a runtime not removed', { driver, err }),
      )
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
    const paused: SandboxId[] = []
    const failed: SandboxId[] = []
    for (const r of rows) {
      if (r.workVolumeId && !kept.has(r.id)) await this.dropWork(r)
      if (adopted.has(r.id)) {
        const templateDir = await this.templateDirOf(r)
        // Its files are bound already; this puts it back in the egress directory.
        await this.opts.network?.egress.prepare(
          { id: r.id, teamId: r.teamId, network: r.config.network },
          templateDir,
        )
        this.live.set(r.id, { driver: r.driver, templateDir, volumes: [], exclude: [] })
        // The last server's supervised services ended with it.
        await this.startServices(r)
        this.startSessions(r, r.runtimeGeneration)
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
      await this.store.setStatus(
        r,
        'failed',
        'its processes were gone when the server restarted' +
          (r.rootfsVolumeId ? '; its last checkpoint is intact (fork or snapshot it)' : ''),
      )
    }
    await this.opts.mounts?.sweepStale()
    this.log.info('sandboxes reconciled', { adopted: [...adopted], paused, failed })
    return { adopted: [...adopted], paused, failed }
  }

  /**
   * A runtime switched between its CLI and containerd (S0_RUNTIMES) since the last start: the
   * containers the other way left are removed, and that way's state dir with them. Their
   * sandboxes are then handled as any whose processes are gone (paused with their files when
   * this server keeps them, failed otherwise): a row does not say which way started it.
   */
  private async sweepOtherVia(driver: DriverName): Promise<void> {
    const other: DriverVia = this.viaOf(driver) === 'containerd' ? 'cli' : 'containerd'
    if (other === 'containerd' && !CONTAINERD_RUNTIMES.includes(driver)) return
    const d = makeDriver(driver, path.join(this.opts.stateDir, driver), { via: other })
    const exists = await access(d.root).then(
      () => true,
      () => false,
    )
    if (!exists) return
    try {
      for (const c of await d.list()) await d.delete(c.id)
    } finally {
      await d.close?.()
    }
    await rm(d.root, { recursive: true, force: true })
    this.log.info('containers of the other way to drive a runtime removed', { driver, via: other })
  }

  /** A sandbox a crash stopped, with its upper kept: capture it and leave it paused. */
  private async recoverStopped(r: SandboxRow): Promise<boolean> {
    const rt = this.runtimeFor(r.driver)
    try {
      await this.dropWork(r)
      const target = await this.newWork(r)
      const templateDir = await this.templateDirOf(r)
      await this.checkpoints.capture({
        teamId: r.teamId,
        target,
        upperDir: rt.get(r.id).upperDir,
        templateDir,
        exclude: (r.config.mounts ?? []).map((m) => m.mount_point),
      })
      await this.checkpoints.release(r.teamId, target)
      await this.commitPause(
        r,
        target,
        'the server restarted: the sandbox was paused with its files (its processes were lost); resume it',
      )
      return true
    } catch (err) {
      this.log.error('capture after restart failed', { id: r.id, err })
      await this.store.setStatus(
        r,
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
}
