// Observability end to end with the official SDK (npm sandbox0@0.9.5), unchanged: a sandbox's
// signed events (lifecycle, api_access, process, file) listed with filters and watched live as
// NDJSON, its contexts' output listed and tailed, another team's sandbox a 404, and every
// signature verified — then broken by editing a row.
import { APIError, Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiKey } from '../../src/accounts/index.js'
import { EventVerifier } from '../../src/core/event-signing.js'
import { asTeamId } from '../../src/core/ids.js'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
let client: Client
let stranger: Client

beforeAll(async () => {
  server = await startSandboxServer()
  client = new Client({ token: server.token, baseUrl: server.url + '/' })
  const other = asTeamId('team-obs-stranger')
  await server.t.tdb.db.query(`INSERT INTO teams (id, name) VALUES ($1, 'obs-stranger')`, [other])
  const key = (await createApiKey(server.t.tdb.db, { teamId: other, name: 'x', role: 'admin' })).key
  stranger = new Client({ token: key, baseUrl: server.url + '/' })
})

afterAll(async () => {
  await server?.close()
})

/** Reads watch lines until `until` says stop (bounded in lines and time). */
async function collect<T>(it: AsyncIterable<T>, until: (seen: T[]) => boolean, ms = 30_000): Promise<T[]> {
  const seen: T[] = []
  const deadline = Date.now() + ms
  for await (const line of it) {
    seen.push(line)
    if (until(seen) || seen.length > 10_000 || Date.now() > deadline) break
  }
  return seen
}

describe('sandbox0 SDK 0.9.5: observability', () => {
  it('records a claim, contexts, files and a pause as signed events, live and listed', async () => {
    const sandbox = await client.sandboxes.claim('default')
    const watch = await sandbox.watchObservabilityEvents()
    const live = collect(watch, (seen) =>
      seen.some(
        (l) =>
          l.type === 'event' &&
          (l.data as { action?: string })?.action === 'sandbox.pause' &&
          (l.data as { phase?: string }).phase === 'result',
      ),
    )
    const c = await sandbox.cmd('sh -c "echo hello-out; echo hello-err >&2; exit 3"')
    expect(c.exitCode).toBe(3)
    await sandbox.writeFile('/tmp/obs.txt', 'x')
    await client.sandboxes.pauseAndWait(sandbox.id, { pollIntervalMs: 100 })
    const lines = await live
    watch.body.cancel().catch(() => undefined)
    const actions = lines.filter((l) => l.type === 'event').map((l) => (l.data as { action: string }).action)
    expect(actions).toContain('sandbox.claim')
    expect(actions).toContain('context.start')
    expect(actions).toContain('context.exit')
    expect(actions).toContain('file.write')
    expect(actions).toContain('sandbox.pause')
    expect(lines.some((l) => l.type === 'watermark')).toBe(true)
    // Cursors strictly increase: a resumed watch gets no duplicate.
    const cursors = lines.filter((l) => l.type === 'event').map((l) => Number(l.cursor))
    expect([...cursors].sort((a, b) => a - b)).toEqual(cursors)
    expect(new Set(cursors).size).toBe(cursors.length)

    const page = await sandbox.listObservabilityEvents({ limit: 1000 })
    const all = page.events
    expect(all.length).toBeGreaterThanOrEqual(lines.filter((l) => l.type === 'event').length)
    for (const e of all) {
      expect(e.schemaVersion).toBe(2)
      expect(e.teamId).toBeTruthy()
      expect(e.sandboxId).toBe(sandbox.id)
      expect(e.integrity.algorithm).toBe('ed25519-sha256-v1')
      expect(e.integrity.signatureStatus).toBe('verified')
    }
    const exit = all.find((e) => e.action === 'context.exit')
    expect(exit?.eventType).toBe('process')
    expect(exit?.attributes?.['exit_code']).toBe(3)
    const pause = all.filter((e) => e.action === 'sandbox.pause')
    expect(pause.map((e) => e.phase)).toEqual(['attempt', 'result'])
    expect(pause[1]?.operationId).toBe(pause[0]?.operationId)
    expect(pause[1]?.parentEventId).toBe(pause[0]?.eventId)
    expect(pause[0]?.actor.kind).toBe('api_key')
    const access = all.find((e) => e.eventType === 'api_access')
    expect(access?.request?.statusCode).toBeGreaterThanOrEqual(200)
    expect(access?.request?.route).toMatch(/^\/api\/v1\/sandboxes\/:id/)

    // Filters and paging.
    const procs = await sandbox.listObservabilityEvents({ eventType: 'process' })
    expect(procs.events.length).toBeGreaterThanOrEqual(2)
    expect(procs.events.every((e) => e.eventType === 'process')).toBe(true)
    const first = await sandbox.listObservabilityEvents({ limit: 2 })
    expect(first.events).toHaveLength(2)
    expect(first.nextCursor).toBeTruthy()
    const second = await sandbox.listObservabilityEvents({ limit: 2, cursor: first.nextCursor! })
    expect(second.events[0]?.eventId).toBe(all[2]?.eventId)

    // The output of the context, listed and filtered by stream.
    const logs = await sandbox.listLogs({ stream: 'stderr' })
    expect(logs.logs.map((l) => l.message).join('')).toContain('hello-err')
    expect(logs.logs.every((l) => l.stream === 'stderr')).toBe(true)
    const out = await sandbox.listLogs()
    expect(out.logs.map((l) => l.message).join('')).toContain('hello-out')
    expect(out.logs[0]?.cursor).toMatch(/^[0-9]+$/)

    // Offline verification with the server's public key; an edited row no longer verifies.
    const verifier = new EventVerifier(server.events.signer.verifier.publicKey)
    const raw = await fetch(`${server.url}/api/v1/sandboxes/${sandbox.id}/observability/events?limit=1000`, {
      headers: { authorization: `Bearer ${server.token}` },
    })
    const body = (await raw.json()) as { data: { events: Array<Record<string, unknown>> } }
    for (const e of body.data.events) {
      const { integrity, ...doc } = e as { integrity: Record<string, string> }
      expect(verifier.check(doc, integrity as never)).toBe('verified')
    }
    await server.t.tdb.db.query(
      `UPDATE sandbox_events SET attributes = '{"exit_code": 0}' WHERE sandbox_id = $1 AND action = 'context.exit'`,
      [sandbox.id],
    )
    const tampered = await sandbox.listObservabilityEvents({ action: 'context.exit' })
    expect(tampered.events[0]?.integrity.signatureStatus).toBe('invalid')
    await client.sandboxes.delete(sandbox.id)
  })

  it('tails output live and keeps events of a deleted sandbox', async () => {
    const sandbox = await client.sandboxes.claim('default')
    const tail = await sandbox.watchLogs()
    const got = collect(tail, (seen) =>
      seen.some(
        (l) => l.type === 'log' && String((l.data as { message?: string })?.message).includes('tick-3'),
      ),
    )
    await sandbox.cmd('sh -c "for i in 1 2 3; do echo tick-$i; sleep 0.1; done"')
    const lines = await got
    tail.body.cancel().catch(() => undefined)
    const text = lines
      .filter((l) => l.type === 'log')
      .map((l) => (l.data as { message: string }).message)
      .join('')
    expect(text).toContain('tick-1')
    expect(text).toContain('tick-3')
    const id = sandbox.id
    await client.sandboxes.delete(sandbox.id)
    await server.events.flush()
    const after = await client.sandboxes.get(id).catch((e: unknown) => e)
    expect(after).toBeInstanceOf(APIError)
    const page = await sandbox.listObservabilityEvents()
    expect(page.events.some((e) => e.action === 'sandbox.delete')).toBe(true)
  })

  it("answers 404 for another team's sandbox and 400 for bad filters", async () => {
    const sandbox = await client.sandboxes.claim('default')
    const theirs = await stranger.sandboxes.get(sandbox.id).catch((e: unknown) => e)
    expect((theirs as APIError).statusCode).toBe(404)
    const foreign = stranger.sandbox(sandbox.id)
    for (const call of [
      () => foreign.listObservabilityEvents(),
      () => foreign.listLogs(),
      () => foreign.watchObservabilityEvents(),
    ]) {
      const err = await call().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(APIError)
      expect((err as APIError).statusCode).toBe(404)
    }
    const bad = await fetch(
      `${server.url}/api/v1/sandboxes/${sandbox.id}/observability/events?event_type=nope`,
      {
        headers: { authorization: `Bearer ${server.token}` },
      },
    )
    expect(bad.status).toBe(400)
    const badCursor = await fetch(
      `${server.url}/api/v1/sandboxes/${sandbox.id}/observability/logs?cursor=-1`,
      {
        headers: { authorization: `Bearer ${server.token}` },
      },
    )
    expect(badCursor.status).toBe(400)
    await client.sandboxes.delete(sandbox.id)
  })
})
