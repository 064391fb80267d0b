// Execution sessions of the sandboxes this server runs (issue 16 §5): create (idempotent by key),
// update, delete, desired state, attempts, inputs (idempotent by input_id), signals, terminal
// size, the journal; and the runtime hooks: the host calls `sandboxStarted` when a sandbox runs
// (claim, resume, adoption after a restart) and `sandboxStopping` before its processes end.
// Callers (SandboxService) have checked the sandbox is the team's.
import { isS0Error, S0Error } from '../../core/errors.js'
import { randomHexId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import { SessionJournal, type EventCursor, type SessionEvent } from './journal.js'
import { SessionRunner, type SessionSpawner } from './runner.js'
import { normalizeSpec, parseSessionSignal, processKey, specHash, type SessionSpecInput } from './spec.js'
import { SessionStore, type SessionRow } from './store.js'
import type { Db } from '../../core/db.js'

export interface InputRequest {
  input_id: string
  expected_attempt_id?: string
  data_base64?: string
  eof?: boolean
}

export interface InputResult {
  input_id: string
  attempt_id: string
  accepted: boolean
  duplicate: boolean
}

/** The sandbox as the manager needs it: where it runs and in which runtime generation. */
export interface SessionSandbox {
  id: string
  teamId: string
  runtimeGeneration: number
  /** Its processes run on this server now (sessions start at once). */
  live: boolean
}

const ACTIVE = new Set(['pending', 'starting', 'running', 'backoff', 'stopping', 'suspended'])

export class SessionManager {
  readonly store: SessionStore
  readonly journal: SessionJournal
  private readonly runners = new Map<string, SessionRunner>()
  /** Per-session chains: inputs of one session are applied one at a time (in order, deduplicated). */
  private readonly locks = new Map<string, Promise<unknown>>()

  constructor(
    db: Db,
    private readonly spawn: SessionSpawner,
    private readonly log: Logger,
  ) {
    this.store = new SessionStore(db)
    this.journal = new SessionJournal(db, log)
  }

  private runnerOf(row: SessionRow): SessionRunner {
    let r = this.runners.get(row.id)
    if (!r) {
      r = new SessionRunner(row, {
        store: this.store,
        journal: this.journal,
        spawn: this.spawn,
        log: this.log,
      })
      this.runners.set(row.id, r)
    }
    return r
  }

  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    const tail = next.catch(() => undefined)
    this.locks.set(id, tail)
    void tail.then(() => this.locks.get(id) === tail && this.locks.delete(id))
    return next
  }

  /** The row as it is now (a live runner's copy is the freshest for the runtime side). */
  private async fresh(sandboxId: string, id: string): Promise<SessionRow> {
    await this.journal.flush(id)
    return this.store.get(sandboxId, id)
  }

  list(sandboxId: string): Promise<SessionRow[]> {
    return this.store.list(sandboxId)
  }

  get(sandboxId: string, id: string): Promise<SessionRow> {
    return this.fresh(sandboxId, id)
  }

  async create(
    sb: SessionSandbox,
    input: SessionSpecInput,
    idempotencyKey?: string,
  ): Promise<{ session: SessionRow; created: boolean }> {
    const spec = normalizeSpec(input)
    const hash = specHash(input)
    const replay = async (): Promise<{ session: SessionRow; created: boolean } | undefined> => {
      if (idempotencyKey === undefined) return undefined
      const prior = await this.store.byIdempotencyKey(sb.id, idempotencyKey)
      if (!prior) return undefined
      if (prior.hash !== hash)
        throw new S0Error(
          'session_idempotency_mismatch',
          `Idempotency-Key ${JSON.stringify(idempotencyKey)} was used for another spec (session ${prior.row.id})`,
        )
      return { session: await this.fresh(sb.id, prior.row.id), created: false }
    }
    const before = await replay()
    if (before) return before
    if ((await this.store.count(sb.id)) >= limits.sessionsPerSandboxMax)
      throw new S0Error(
        'quota_exceeded',
        `sandbox ${sb.id} has ${limits.sessionsPerSandboxMax} sessions (the limit): delete one first`,
      )
    const row = await this.store.insert(
      {
        id: `ses_${randomHexId(12)}`,
        sandboxId: sb.id,
        teamId: sb.teamId,
        spec,
        generation: sb.runtimeGeneration,
      },
      idempotencyKey !== undefined ? { key: idempotencyKey, hash } : undefined,
    )
    if (!row) {
      const raced = await replay()
      if (raced) return raced
      throw new S0Error('conflict', 'the session was created and deleted concurrently; retry')
    }
    await this.journal.append(
      row.id,
      { type: 'created', runtimeGeneration: row.runtimeGeneration },
      { now: true },
    )
    if (spec.lifecycle.desired_state === 'running' && sb.live)
      await this.runnerOf(row).start(sb.runtimeGeneration, 'created')
    else if (spec.lifecycle.desired_state === 'stopped') await this.runnerOf(row).stop('created_stopped')
    return { session: await this.fresh(sb.id, row.id), created: true }
  }

  /** A new spec: a change to the process (command, cwd, env, io) replaces a running attempt. */
  async update(sb: SessionSandbox, id: string, input: SessionSpecInput): Promise<SessionRow> {
    const cur = await this.store.get(sb.id, id)
    const spec = normalizeSpec(input)
    await this.store.setSpec(id, spec)
    await this.journal.append(
      id,
      { type: 'spec_updated', runtimeGeneration: cur.runtimeGeneration },
      { now: true },
    )
    const r = this.runners.get(id)
    if (r) r.row = { ...r.row, spec }
    await this.applyDesired(sb, id, processKey(cur.spec) !== processKey(spec))
    return this.fresh(sb.id, id)
  }

  async delete(sb: SessionSandbox, id: string): Promise<void> {
    await this.store.get(sb.id, id)
    const r = this.runners.get(id)
    this.runners.delete(id)
    await r?.discard()
    await this.journal.flush(id)
    await this.store.delete(id)
  }

  async setDesired(sb: SessionSandbox, id: string, state: 'running' | 'stopped'): Promise<SessionRow> {
    const cur = await this.store.get(sb.id, id)
    const spec = { ...cur.spec, lifecycle: { ...cur.spec.lifecycle, desired_state: state } }
    await this.store.setSpec(id, spec)
    const r = this.runners.get(id)
    if (r) r.row = { ...r.row, spec }
    await this.applyDesired(sb, id, false)
    return this.fresh(sb.id, id)
  }

  /** Makes the process follow the spec's desired state (`restart`: a running attempt is replaced). */
  private async applyDesired(sb: SessionSandbox, id: string, restart: boolean): Promise<void> {
    const row = await this.store.get(sb.id, id)
    const r = this.runnerOf(row)
    if (row.spec.lifecycle.desired_state === 'stopped') return r.stop('desired_state')
    if (!sb.live) return
    if (r.running) {
      if (restart) await r.newAttempt(true)
      return
    }
    if (['starting', 'backoff'].includes(r.row.phase)) return
    await r.start(sb.runtimeGeneration, 'desired_state')
  }

  /** POST /attempts: a new attempt (replacing a running one only with `replace`). */
  async newAttempt(sb: SessionSandbox, id: string, replace: boolean): Promise<SessionRow> {
    const row = await this.store.get(sb.id, id)
    if (!sb.live) throw new S0Error('sandbox_not_running', `sandbox ${sb.id} is not running`)
    const r = this.runnerOf(row)
    if (r.running && !replace)
      throw new S0Error(
        'conflict',
        `session ${id} has a running attempt (${r.attemptId}): pass replace_current to replace it`,
      )
    if (row.spec.lifecycle.desired_state !== 'running') {
      const spec = { ...row.spec, lifecycle: { ...row.spec.lifecycle, desired_state: 'running' as const } }
      await this.store.setSpec(id, spec)
      r.row = { ...r.row, spec }
    }
    await r.newAttempt(replace)
    return this.fresh(sb.id, id)
  }

  private live(sb: SessionSandbox, row: SessionRow, expected?: string): SessionRunner {
    const r = this.runners.get(row.id)
    if (expected !== undefined && expected !== (r?.attemptId ?? row.attempt?.id))
      throw new S0Error(
        'session_attempt_mismatch',
        `session ${row.id}'s current attempt is ${r?.attemptId ?? row.attempt?.id ?? 'none'}, not ${expected}`,
      )
    if (!sb.live || !r?.running || !r.proc)
      throw new S0Error(
        'process_not_running',
        `session ${row.id} has no running process (phase ${row.phase})`,
      )
    return r
  }

  /** Writes an input once per input_id (a retry answers `duplicate: true` and writes nothing). */
  async input(sb: SessionSandbox, id: string, req: InputRequest): Promise<InputResult> {
    const row = await this.store.get(sb.id, id)
    return this.serial(id, async () => {
      const { rows } = await this.store.db.query<{ attempt_id: string; accepted: boolean }>(
        `SELECT attempt_id, accepted FROM execution_session_inputs WHERE session_id = $1 AND input_id = $2`,
        [id, req.input_id],
      )
      const prior = rows[0]
      if (prior)
        return {
          input_id: req.input_id,
          attempt_id: prior.attempt_id,
          accepted: prior.accepted,
          duplicate: true,
        }
      const data = Buffer.from(req.data_base64 ?? '', 'base64')
      if (data.length > limits.sessionInputBytesMax)
        throw new S0Error('payload_too_large', `an input is at most ${limits.sessionInputBytesMax} bytes`)
      const r = this.live(sb, row, req.expected_attempt_id)
      const proc = r.proc
      const attemptId = r.attemptId ?? ''
      if (!proc) throw new S0Error('process_not_running', `session ${id} has no running process`)
      if (data.length > 0) proc.stdin.write(data)
      if (req.eof) proc.stdin.end()
      r.touch()
      await this.store.db.query(
        `INSERT INTO execution_session_inputs (session_id, input_id, attempt_id, accepted) VALUES ($1, $2, $3, true)
         ON CONFLICT DO NOTHING`,
        [id, req.input_id, attemptId],
      )
      // Only the newest input ids are remembered (a bound per session).
      await this.store.db.query(
        `DELETE FROM execution_session_inputs WHERE session_id = $1 AND input_id IN (
           SELECT input_id FROM execution_session_inputs WHERE session_id = $1
            ORDER BY created_at DESC OFFSET $2)`,
        [id, limits.sessionInputIdsMax],
      )
      await this.journal.append(
        id,
        {
          type: 'input',
          runtimeGeneration: r.row.runtimeGeneration,
          attemptId,
          ...(data.length > 0 ? { data } : {}),
          ...(req.eof ? { reason: 'eof' } : {}),
        },
        { now: true },
      )
      return { input_id: req.input_id, attempt_id: attemptId, accepted: true, duplicate: false }
    })
  }

  async signal(
    sb: SessionSandbox,
    id: string,
    req: { signal: string; expected_attempt_id?: string },
  ): Promise<void> {
    const signal = parseSessionSignal(req.signal)
    const row = await this.store.get(sb.id, id)
    const r = this.live(sb, row, req.expected_attempt_id)
    await this.journal.append(
      id,
      {
        type: 'signal',
        reason: signal,
        runtimeGeneration: r.row.runtimeGeneration,
        ...(r.attemptId ? { attemptId: r.attemptId } : {}),
      },
      { now: true },
    )
    await r.proc?.kill(signal)
  }

  async resize(
    sb: SessionSandbox,
    id: string,
    req: { rows: number; cols: number; expected_attempt_id?: string },
  ): Promise<void> {
    const row = await this.store.get(sb.id, id)
    if (row.spec.io.mode !== 'pty')
      throw new S0Error(
        'not_supported',
        `session ${id} runs on pipes (io.mode "pipes"): it has no terminal to resize`,
      )
    const spec = {
      ...row.spec,
      io: { ...row.spec.io, terminal: { ...row.spec.io.terminal!, rows: req.rows, cols: req.cols } },
    }
    // The size is kept for the next attempts; a running one is resized now.
    await this.store.db.query(`UPDATE execution_sessions SET spec = $2, updated_at = now() WHERE id = $1`, [
      id,
      JSON.stringify(spec),
    ])
    const r = this.runners.get(id)
    if (r) r.row = { ...r.row, spec }
    if (req.expected_attempt_id !== undefined) this.live(sb, row, req.expected_attempt_id)
    // An attempt started on pipes before the spec moved to pty has no terminal: the size waits
    // for the next attempt.
    if (r?.proc)
      await r.proc.resize(req.rows, req.cols).catch((err: unknown) => {
        if (!(isS0Error(err) && err.code === 'not_supported')) throw err
      })
    await this.journal.append(
      id,
      { type: 'resize', reason: `${req.rows}x${req.cols}`, runtimeGeneration: row.runtimeGeneration },
      { now: true },
    )
  }

  /** Events after `after` (undefined: from the oldest kept); `session_cursor_expired` if retention passed it. */
  async events(
    sandboxId: string,
    id: string,
    after: number | undefined,
    limit: number,
  ): Promise<{ events: SessionEvent[]; cursor: EventCursor }> {
    const row = await this.fresh(sandboxId, id)
    const cursor = { earliest: row.earliestSeq, latest: row.lastSeq }
    checkCursor(id, after, cursor)
    const events = await this.journal.list(id, after ?? cursor.earliest - 1, limit)
    return { events, cursor }
  }

  /** The sandbox runs (claim, resume, adoption): its sessions come back by their runtime_recovery. */
  async sandboxStarted(sb: SessionSandbox): Promise<void> {
    for (const row of await this.store.list(sb.id)) {
      const old = this.runners.get(row.id)
      if (old?.running) continue
      this.runners.delete(row.id)
      if (!ACTIVE.has(row.phase) || row.spec.lifecycle.desired_state !== 'running') continue
      const r = this.runnerOf(row)
      const recover = row.phase === 'pending' || row.spec.lifecycle.runtime_recovery === 'restart'
      try {
        if (recover) await r.start(sb.runtimeGeneration, 'runtime_recovery')
        else {
          r.row = { ...r.row, runtimeGeneration: sb.runtimeGeneration }
          await r.stop('runtime_recovery_stop')
        }
      } catch (err) {
        this.log.warn('session not recovered', { sessionId: row.id, err })
      }
    }
  }

  /** The sandbox's processes are about to end (pause, delete, shutdown): its sessions are suspended. */
  async sandboxStopping(sandboxId: string, reason: string): Promise<void> {
    const mine = [...this.runners.values()].filter((r) => r.row.sandboxId === sandboxId)
    for (const r of mine) this.runners.delete(r.row.id)
    await Promise.all(
      mine.map((r) =>
        r
          .suspend(reason)
          .catch((err: unknown) => this.log.warn('session not suspended', { sessionId: r.row.id, err })),
      ),
    )
    await Promise.all(mine.map((r) => this.journal.flush(r.row.id)))
  }

  /** Server shutdown: every session this process runs is suspended (a restart recovers them). */
  async close(): Promise<void> {
    const sandboxes = new Set([...this.runners.values()].map((r) => r.row.sandboxId))
    for (const id of sandboxes) await this.sandboxStopping(id, 'server_shutdown')
    await this.journal.flushAll()
  }
}

/** A cursor older than what retention kept is 410, naming where reading can resume. */
export function checkCursor(id: string, after: number | undefined, cursor: EventCursor): void {
  if (after !== undefined && after + 1 < cursor.earliest)
    throw new S0Error(
      'session_cursor_expired',
      `session ${id}: events after ${after} were dropped by its event retention; the oldest kept is ${cursor.earliest}`,
      { details: { earliest: cursor.earliest, latest: cursor.latest } },
    )
}
