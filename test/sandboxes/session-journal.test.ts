// The session journal against a real Postgres: batches of one session commit in the order their
// events were appended, and flushAll() returns only once every queued batch is committed, also
// when a batch was queued behind another still in flight. (The journal used to forget a session's
// queue when its first batch committed while a second was still queued: the next event, the
// process's exit, went in beside that batch and could take a seq before its output, where
// retention by bytes dropped it: the sessions retention test then waited for an exit that
// was gone.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Db } from '../../src/core/db.js'
import { silentLogger } from '../../src/core/log.js'
import { SessionJournal, type NewEvent } from '../../src/sandboxes/sessions/journal.js'
import { freshDb, type TestDb } from '../support/db.js'

let tdb: TestDb
let n = 0

beforeAll(async () => {
  tdb = await freshDb()
})
afterAll(async () => {
  await tdb.drop()
})

async function session(): Promise<string> {
  const id = `ses_journal${n++}`
  const sandbox = `sb-journal${n}`
  await tdb.db.query(
    `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host)
     VALUES ($1, 'team', 'busybox', 'running', '{}', 'runc', 'test')`,
    [sandbox],
  )
  await tdb.db.query(
    `INSERT INTO execution_sessions (id, sandbox_id, team_id, spec, phase, runtime_generation)
     VALUES ($1, $2, 'team', $3, 'running', 1)`,
    [id, sandbox, JSON.stringify({ event_retention: { max_bytes: 1 << 20, max_age_seconds: 3600 } })],
  )
  return id
}

const output = (i: number): NewEvent => ({
  runtimeGeneration: 1,
  type: 'output',
  stream: 'stdout',
  data: Buffer.from(`line ${i}\n`),
})

describe('session journal', () => {
  it('keeps append order and flushAll() waits for a batch queued behind one in flight', async () => {
    // The real database, with the journal's second insert held back 300 ms: a batch queued
    // behind another that is slow to commit (a busy database).
    let inserts = 0
    const db: Db = Object.create(tdb.db, {
      query: {
        value: async (sql: string, params?: unknown[]) => {
          if (sql.includes('INSERT INTO execution_session_events') && ++inserts === 2)
            await new Promise((r) => setTimeout(r, 300))
          return tdb.db.query(sql, params)
        },
      },
    }) as Db
    const journal = new SessionJournal(db, silentLogger)
    const id = await session()
    let flushed: Promise<void> | undefined
    // After the first batch commits, while the second (queued behind it) is in flight: one more
    // event, then flushAll() as a server shutting down would.
    const off = journal.onWritten(id, () => {
      off()
      setImmediate(() => {
        void journal.append(id, { runtimeGeneration: 1, type: 'exited', exitCode: 0 }, { now: true })
        flushed = journal.flushAll()
      })
    })
    const first = journal.append(id, output(1), { now: true })
    const second = journal.append(id, output(2), { now: true })
    await first
    await new Promise((r) => setImmediate(r))
    expect(flushed).toBeDefined()
    await flushed
    // Everything appended before flushAll() is committed when it returns, in append order.
    const events = await journal.list(id, 0, 100)
    expect(events.map((e) => [e.seq, e.type, e.data?.toString()])).toEqual([
      [1, 'output', 'line 1\n'],
      [2, 'output', 'line 2\n'],
      [3, 'exited', undefined],
    ])
    await second
  })
})
