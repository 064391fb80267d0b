// Quotas at claim on real sandboxes (runc, the busybox template): active_sandboxes and
// sandbox_claims refuse a claim over the limit with 429 quota_exceeded naming the dimension and
// change nothing; two concurrent claims at the limit do not both pass; usage bills sandbox seconds
// weighted by size.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { UsageRecorder } from '../../src/accounts/index.js'
import { silentLogger } from '../../src/core/log.js'
import { apiCall, startSandboxServer, type Json, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
// A team of its own, made by the bootstrap admin (which sets its quotas), used through a member key.
let team: { url: string; token: string; id: string }

async function raw(
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Json }> {
  return apiCall({ url: server.url, token }, method, path, body)
}

async function account(method: string, path: string, body?: unknown): Promise<Json> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  return ((await res.json()) as Json).data
}

async function setQuota(dimension: string, body: Record<string, unknown>): Promise<void> {
  const r = await raw(server.token, 'PUT', `/quotas/${dimension}`, { ...body, team_id: team.id })
  expect(r.status).toBe(200)
}

async function activeCount(): Promise<number> {
  const { rows } = await server.t.tdb.db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM sandboxes WHERE team_id = $1 AND status IN ('starting', 'running', 'paused')",
    [team.id],
  )
  return rows[0]?.n ?? 0
}

beforeAll(async () => {
  server = await startSandboxServer({ driver: 'runc' })
  const t = await account('POST', '/teams', { name: 'quota-team' })
  const k = await account('POST', '/api-keys', { name: 'claims', roles: ['member'], team_id: t.id })
  team = { url: server.url, token: k.key, id: t.id }
}, 300_000)

afterAll(async () => {
  await server?.close()
})

describe('claim quotas', () => {
  it('active_sandboxes: concurrent claims at the limit: exactly the limit pass, the rest get 429 naming it', async () => {
    await setQuota('active_sandboxes', { limit_value: 2 })
    const results = await Promise.all(
      [0, 1, 2, 3].map(() => raw(team.token, 'POST', '/sandboxes', { template: 'busybox' })),
    )
    const passed = results.filter((r) => r.status === 201 || r.status === 200)
    const refused = results.filter((r) => r.status === 429)
    expect(passed).toHaveLength(2)
    expect(refused).toHaveLength(2)
    for (const r of refused) {
      expect(r.json.error.code).toBe('quota_exceeded')
      expect(r.json.error.message).toContain('active_sandboxes')
    }
    expect(await activeCount()).toBe(2)
    const q = await raw(team.token, 'GET', '/quotas/active_sandboxes')
    expect(q.json.data).toMatchObject({ current: 2, remaining: 0, limit_value: 2 })
    // A paused sandbox still counts; deleting one makes room.
    const first = passed[0]?.json.data.sandbox_id as string
    expect((await raw(team.token, 'DELETE', `/sandboxes/${first}`)).status).toBe(200)
    const again = await raw(team.token, 'POST', '/sandboxes', { template: 'busybox' })
    expect(again.status).toBeLessThan(300)
    // A fork is a new sandbox: refused at the limit too.
    const fork = await raw(team.token, 'POST', `/sandboxes/${again.json.data.sandbox_id}/fork`, {})
    expect(fork.status).toBe(429)
    expect(fork.json.error.message).toContain('active_sandboxes')
    expect(await activeCount()).toBe(2)

    // Usage: the running sandboxes are billed in seconds, GiB-seconds and core-seconds.
    const rec = new UsageRecorder(server.t.tdb.db, silentLogger)
    const t0 = new Date()
    await rec.sample(t0)
    await rec.sample(new Date(t0.getTime() + 30_000))
    const w = await raw(team.token, 'GET', '/usage/windows?window_type=sandbox_seconds')
    expect(w.json.data.windows.reduce((s: number, x: Json) => s + x.value, 0)).toBeGreaterThanOrEqual(60)
    const mem = await raw(team.token, 'GET', '/usage/windows?window_type=sandbox_memory_gib_seconds')
    expect(mem.json.data.windows[0].value).toBeGreaterThan(0)

    for (const s of (await raw(team.token, 'GET', '/sandboxes')).json.data.sandboxes as Json[])
      await raw(team.token, 'DELETE', `/sandboxes/${s.id}`)
    await setQuota('active_sandboxes', { limit_value: null })
  }, 240_000)

  it('sandbox_claims: the claim over the window limit is refused and creates nothing', async () => {
    const { rows } = await server.t.tdb.db.query<{ value: number }>(
      "SELECT coalesce(sum(value), 0)::int AS value FROM quota_counters WHERE team_id = $1 AND dimension = 'sandbox_claims'",
      [team.id],
    )
    // An hour window holds the claims above: allow one more.
    await setQuota('sandbox_claims', { limit_value: (rows[0]?.value ?? 0) + 1, interval_ms: 3_600_000 })
    const ok = await raw(team.token, 'POST', '/sandboxes', { template: 'busybox' })
    expect(ok.status).toBeLessThan(300)
    const before = await activeCount()
    const over = await raw(team.token, 'POST', '/sandboxes', { template: 'busybox' })
    // (A window boundary between the two claims would let it pass; an hour window makes that rare.)
    expect(over.status).toBe(429)
    expect(over.json.error.message).toContain('sandbox_claims')
    expect(await activeCount()).toBe(before)
    await raw(team.token, 'DELETE', `/sandboxes/${ok.json.data.sandbox_id}`)
  }, 120_000)
})
