// The sandbox event log against a real Postgres: appended events come back in order with every
// field; a full queue drops and counts; a failed write keeps its events and retries them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  EVENT_SIGNING_KEY_FILE,
  EventKeyring,
  EventSigner,
  canonicalJson,
} from '../../src/core/event-signing.js'
import { EventLog, eventDocument, signatureStatus, type SandboxEvent } from '../../src/core/events.js'
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

  it('signs every event; an edited row, another key or a lost signature do not verify', async () => {
    const signer = EventSigner.ephemeral()
    const log = new EventLog(tdb.db, silentLogger, 'test', { signer, region: 'eu-1', cluster: 'c1' })
    log.append({ ...event(1, 'sb-signed'), request: { request_id: 'r1', status_code: 200 } })
    log.append(event(2, 'sb-signed'))
    await log.flush()
    const keyring = new EventKeyring([signer.verifier])
    const got = await log.list('team-a', 'sb-signed')
    expect(got.map((e) => signatureStatus(e, keyring))).toEqual(['verified', 'verified'])
    expect(eventDocument(got[0]!)).toMatchObject({ region_id: 'eu-1', cluster_id: 'c1', schema_version: 2 })
    expect(got[0]?.request).toEqual({ request_id: 'r1', status_code: 200 })
    expect(got[0]?.integrity?.signing_key_id).toBe(signer.keyId)
    // Another server's key: unavailable, not invalid (it may be a key this reader lacks).
    expect(signatureStatus(got[0]!, new EventKeyring([EventSigner.ephemeral().verifier]))).toBe('unavailable')
    await tdb.db.query(
      `UPDATE sandbox_events SET outcome = 'succeeded' WHERE sandbox_id = 'sb-signed' AND outcome = 'denied'`,
    )
    const edited = await log.list('team-a', 'sb-signed')
    expect(edited.map((e) => signatureStatus(e, keyring))).toEqual(['invalid', 'verified'])
    await tdb.db.query(`UPDATE sandbox_events SET integrity = NULL WHERE sandbox_id = 'sb-signed'`)
    expect(signatureStatus((await log.list('team-a', 'sb-signed'))[1]!, keyring)).toBe('unavailable')
    await log.close()
  })

  it('keeps one key per state directory, private to its owner', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 's0-evkey-'))
    try {
      const a = await EventSigner.load(dir)
      const b = await EventSigner.load(dir)
      expect(b.keyId).toBe(a.keyId)
      expect((await stat(path.join(dir, EVENT_SIGNING_KEY_FILE))).mode & 0o077).toBe(0)
      const doc = { b: 1, a: [{ y: 2, x: new Date(0) }] }
      expect(canonicalJson(doc)).toBe('{"a":[{"x":"1970-01-01T00:00:00.000Z","y":2}],"b":1}')
      expect(b.verifier.check(doc, a.sign(doc))).toBe('verified')
      expect(b.verifier.check({ ...doc, b: 2 }, a.sign(doc))).toBe('invalid')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('gives two writers one gapless order: every event once, cursors increasing', async () => {
    const a = new EventLog(tdb.db, silentLogger, 'writer-a', { batchMax: 5 })
    const b = new EventLog(tdb.db, silentLogger, 'writer-b', { batchMax: 3 })
    for (let i = 0; i < 60; i++) (i % 2 ? a : b).append(event(i, 'sb-two'))
    await Promise.all([a.flush(), b.flush()])
    const got = await a.list('team-a', 'sb-two', { limit: 1000 })
    expect(got).toHaveLength(60)
    expect(new Set(got.map((e) => e.eventId)).size).toBe(60)
    const filtered = await a.list('team-a', 'sb-two', { after: got[9]!.seq, outcome: 'denied', limit: 1000 })
    expect(filtered.every((e) => e.outcome === 'denied' && e.seq > got[9]!.seq)).toBe(true)
    expect(filtered).toEqual(got.slice(10).filter((e) => e.outcome === 'denied'))
    await Promise.all([a.close(), b.close()])
  })
})
