// The sandbox event log against a real Postgres: appended events come back in order with every
// field; a full queue drops and counts; a failed write keeps its events and retries them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EventLog, type SandboxEvent } from '../../src/core/events.js'
import { silentLogger } from '../../src/core/log.js'
import { freshDb, type TestDb } from '../support/db.js'

let tdb: TestDb

beforeAll(async () => {
  tdb = await freshDb()
})
afterAll(async () => {
  await tdb.drop()
})

function event(i: number, sandboxId = 'sb-events'): SandboxEvent {
  return {
    teamId: 'team-a',
    sandboxId,
    occurredAt: new Date(1_700_000_000_000 + i),
    source: 'netd',
    eventType: 'network_audit',
    phase: 'result',
    outcome: i % 2 === 0 ? 'succeeded' : 'denied',
    actor: { kind: 'sandbox_workload', id: sandboxId },
    action: 'connect',
    resource: { type: 'network_destination', id: `10.0.0.${i}:443` },
    attributes: { i, bytes: i * 10 },
  }
}

describe('event log', () => {
  it('writes appended events in order, with every field', async () => {
    const log = new EventLog(tdb.db, silentLogger, 'test', { batchMax: 7 })
    const ids = Array.from({ length: 25 }, (_, i) => log.append(event(i)))
    await log.flush()
    const got = await log.list('team-a', 'sb-events', { limit: 100 })
    expect(got.map((e) => e.eventId)).toEqual(ids)
    expect(got[3]).toMatchObject({
      teamId: 'team-a',
      sandboxId: 'sb-events',
      occurredAt: new Date(1_700_000_000_003),
      source: 'netd',
      eventType: 'network_audit',
      outcome: 'denied',
      actor: { kind: 'sandbox_workload', id: 'sb-events' },
      resource: { type: 'network_destination', id: '10.0.0.3:443' },
      operationId: ids[3],
      producer: { service: 's0', instance: 'test' },
      attributes: { i: 3, bytes: 30 },
    })
    expect(got.every((e, i) => i === 0 || e.seq > (got[i - 1] as { seq: number }).seq)).toBe(true)
    expect(log.written).toBe(25)
    await log.close()
  })

  it('drops and counts what a full queue cannot take', async () => {
    const log = new EventLog(tdb.db, silentLogger, 'test', { queueMax: 10 })
    for (let i = 0; i < 15; i++) log.append(event(i, 'sb-full'))
    expect(log.dropped).toBe(5)
    await log.flush()
    expect(await log.list('team-a', 'sb-full')).toHaveLength(10)
    await log.close()
  })

  it('keeps the events of a failed write and writes them when the database is back', async () => {
    const log = new EventLog(tdb.db, silentLogger, 'test')
    await tdb.db.query('ALTER TABLE sandbox_events RENAME TO sandbox_events_away')
    try {
      log.append(event(1, 'sb-retry'))
      log.append(event(2, 'sb-retry'))
      await log.flush()
      expect(log.written).toBe(0)
      expect(log.dropped).toBe(0)
    } finally {
      await tdb.db.query('ALTER TABLE sandbox_events_away RENAME TO sandbox_events')
    }
    await log.flush()
    expect((await log.list('team-a', 'sb-retry')).map((e) => e.attributes?.['i'])).toEqual([1, 2])
    await log.close()
  })
})
