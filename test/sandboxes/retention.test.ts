// Retention of sandbox events and logs against a real Postgres: by age (deleted sandboxes' rows
// too), a team's events by size and a sandbox's logs by size, oldest first, with a
// `logs.truncated` event saying what went.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EventLog } from '../../src/core/events.js'
import { silentLogger } from '../../src/core/log.js'
import { SandboxAudit } from '../../src/sandboxes/audit.js'
import { SandboxLogs } from '../../src/sandboxes/logs.js'
import { ObservabilityRetention } from '../../src/sandboxes/retention.js'
import { freshDb, type TestDb } from '../support/db.js'

let tdb: TestDb

beforeAll(async () => {
  tdb = await freshDb()
})
afterAll(async () => {
  await tdb.drop()
})

describe('observability retention', () => {
  it('deletes by age, then the oldest beyond each size bound, and reports dropped logs', async () => {
    const events = new EventLog(tdb.db, silentLogger, 'test')
    const audit = new SandboxAudit(events)
    const logs = new SandboxLogs(tdb.db, silentLogger)
    const old = new Date(Date.now() - 3 * 86_400_000)
    for (let i = 0; i < 5; i++)
      events.append({
        teamId: 't-old',
        sandboxId: 'sb-gone',
        occurredAt: old,
        source: 'manager',
        eventType: 'lifecycle',
        phase: 'result',
        outcome: 'succeeded',
        actor: { kind: 'service' },
        action: 'sandbox.claim',
        resource: { type: 'sandbox', id: 'sb-gone' },
      })
    for (let i = 0; i < 200; i++)
      audit.record('t-big', 'sb-big', {
        eventType: 'file',
        action: 'file.write',
        phase: 'effect',
        outcome: 'succeeded',
        attributes: { pad: 'x'.repeat(400), i },
      })
    for (let i = 0; i < 100; i++)
      logs.append({
        teamId: 't-big',
        sandboxId: 'sb-log',
        contextId: 'ctx-1',
        stream: 'stdout',
        occurredAt: new Date(),
        message: `${String(i).padStart(3, '0')}${'y'.repeat(997)}`,
      })
    await events.flush()
    await logs.flush()
    const retention = new ObservabilityRetention({
      db: tdb.db,
      policy: { maxAgeMs: 86_400_000, eventBytesPerTeam: 40_000, logBytesPerSandbox: 10_000 },
      audit,
      log: silentLogger,
    })
    await retention.run()
    await events.flush()
    expect(await events.list('t-old', 'sb-gone')).toHaveLength(0)
    const left = await events.list('t-big', 'sb-big', { limit: 1000, action: 'file.write' })
    expect(left.length).toBeGreaterThan(0)
    expect(left.length).toBeLessThan(200)
    // The newest stayed.
    expect(left.at(-1)?.attributes?.['i']).toBe(199)
    const kept = await logs.list('t-big', 'sb-log', { limit: 1000 })
    expect(kept).toHaveLength(10)
    expect(kept[0]?.message.startsWith('090')).toBe(true)
    const [truncated] = await events.list('t-big', 'sb-log', { action: 'logs.truncated' })
    expect(truncated?.attributes).toMatchObject({ dropped_lines: 90, dropped_bytes: 90_000 })
    await retention.stop()
    await events.close()
    await logs.close()
  })
})
