// Lifecycle operations on sandboxes, one at a time per sandbox: pause (capture the writable
// root into a checkpoint, stop), resume (a new runtime generation over the checkpoint),
// rootfs snapshots, fork, restore, delete. Snapshot, fork and restore of a paused sandbox are
// forks of rootfs volumes (O(1)); of a running one, a freeze while the change since its last
// capture is captured.
import { access, rm } from 'node:fs/promises'
import { isS0Error, S0Error } from '../core/errors.js'
import { newSandboxId, type SandboxId, type TeamId, type VolumeId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { CaptureStats } from '../runtime/rootfs-capture.js'
import type { SandboxAudit } from './audit.js'
import type { SandboxHost } from './host.js'
import type { RootfsSnapshotRow, SandboxRow, StoredConfig } from './rows.js'
import { assertTransition, requireStatus } from './status.js'
import type { SandboxStore } from './store.js'

export type OpKind = 'pause' | 'resume' | 'snapshot' | 'fork' | 'restore' | 'delete'

export interface SandboxLifecycleOptions {
  host: SandboxHost
  store: SandboxStore
  hostId: string
  /** The team's sandbox quota (a resume starts one again). */
  checkQuota(teamId: TeamId): Promise<void>
  /** Cluster (docs/DEPLOY.md): a node without a heartbeat for this long is dead. */
  nodeDeadAfterS?: number
  audit: SandboxAudit
  log: Logger
}

export class SandboxLifecycle {
  /** The operation in progress per sandbox. */
  private readonly ops = new Map<SandboxId, { kind: OpKind; done: Promise<unknown> }>()
  private readonly host: SandboxHost
  private readonly store: SandboxStore
  private readonly log: Logger

  constructor(private readonly o: SandboxLifecycleOptions) {
    this.host = o.host
    this.store = o.store
    this.log = o.log
  }

  /** The operation in progress on the sandbox, if any, and its end. */
  busy(id: SandboxId): { kind: OpKind; done: Promise<unknown> } | undefined {
    return this.ops.get(id)
  }

  /** Resolves when no operation is in progress. */
  async idle(): Promise<void> {
    // Each operation reports its own failure to its caller; here only its end matters.
    for (const p of [...this.ops.values()]) await p.done.catch(() => undefined)
  }

  /** Runs `fn` as the sandbox's one operation, recorded as lifecycle events (attempt, result). */
  private exclusive<T>(
    teamId: TeamId,
    id: SandboxId,
    kind: OpKind,
    fn: () => Promise<T>,
    attrs?: (result: T) => Record<string, unknown>,
  ): Promise<T> {
    const cur = this.ops.get(id)
    if (cur)
      return Promise.reject(
        new S0Error('conflict', `sandbox ${id} is busy: a ${cur.kind} is in progress`, { retryAfterS: 1 }),
      )
    const done = this.o.audit.lifecycle(teamId, id, `sandbox.${kind}`, fn, attrs)
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
    id: SandboxId,
    /** `reason`: the paused row's status_reason, written with the checkpoint (the ttl sweeper's). */
    o: { keepMemory?: boolean; reason?: string } = {},
  ): Promise<{ row: SandboxRow; paused: boolean }> {
    const row = await this.store.get(teamId, id)
    if (row.status === 'paused' && !this.ops.has(id)) return { row, paused: true }
    const cur = this.ops.get(id)
    const job =
      cur?.kind === 'pause'
        ? (cur.done as Promise<SandboxRow>)
        : this.exclusive(
            teamId,
            id,
            'pause',
            () => this.doPause(row, o),
            () => ({ keep_memory: !!o.keepMemory }),
          )
    let timer: NodeJS.Timeout | undefined
    const res = await Promise.race([
      job,
      new Promise<'waiting'>((r) => (timer = setTimeout(() => r('waiting'), limits.pauseWaitMs))),
    ])
    clearTimeout(timer)
    if (res === 'waiting') {
      // The pause goes on in the background; its failure is recorded on the sandbox row.
      job.catch(() => undefined)
      return { row: await this.store.get(teamId, id), paused: false }
    }
    return { row: res, paused: true }
  }

  private async doPause(row: SandboxRow, o: { keepMemory?: boolean; reason?: string }): Promise<SandboxRow> {
    requireStatus(row, 'pause', 'running')
    const live = this.host.live.get(row.id)
    if (!live) throw new S0Error('sandbox_not_running', `sandbox ${row.id} is not running on this server`)
    let memoryImage: string | undefined
    if (o.keepMemory) {
      if (!this.host.runtimeFor(live.driver).driver.memoryCheckpoint)
        throw new S0Error(
          'not_supported',
          `${live.driver} cannot keep process memory across a pause here (runsc can; see docs/ARCHITECTURE.md)`,
        )
      memoryImage = this.host.memoryImageDir(row.id)
      await rm(memoryImage, { recursive: true, force: true })
    }
    const target = live.work?.volumeId ?? (await this.host.newWork(row))
    const manifest = this.host.live.get(row.id)?.work?.manifest
    const started = performance.now()
    let stats: CaptureStats | undefined
    try {
      stats = await this.host.stopRuntime(row, {
        capture: { target, ...(manifest ? { manifest } : {}) },
        ...(memoryImage ? { memoryImage } : {}),
      })
      await this.host.checkpoints.release(row.teamId, target)
    } catch (err) {
      // The processes are gone; the last checkpoint is untouched. The capture target is of no
      // use now; if dropping it fails too, the orphan sweep deletes it later.
      await this.host.dropWork({ ...row, workVolumeId: target }).catch(() => undefined)
      await this.store.setStatus(
        row,
        'failed',
        `pause failed: ${(err as Error).message}`.slice(0, 1500) +
          (row.rootfsVolumeId ? '; the last checkpoint is intact (fork or snapshot it)' : ''),
      )
      throw err
    }
    await this.host.commitPause(row, target, o.reason ?? '', memoryImage)
    this.log.info('sandbox paused', { id: row.id, ms: Math.round(performance.now() - started), ...stats })
    return this.store.get(row.teamId, row.id)
  }

  /**
   * Resume: a new runtime generation over the last checkpoint (mounted read-only, fetched on
   * demand: the cost does not grow with the root file system's size). Concurrent resumes of one
   * sandbox share one.
   */
  resume(teamId: TeamId, id: SandboxId): Promise<SandboxRow> {
    const cur = this.ops.get(id)
    if (cur?.kind === 'resume') return cur.done as Promise<SandboxRow>
    return this.exclusive(teamId, id, 'resume', async () => {
      let row = await this.store.get(teamId, id)
      if (row.status === 'running' && this.host.live.has(id)) return row
      requireStatus(row, 'resume', 'paused')
      await this.o.checkQuota(teamId)
      const movedFrom = row.host !== this.o.hostId ? row.host : undefined
      if (movedFrom !== undefined) row = await this.takeOver(row)
      const image = row.config.memory_image
      const hasImage =
        image !== undefined &&
        movedFrom === undefined &&
        (await access(image).then(
          () => true,
          () => false,
        ))
      const failed = (err: unknown): S0Error =>
        new S0Error('sandbox_resume_failed', `sandbox ${id} could not resume: ${(err as Error).message}`, {
          cause: err,
        })
      // A memory image stays on the host that paused the sandbox: elsewhere it resumes with its files.
      let reason =
        image !== undefined && movedFrom !== undefined
          ? `its memory image stayed on host ${movedFrom}; it resumed on ${this.o.hostId} with its files`
          : movedFrom !== undefined && row.statusReason !== ''
            ? row.statusReason
            : ''
      try {
        await this.host.startRuntime(row, hasImage ? { restoreImage: image } : {})
      } catch (err) {
        if (!hasImage) throw failed(err)
        // The memory image did not restore: its files are in the checkpoint, start it afresh.
        this.log.warn('memory restore failed; resuming with files only', { id, err })
        reason = `its processes could not be restored (${(err as Error).message.slice(0, 300)}); it resumed with its files`
        await this.host.startRuntime(row).catch((err2: unknown) => {
          throw failed(err2)
        })
      }
      if (image) await rm(image, { recursive: true, force: true })
      const ttl = row.config.ttl ?? 0
      assertTransition(id, row.status, 'running')
      await this.store.db.query(
        `UPDATE sandboxes SET status = 'running', status_reason = $2, runtime_generation = runtime_generation + 1,
                paused_at = NULL, updated_at = now(), config = config - 'memory_image',
                expires_at = CASE WHEN $3::int > 0 THEN now() + make_interval(secs => $3::int) END
          WHERE id = $1`,
        [id, reason, ttl],
      )
      this.store.written(id)
      this.log.info('sandbox resumed', { id, memory: hasImage && reason === '' })
      return this.store.get(teamId, id)
    })
  }

  /**
   * A paused sandbox whose host is another one's: taken over when that host is not a live node
   * (dead, gone, or a single server's that never registered). Compare-and-swap on `host`, so two
   * nodes resuming it at once cannot both win; the loser answers `unavailable` and the caller's
   * retry goes to the winner.
   */
  private async takeOver(row: SandboxRow): Promise<SandboxRow> {
    const deadAfterS = this.o.nodeDeadAfterS ?? limits.nodeDeadAfterSDefault
    const { rowCount } = await this.store.db.query(
      `UPDATE sandboxes SET host = $2, updated_at = now()
        WHERE id = $1 AND host = $3 AND status = 'paused'
          AND NOT EXISTS (SELECT 1 FROM nodes WHERE id = $3 AND state IN ('live', 'draining')
                            AND heartbeat_at > now() - make_interval(secs => $4))`,
      [row.id, this.o.hostId, row.host, deadAfterS],
    )
    this.store.written(row.id)
    if (rowCount === 0)
      throw new S0Error('unavailable', `sandbox ${row.id} is served by another node`, { retryAfterS: 1 })
    this.log.info('sandbox taken over from another host', { id: row.id, from: row.host })
    return this.store.get(row.teamId, row.id)
  }

  /**
   * The sandbox's root file system now, as a new rootfs volume: a fork of the checkpoint if it
   * is paused (O(1)); if it runs, its processes are frozen while the upper is captured (only
   * what changed since this generation's last capture is read) and then go on.
   */
  private async captureNow(row: SandboxRow, action: 'snapshot' | 'fork'): Promise<VolumeId> {
    requireStatus(row, action, 'running', 'paused')
    if (row.status === 'paused') return this.host.checkpoints.newTarget(row.teamId, row.rootfsVolumeId)
    const live = this.host.live.get(row.id)
    if (!live) throw new S0Error('sandbox_not_running', `sandbox ${row.id} is not running on this server`)
    const rt = this.host.runtimeFor(live.driver)
    const target = live.work?.volumeId ?? (await this.host.newWork(row))
    await rt.freeze(row.id)
    try {
      const { manifest } = await this.host.checkpoints.capture({
        teamId: row.teamId,
        target,
        upperDir: rt.get(row.id).upperDir,
        templateDir: live.templateDir,
        exclude: live.exclude,
        ...(live.work?.manifest ? { manifest: live.work.manifest } : {}),
      })
      if (live.work) live.work.manifest = manifest
    } catch (err) {
      // The target is in an unknown state: drop it (the orphan sweep gets it if this fails too).
      await this.host.dropWork(row).catch(() => undefined)
      throw err
    } finally {
      await rt.thaw(row.id)
    }
    return this.host.checkpoints.newTarget(row.teamId, target)
  }

  async createSnapshot(
    teamId: TeamId,
    id: SandboxId,
    meta: { name?: string; description?: string; expiresAt?: Date },
  ): Promise<RootfsSnapshotRow> {
    const row = await this.store.get(teamId, id)
    return this.exclusive(teamId, id, 'snapshot', async () => {
      const volume = await this.captureNow(await this.store.get(teamId, row.id), 'snapshot')
      try {
        return await this.host.checkpoints.createSnapshot(teamId, id, volume, meta)
      } catch (err) {
        await this.host.checkpoints.drop(teamId, volume)
        throw err
      }
    })
  }

  listSnapshots(teamId: TeamId, id: SandboxId): Promise<RootfsSnapshotRow[]> {
    return this.host.checkpoints.listSnapshots(teamId, id)
  }

  getSnapshot(teamId: TeamId, snapshotId: string): Promise<RootfsSnapshotRow> {
    return this.host.checkpoints.getSnapshot(teamId, snapshotId)
  }

  deleteSnapshot(teamId: TeamId, snapshotId: string): Promise<void> {
    return this.host.checkpoints.deleteSnapshot(teamId, snapshotId)
  }

  /** A new paused sandbox with the source's root file system and config (ttl / hard_ttl overridable). */
  async fork(
    teamId: TeamId,
    id: SandboxId,
    cfg: { ttl?: number; hard_ttl?: number } = {},
  ): Promise<SandboxRow> {
    await this.store.get(teamId, id)
    const child = await this.exclusive(
      teamId,
      id,
      'fork',
      async () => {
        const src = await this.store.get(teamId, id)
        const volume = await this.captureNow(src, 'fork')
        const childId = newSandboxId()
        const config: StoredConfig = { ...src.config }
        delete config.mounts // one writer per volume: the child starts without the source's volumes
        delete config.memory_image
        if (cfg.ttl !== undefined) config.ttl = cfg.ttl
        if (cfg.hard_ttl !== undefined) config.hard_ttl = cfg.hard_ttl
        try {
          await this.store.db.query(
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
              this.o.hostId,
              volume,
              config.hard_ttl ?? 0,
            ],
          )
        } catch (err) {
          await this.host.checkpoints.drop(teamId, volume)
          throw err
        }
        return this.store.get(teamId, childId)
      },
      (r) => ({ child_sandbox_id: r.id }),
    )
    this.o.audit.record(teamId, child.id, {
      eventType: 'lifecycle',
      action: 'sandbox.fork',
      phase: 'effect',
      outcome: 'succeeded',
      attributes: { source_sandbox_id: id },
    })
    return child
  }

  /** Replaces a paused sandbox's root file system with a snapshot's (O(1)); it stays paused. */
  async restore(teamId: TeamId, id: SandboxId, snapshotId: string): Promise<SandboxRow> {
    await this.store.get(teamId, id)
    return this.exclusive(teamId, id, 'restore', async () => {
      const row = await this.store.get(teamId, id)
      requireStatus(row, 'restore', 'paused')
      const snap = await this.host.checkpoints.getSnapshot(teamId, snapshotId)
      const volume = await this.host.checkpoints.newTarget(teamId, snap.volumeId)
      await this.host.commitPause(row, volume, `restored from ${snapshotId}`)
      // Saved processes belong to the files that were replaced.
      await rm(this.host.memoryImageDir(id), { recursive: true, force: true })
      return this.store.get(teamId, id)
    })
  }

  /** PoolHost / delete / hard_ttl: the sandbox and all its state (snapshots outlive it). */
  async remove(id: SandboxId): Promise<void> {
    const cur = this.ops.get(id)
    if (cur?.kind === 'delete') {
      await cur.done
      return
    }
    // A delete waits for the operation in progress; how that one ended does not matter to it.
    if (cur) await cur.done.catch(() => undefined)
    const owner = await this.store.rowOf(id).catch((err: unknown) => {
      if (isS0Error(err) && err.code === 'not_found') return undefined
      throw err
    })
    if (!owner) return
    await this.exclusive(owner.teamId, id, 'delete', async () => {
      const row = await this.store.rowOf(id).catch((err: unknown) => {
        if (isS0Error(err) && err.code === 'not_found') return undefined // deleted meanwhile
        throw err
      })
      if (!row) return
      await this.store.setStatus(row, 'terminating', '')
      await this.host.stopRuntime(row)
      await this.host.finishRemoval(row)
      this.log.info('sandbox deleted', { id })
    })
  }
}
