// Declares nodes dead and hands what they owned to the rest of the cluster (docs/DEPLOY.md,
// "Failure model"). Run by every API replica and agent on a timer; one at a time under a
// transaction lock, and idempotent, so any number of them may look.
//
// What a dead node owned:
// - paused sandboxes: nothing to do. Their checkpoint is in the volume engine; the next call
//   resumes them on a live node (which takes `sandboxes.host` over, see takeOver).
// - running sandboxes: paused on their last checkpoint (the root file system of their last
//   pause, or the template for one never paused). Work since that capture died with the host:
//   `status_reason` says so. They are resumable like any paused sandbox.
// - starting ones: failed (their claim's caller got an error or no answer).
// - terminating ones: gone (their removal is finished here: they own no runtime any more).
// - warm slots: removed (the pools of live nodes refill).
// - volume writer leases: released; whoever takes one next moves its epoch on, so a late commit
//   of the dead node is refused (fencing, snapshots/metadata.ts).
// - placement leases: removed.
import { ADVISORY_LOCK_KEYS } from '../../core/advisory-locks.js'
import type { Db } from '../../core/db.js'
import type { Logger } from '../../core/log.js'

export interface ReapedNode {
  id: string
  name: string
  paused: number
  failed: number
}

export async function reapDeadNodes(db: Db, deadAfterS: number): Promise<ReapedNode[]> {
  return db.tx(async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.nodeReaper])
    const { rows: dead } = await c.query<{ id: string; name: string }>(
      `UPDATE nodes SET state = 'dead', dead_at = now()
        WHERE state IN ('live', 'draining') AND heartbeat_at < now() - make_interval(secs => $1)
        RETURNING id, name`,
      [deadAfterS],
    )
    const out: ReapedNode[] = []
    for (const n of dead) {
      const reason = `its node ${n.name} stopped answering; resumed from its last checkpoint: work since then is lost`
      const { rowCount: paused } = await c.query(
        `UPDATE sandboxes SET status = 'paused', status_reason = $2, paused_at = now(), updated_at = now()
          WHERE host = $1 AND status = 'running'`,
        [n.id, reason],
      )
      const { rowCount: failed } = await c.query(
        `UPDATE sandboxes SET status = 'failed', status_reason = $2, updated_at = now()
          WHERE host = $1 AND status = 'starting'`,
        [n.id, `its node ${n.name} stopped answering while it started`],
      )
      await c.query(`DELETE FROM sandboxes WHERE host = $1 AND status IN ('idle', 'terminating')`, [n.id])
      await c.query(`UPDATE volumes SET owner = NULL, owner_expires_at = NULL WHERE owner = $1`, [n.id])
      await c.query(`DELETE FROM node_reservations WHERE node_id = $1`, [n.id])
      out.push({ id: n.id, name: n.name, paused: paused ?? 0, failed: failed ?? 0 })
    }
    // Expired placement leases of live nodes (claims that never arrived).
    await c.query(`DELETE FROM node_reservations WHERE expires_at < now()`)
    return out
  })
}

/** The reaper's timer in one process. */
export class NodeReaper {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined

  constructor(private readonly o: { db: Db; deadAfterS: number; intervalMs: number; log: Logger }) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.once().finally(() => (this.running = undefined))
    }, this.o.intervalMs)
    this.timer.unref()
  }

  private async once(): Promise<void> {
    try {
      for (const n of await reapDeadNodes(this.o.db, this.o.deadAfterS))
        this.o.log.warn('node declared dead', { node: n.name, id: n.id, paused: n.paused, failed: n.failed })
    } catch (err) {
      this.o.log.warn('dead-node check failed', { err })
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    await this.running
  }
}
