// Retention of sandbox events and output logs: by age (all of them, deleted sandboxes' too) and
// by size (a team's events, a sandbox's logs), oldest first, in short batched statements. A run
// scans both tables once to size them; retention itself keeps that scan bounded.
import type { Db } from '../core/db.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { SandboxAudit } from './audit.js'

export interface RetentionPolicy {
  /** 0: no age limit. */
  maxAgeMs: number
  eventBytesPerTeam: number
  logBytesPerSandbox: number
}

export class ObservabilityRetention {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined

  constructor(private readonly o: { db: Db; policy: RetentionPolicy; audit: SandboxAudit; log: Logger }) {}

  start(intervalMs = limits.observabilityRetentionIntervalMs): void {
    this.timer = setInterval(() => void this.run(), intervalMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.timer)
    await this.running
  }

  /** One pass; never throws (a failure is logged and the next pass tries again). */
  run(): Promise<void> {
    this.running ??= this.pass()
      .catch((err: unknown) => this.o.log.warn('observability retention failed', { err }))
      .finally(() => (this.running = undefined))
    return this.running
  }

  private async pass(): Promise<void> {
    const { db, policy } = this.o
    if (policy.maxAgeMs > 0) {
      const before = new Date(Date.now() - policy.maxAgeMs)
      for (const table of ['sandbox_events', 'sandbox_logs'])
        await deleteBatched(
          db,
          `DELETE FROM ${table} WHERE seq IN (SELECT seq FROM ${table} WHERE occurred_at < $1 LIMIT $2)`,
          [before],
        )
    }
    const teams = await db.query<{ team_id: string; bytes: number }>(
      `SELECT team_id, sum(pg_column_size(e.*))::bigint AS bytes FROM sandbox_events e GROUP BY team_id
       HAVING sum(pg_column_size(e.*)) > $1`,
      [policy.eventBytesPerTeam],
    )
    for (const { team_id } of teams.rows) {
      const cut = await db.query<{ seq: number }>(
        `SELECT seq FROM (SELECT seq, sum(pg_column_size(e.*)) OVER (ORDER BY seq DESC) AS kept
                            FROM sandbox_events e WHERE team_id = $1) x
          WHERE kept > $2 ORDER BY seq DESC LIMIT 1`,
        [team_id, policy.eventBytesPerTeam],
      )
      const seq = cut.rows[0]?.seq
      if (seq !== undefined)
        await deleteBatched(
          db,
          `DELETE FROM sandbox_events WHERE seq IN (SELECT seq FROM sandbox_events WHERE team_id = $1 AND seq <= $3 LIMIT $2)`,
          [team_id, seq],
        )
    }
    const sandboxes = await db.query<{ team_id: string; sandbox_id: string }>(
      `SELECT team_id, sandbox_id FROM sandbox_logs GROUP BY team_id, sandbox_id HAVING sum(octet_length(message)) > $1`,
      [policy.logBytesPerSandbox],
    )
    for (const { team_id, sandbox_id } of sandboxes.rows) {
      const cut = await db.query<{ seq: number }>(
        `SELECT seq FROM (SELECT seq, sum(octet_length(message)) OVER (ORDER BY seq DESC) AS kept
                            FROM sandbox_logs WHERE team_id = $1 AND sandbox_id = $2) x
          WHERE kept > $3 ORDER BY seq DESC LIMIT 1`,
        [team_id, sandbox_id, policy.logBytesPerSandbox],
      )
      const seq = cut.rows[0]?.seq
      if (seq === undefined) continue
      const dropped = await db.query<{ lines: number; bytes: number }>(
        `WITH gone AS (DELETE FROM sandbox_logs WHERE team_id = $1 AND sandbox_id = $2 AND seq <= $3
                       RETURNING octet_length(message) AS n)
         SELECT count(*)::bigint AS lines, coalesce(sum(n), 0)::bigint AS bytes FROM gone`,
        [team_id, sandbox_id, seq],
      )
      const d = dropped.rows[0]
      if (d && d.lines > 0)
        this.o.audit.record(team_id, sandbox_id, {
          eventType: 'process',
          source: 'procd',
          action: 'logs.truncated',
          phase: 'effect',
          outcome: 'completed',
          attributes: { dropped_lines: d.lines, dropped_bytes: d.bytes, through_cursor: String(seq) },
        })
    }
  }
}

/** Runs a `… LIMIT $2` delete until it deletes nothing ($2 is the batch size). */
async function deleteBatched(db: Db, sql: string, params: unknown[]): Promise<void> {
  const [first, ...rest] = params
  for (let i = 0; i < 1_000_000; i++) {
    const r = await db.query(sql, [first, limits.retentionDeleteBatch, ...rest])
    if ((r.rowCount ?? 0) < limits.retentionDeleteBatch) return
  }
}
