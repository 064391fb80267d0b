// A session's journal in Postgres: events are buffered per session and inserted in one statement
// per batch (output arrives in many small reads), their seqs handed out by that statement from
// the session row (dense per session, whoever writes). After each batch, retention drops the
// oldest events beyond the spec's byte cap or age and moves the cursor's `earliest`. Readers of
// this process hear about each committed batch (SSE, WebSocket).
import { EventEmitter } from 'node:events'
import type { Db } from '../../core/db.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'

export interface SessionEvent {
  seq: number
  sessionId: string
  runtimeGeneration: number
  attemptId?: string
  type: string
  stream?: string
  data?: Buffer
  exitCode?: number
  reason?: string
  occurredAt: Date
}

export type NewEvent = Omit<SessionEvent, 'seq' | 'sessionId' | 'occurredAt'>

export interface EventCursor {
  earliest: number
  latest: number
}

/** What each kept event weighs besides its payload (its row), against the retention cap. */
const EVENT_OVERHEAD_BYTES = 64

interface Pending {
  events: Array<NewEvent & { occurredAt: Date }>
  bytes: number
  timer: NodeJS.Timeout | undefined
  /** The batch being inserted (batches of one session go in order). */
  chain: Promise<void>
}

interface EventRow {
  seq: number
  session_id: string
  runtime_generation: number
  attempt_id: string | null
  type: string
  stream: string | null
  data: Buffer | null
  exit_code: number | null
  reason: string | null
  occurred_at: Date
}

function fromRow(r: EventRow): SessionEvent {
  return {
    seq: r.seq,
    sessionId: r.session_id,
    runtimeGeneration: r.runtime_generation,
    ...(r.attempt_id !== null ? { attemptId: r.attempt_id } : {}),
    type: r.type,
    ...(r.stream !== null ? { stream: r.stream } : {}),
    ...(r.data !== null ? { data: r.data } : {}),
    ...(r.exit_code !== null ? { exitCode: r.exit_code } : {}),
    ...(r.reason !== null ? { reason: r.reason } : {}),
    occurredAt: r.occurred_at,
  }
}

export class SessionJournal {
  private readonly pending = new Map<string, Pending>()
  private readonly written = new EventEmitter()

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {
    this.written.setMaxListeners(0)
  }

  /**
   * Queues an event; `now` flushes the batch at once (starts, exits, inputs: what a client waits
   * for; the promise resolves when it is committed), otherwise it goes within sessionFlushMs.
   */
  append(sessionId: string, ev: NewEvent, o: { now?: boolean } = {}): Promise<void> {
    let p = this.pending.get(sessionId)
    if (!p)
      this.pending.set(sessionId, (p = { events: [], bytes: 0, timer: undefined, chain: Promise.resolve() }))
    p.events.push({ ...ev, occurredAt: new Date() })
    p.bytes += (ev.data?.length ?? 0) + EVENT_OVERHEAD_BYTES
    if (o.now || p.bytes >= limits.sessionFlushBytes) return this.flush(sessionId)
    if (!p.timer) {
      p.timer = setTimeout(() => void this.flush(sessionId), limits.sessionFlushMs)
      p.timer.unref()
    }
    return Promise.resolve()
  }

  /** Inserts what is queued for the session (in order after any batch in flight). */
  flush(sessionId: string): Promise<void> {
    const p = this.pending.get(sessionId)
    if (!p) return Promise.resolve()
    clearTimeout(p.timer)
    p.timer = undefined
    const batch = p.events.splice(0)
    p.bytes = 0
    const step: Promise<void> = p.chain.then(async () => {
      if (batch.length > 0) {
        try {
          await this.insert(sessionId, batch)
        } catch (err) {
          // The session was deleted meanwhile (its rows are gone), or the database is down: the
          // batch is lost and logged; the process goes on.
          this.log.warn('session events not journaled', { sessionId, events: batch.length, err })
        }
        this.written.emit(`written:${sessionId}`)
      }
      // Forgotten only by the last batch queued: a batch still queued behind this one keeps the
      // entry, so the next event waits for it (seq order) and flushAll() finds it.
      if (p.chain === step && p.events.length === 0 && !p.timer && this.pending.get(sessionId) === p)
        this.pending.delete(sessionId)
    })
    p.chain = step
    return step
  }

  /** Flushes everything queued (a server shutting down). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.pending.keys()].map((id) => this.flush(id)))
  }

  private async insert(sessionId: string, batch: Pending['events']): Promise<void> {
    const col = <T>(f: (e: Pending['events'][number]) => T): T[] => batch.map(f)
    const { rows } = await this.db.query<{ retained_bytes: number; max_bytes: number; max_age: number }>(
      `WITH s AS (
         UPDATE execution_sessions
            SET last_seq = last_seq + $2, retained_bytes = retained_bytes + $3,
                last_activity_at = now(), updated_at = now()
          WHERE id = $1
          RETURNING last_seq - $2 AS base, retained_bytes,
                    (spec->'event_retention'->>'max_bytes')::bigint AS max_bytes,
                    (spec->'event_retention'->>'max_age_seconds')::int AS max_age
       ), ins AS (
         INSERT INTO execution_session_events
                (session_id, seq, runtime_generation, attempt_id, type, stream, data, exit_code, reason, occurred_at)
         SELECT $1, s.base + e.ord, e.gen, e.attempt, e.type, e.stream, e.data, e.exit_code, e.reason, e.at
           FROM s, unnest($4::int[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::int[], $10::text[], $11::timestamptz[])
                WITH ORDINALITY AS e(gen, attempt, type, stream, data, exit_code, reason, at, ord)
       )
       SELECT retained_bytes, max_bytes, max_age FROM s`,
      [
        sessionId,
        batch.length,
        batch.reduce((n, e) => n + (e.data?.length ?? 0) + EVENT_OVERHEAD_BYTES, 0),
        col((e) => e.runtimeGeneration),
        col((e) => e.attemptId ?? null),
        col((e) => e.type),
        col((e) => e.stream ?? null),
        col((e) => e.data ?? null),
        col((e) => e.exitCode ?? null),
        col((e) => e.reason ?? null),
        col((e) => e.occurredAt),
      ],
    )
    const s = rows[0]
    if (!s) return // the session is gone
    const oldest = batch[0]?.occurredAt.getTime() ?? Date.now()
    if (s.retained_bytes > s.max_bytes || Date.now() - oldest > s.max_age * 1000)
      await this.trim(sessionId, s.max_bytes, s.max_age)
    else await this.trimAge(sessionId, s.max_age)
  }

  /** Drops the oldest events beyond the byte cap or older than the age bound; moves `earliest`. */
  private async trim(sessionId: string, maxBytes: number, maxAgeSec: number): Promise<void> {
    await this.db.query(
      `WITH ranked AS (
         SELECT seq, sum(coalesce(octet_length(data), 0) + ${EVENT_OVERHEAD_BYTES}) OVER (ORDER BY seq DESC) AS tail
           FROM execution_session_events WHERE session_id = $1
       ), cut AS (
         SELECT coalesce(max(seq), 0) AS upto FROM ranked WHERE tail > $2
       ), gone AS (
         DELETE FROM execution_session_events e USING cut
          WHERE e.session_id = $1 AND (e.seq <= cut.upto OR e.occurred_at < now() - make_interval(secs => $3))
          RETURNING e.seq, coalesce(octet_length(e.data), 0) + ${EVENT_OVERHEAD_BYTES} AS b
       )
       UPDATE execution_sessions
          SET retained_bytes = retained_bytes - (SELECT coalesce(sum(b), 0) FROM gone),
              earliest_seq = greatest(earliest_seq, coalesce((SELECT max(seq) + 1 FROM gone), earliest_seq))
        WHERE id = $1`,
      [sessionId, maxBytes, maxAgeSec],
    )
  }

  /** The age bound alone, checked cheaply: only when the oldest kept event is past it. */
  private async trimAge(sessionId: string, maxAgeSec: number): Promise<void> {
    const { rows } = await this.db.query<{ old: boolean }>(
      `SELECT occurred_at < now() - make_interval(secs => $2) AS old FROM execution_session_events
        WHERE session_id = $1 ORDER BY seq LIMIT 1`,
      [sessionId, maxAgeSec],
    )
    if (rows[0]?.old) await this.trim(sessionId, Number.MAX_SAFE_INTEGER, maxAgeSec)
  }

  /** Events after `after` (at most `limit`), oldest first. */
  async list(sessionId: string, after: number, limit: number): Promise<SessionEvent[]> {
    const { rows } = await this.db.query<EventRow>(
      `SELECT * FROM execution_session_events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [sessionId, after, limit],
    )
    return rows.map(fromRow)
  }

  /** Calls `fn` after each committed batch of the session's events; returns the unsubscribe. */
  onWritten(sessionId: string, fn: () => void): () => void {
    const name = `written:${sessionId}`
    this.written.on(name, fn)
    return () => this.written.off(name, fn)
  }
}
