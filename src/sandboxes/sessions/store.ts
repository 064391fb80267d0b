// Session rows: what a session is (spec, phase, current attempt, journal cursor) as Postgres holds it.
import type { Db } from '../../core/db.js'
import { S0Error } from '../../core/errors.js'
import type { SessionPhase, SessionSpec } from './spec.js'

export interface Attempt {
  id: string
  number: number
  runtime_generation: number
  started_at?: string
  finished_at?: string
  exit_code?: number
  reason?: string
}

export interface SessionRow {
  id: string
  sandboxId: string
  teamId: string
  spec: SessionSpec
  specVersion: number
  phase: SessionPhase
  runtimeGeneration: number
  attempt: Attempt | null
  attempts: number
  restartCount: number
  lastSeq: number
  earliestSeq: number
  createdAt: Date
  updatedAt: Date
  lastActivityAt: Date
}

interface Raw {
  id: string
  sandbox_id: string
  team_id: string
  spec: SessionSpec
  spec_version: number
  phase: SessionPhase
  runtime_generation: number
  attempt: Attempt | null
  attempts: number
  restart_count: number
  last_seq: number
  earliest_seq: number
  created_at: Date
  updated_at: Date
  last_activity_at: Date
}

function toSession(r: Raw): SessionRow {
  return {
    id: r.id,
    sandboxId: r.sandbox_id,
    teamId: r.team_id,
    spec: r.spec,
    specVersion: r.spec_version,
    phase: r.phase,
    runtimeGeneration: r.runtime_generation,
    attempt: r.attempt,
    attempts: r.attempts,
    restartCount: r.restart_count,
    lastSeq: r.last_seq,
    earliestSeq: r.earliest_seq,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    lastActivityAt: r.last_activity_at,
  }
}

export class SessionStore {
  constructor(readonly db: Db) {}

  async list(sandboxId: string): Promise<SessionRow[]> {
    const { rows } = await this.db.query<Raw>(
      `SELECT * FROM execution_sessions WHERE sandbox_id = $1 ORDER BY created_at, id`,
      [sandboxId],
    )
    return rows.map(toSession)
  }

  async get(sandboxId: string, id: string): Promise<SessionRow> {
    const { rows } = await this.db.query<Raw>(
      `SELECT * FROM execution_sessions WHERE sandbox_id = $1 AND id = $2`,
      [sandboxId, id],
    )
    const r = rows[0]
    if (!r) throw new S0Error('session_not_found', `no session ${JSON.stringify(id)} in sandbox ${sandboxId}`)
    return toSession(r)
  }

  async byIdempotencyKey(
    sandboxId: string,
    key: string,
  ): Promise<{ row: SessionRow; hash: string | null } | undefined> {
    const { rows } = await this.db.query<Raw & { idempotency_hash: string | null }>(
      `SELECT * FROM execution_sessions WHERE sandbox_id = $1 AND idempotency_key = $2`,
      [sandboxId, key],
    )
    const r = rows[0]
    return r ? { row: toSession(r), hash: r.idempotency_hash } : undefined
  }

  /** A new session; undefined when another create took the idempotency key first. */
  async insert(
    s: { id: string; sandboxId: string; teamId: string; spec: SessionSpec; generation: number },
    idem?: { key: string; hash: string },
  ): Promise<SessionRow | undefined> {
    const { rows } = await this.db.query<Raw>(
      `INSERT INTO execution_sessions (id, sandbox_id, team_id, spec, phase, runtime_generation, idempotency_key, idempotency_hash)
       VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)
       ON CONFLICT (sandbox_id, idempotency_key) DO NOTHING RETURNING *`,
      [
        s.id,
        s.sandboxId,
        s.teamId,
        JSON.stringify(s.spec),
        s.generation,
        idem?.key ?? null,
        idem?.hash ?? null,
      ],
    )
    return rows[0] ? toSession(rows[0]) : undefined
  }

  async count(sandboxId: string): Promise<number> {
    const { rows } = await this.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM execution_sessions WHERE sandbox_id = $1`,
      [sandboxId],
    )
    return rows[0]?.n ?? 0
  }

  async setSpec(id: string, spec: SessionSpec): Promise<void> {
    await this.db.query(
      `UPDATE execution_sessions SET spec = $2, spec_version = spec_version + 1, updated_at = now() WHERE id = $1`,
      [id, JSON.stringify(spec)],
    )
  }

  /** The runtime side of a session (the process supervisor's writes). */
  async setRuntime(s: SessionRow): Promise<void> {
    await this.db.query(
      `UPDATE execution_sessions SET phase = $2, runtime_generation = $3, attempt = $4, attempts = $5,
              restart_count = $6, updated_at = now() WHERE id = $1`,
      [
        s.id,
        s.phase,
        s.runtimeGeneration,
        s.attempt ? JSON.stringify(s.attempt) : null,
        s.attempts,
        s.restartCount,
      ],
    )
  }

  async delete(id: string): Promise<void> {
    await this.db.query(`DELETE FROM execution_sessions WHERE id = $1`, [id])
  }
}
