// The background pass over this server's sandboxes, every sandboxSweepIntervalMs: hard_ttl
// deletes, ttl pauses (or stops, where root file systems cannot be kept), expired rootfs
// snapshots, orphaned rootfs volumes, and warm pool refills. One pass at a time.
import { crashOnBug } from '../core/assert.js'
import type { SandboxId, TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { SandboxAudit } from './audit.js'
import type { SandboxHost } from './host.js'
import type { SandboxLifecycle } from './lifecycle.js'
import type { WarmPool } from './pool.js'
import type { SandboxStore } from './store.js'

export interface SweeperOptions {
  host: SandboxHost
  store: SandboxStore
  lifecycle: SandboxLifecycle
  hostId: string
  /** The warm pool, once a runtime works (none: nothing to refill). */
  pool(): WarmPool | undefined
  audit: SandboxAudit
  log: Logger
}

export class Sweeper {
  private timer: NodeJS.Timeout | undefined
  private sweeping = false
  private lastOrphanSweep = 0

  constructor(private readonly o: SweeperOptions) {}

  start(intervalMs: number): void {
    this.timer = setInterval(() => void this.sweep(), intervalMs)
    this.timer.unref()
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    while (this.sweeping) await new Promise((r) => setTimeout(r, 20))
  }

  /** hard_ttl: delete. ttl: pause. Expired rootfs snapshots go; warm pools fill. Never throws. */
  async sweep(): Promise<void> {
    if (this.sweeping) return
    this.sweeping = true
    try {
      await this.hardTtl()
      await this.softTtl()
      const host = this.o.host
      if (host.keepsRootfs) {
        await host.checkpoints.deleteExpiredSnapshots()
        if (Date.now() - this.lastOrphanSweep > limits.rootfsOrphanSweepIntervalMs) {
          this.lastOrphanSweep = Date.now()
          await host.checkpoints.sweepOrphans(limits.rootfsOrphanGraceMs)
        }
      }
      await this.o.pool()?.tick()
    } catch (err) {
      crashOnBug(err, this.o.log)
      // The next pass tries again; a failing database is reported by /readyz, not here.
      this.o.log.warn('sweep failed', { err })
    } finally {
      this.sweeping = false
    }
  }

  private async hardTtl(): Promise<void> {
    const { rows } = await this.o.store.db.query<{ id: SandboxId; team_id: TeamId }>(
      `SELECT id, team_id FROM sandboxes WHERE host = $1 AND hard_expires_at < now() AND status NOT IN ('terminating', 'idle')`,
      [this.o.hostId],
    )
    for (const { id, team_id } of rows) {
      this.ttlEvent(team_id, id, 'hard_ttl', 'delete')
      await this.o.lifecycle.remove(id).catch((err: unknown) => {
        crashOnBug(err)
        this.o.log.warn('hard_ttl delete failed', { id, err })
      })
    }
  }

  private ttlEvent(
    teamId: TeamId,
    id: SandboxId,
    which: 'ttl' | 'hard_ttl',
    then: 'pause' | 'delete' | 'stop',
  ): void {
    this.o.audit.record(teamId, id, {
      eventType: 'lifecycle',
      action: 'sandbox.ttl',
      phase: 'effect',
      outcome: 'accepted',
      attributes: { which, then },
    })
  }

  private async softTtl(): Promise<void> {
    const { rows } = await this.o.store.db.query<{ id: SandboxId; team_id: TeamId }>(
      `SELECT id, team_id FROM sandboxes WHERE host = $1 AND expires_at < now() AND status = 'running'`,
      [this.o.hostId],
    )
    const { host, store, lifecycle, log } = this.o
    for (const { id, team_id } of rows) {
      if (lifecycle.busy(id)) continue
      if (!host.keepsRootfs || !host.live.has(id)) {
        this.ttlEvent(team_id, id, 'ttl', 'stop')
        const row = await store.rowOf(id)
        await host
          .stopRuntime(row)
          .catch((err: unknown) => log.warn('stopping an expired sandbox failed', { id, err }))
        await store.setStatus(
          row,
          'failed',
          'ttl expired and this server cannot pause sandboxes: it was stopped',
        )
        continue
      }
      this.ttlEvent(team_id, id, 'ttl', 'pause')
      // The reason goes in with the checkpoint: a pause may answer before it commits (pauseWaitMs),
      // and a reason written after it raced readers that saw the row paused without one.
      await lifecycle
        .pause(team_id, id, {
          reason: 'paused: its ttl expired (resume it, or call it: auto_resume wakes it)',
        })
        .catch((err: unknown) => {
          crashOnBug(err)
          log.warn('ttl pause failed', { id, err })
        })
    }
  }
}
