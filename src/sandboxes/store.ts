// The `sandboxes` rows: reads, status writes checked against the transition table, and the rows
// of running sandboxes kept in memory for the hot routes (a REPL round trip costs no query),
// dropped on every write.
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { isSandboxId, type SandboxId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { toRow, type ListQuery, type Row, type SandboxRow } from './rows.js'
import { assertTransition, type SandboxStatus } from './status.js'

export class SandboxStore {
  /** Rows of running sandboxes served here, bounded by the sandboxes this process runs. */
  private readonly runningRows = new Map<SandboxId, SandboxRow>()
  private writes = 0

  constructor(readonly db: Db) {}

  /** Drops the cached row after a write to it. */
  written(id: SandboxId): void {
    this.writes++
    this.runningRows.delete(id)
  }

  cached(id: SandboxId): SandboxRow | undefined {
    return this.runningRows.get(id)
  }

  /** A token for `remember`: a row write after taking it invalidates it. */
  get generation(): number {
    return this.writes
  }

  /** Caches a running sandbox's row unless a write came since `generation` was read. */
  remember(row: SandboxRow, generation: number): void {
    if (generation === this.writes) this.runningRows.set(row.id, row)
  }

  /** Any sandbox of any team, idle ones included (the host side and reconcile). */
  async rowOf(id: SandboxId): Promise<SandboxRow> {
    const { rows } = await this.db.query<Row>('SELECT * FROM sandboxes WHERE id = $1', [id])
    if (!rows[0]) throw new S0Error('not_found', `no sandbox ${id}`)
    return toRow(rows[0])
  }

  /** A sandbox of the team that the API may show (not a warm one); `not_found` otherwise. */
  async get(teamId: TeamId, id: string): Promise<SandboxRow> {
    if (!isSandboxId(id)) throw new S0Error('not_found', `no sandbox ${JSON.stringify(id)}`)
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM sandboxes WHERE id = $1 AND team_id = $2 AND status <> 'idle'`,
      [id, teamId],
    )
    const row = rows[0]
    if (!row) throw new S0Error('not_found', `no sandbox ${id}`)
    return toRow(row)
  }

  async list(teamId: TeamId, q: ListQuery): Promise<{ rows: SandboxRow[]; count: number }> {
    const where = [`team_id = $1`, `status <> 'idle'`]
    const params: unknown[] = [teamId]
    if (q.status !== undefined) where.push(`status = $${params.push(q.status)}`)
    if (q.templateId !== undefined) where.push(`template_id = $${params.push(q.templateId)}`)
    if (q.paused !== undefined) where.push(q.paused ? `status = 'paused'` : `status <> 'paused'`)
    const filter = where.join(' AND ')
    const total = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM sandboxes WHERE ${filter}`,
      params,
    )
    const limit = Math.min(q.limit ?? limits.sandboxListEntriesDefault, limits.sandboxListEntriesMax)
    const offset = q.offset ?? 0
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM sandboxes WHERE ${filter} ORDER BY created_at DESC, id
        LIMIT $${params.push(limit)} OFFSET $${params.push(offset)}`,
      params,
    )
    return { rows: rows.map(toRow), count: total.rows[0]?.n ?? 0 }
  }

  /** Moves the sandbox from the status it was read in to `to` (the table must allow it). */
  async setStatus(
    row: { id: SandboxId; status: SandboxStatus },
    to: SandboxStatus,
    reason: string,
  ): Promise<void> {
    assertTransition(row.id, row.status, to)
    await this.db.query(
      'UPDATE sandboxes SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1',
      [row.id, to, reason],
    )
    this.written(row.id)
  }

  /**
   * `setStatus` that another process may have raced: false, and nothing written, when the row is
   * no longer in the status it was read in (a cluster's reaper failed a claim of a node it
   * declared dead, cluster/reaper.ts).
   */
  async advance(
    row: { id: SandboxId; status: SandboxStatus },
    to: SandboxStatus,
    reason: string,
  ): Promise<boolean> {
    assertTransition(row.id, row.status, to)
    const { rowCount } = await this.db.query(
      'UPDATE sandboxes SET status = $2, status_reason = $3, updated_at = now() WHERE id = $1 AND status = $4',
      [row.id, to, reason, row.status],
    )
    this.written(row.id)
    return rowCount !== 0
  }
}
