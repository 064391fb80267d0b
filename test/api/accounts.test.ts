// The account surface (`/users/me`, `/api-keys`, `/teams`, `/regions`, `/metadata`: no /api/v1
// prefix) and quotas and usage under /api/v1, driven by the SDK's generated client and its
// high-level `quotas` / `usage`, against a real server and Postgres: roles (a member key gets 403
// on admin routes), team isolation (another team's key or team is 404), keys shown once, team
// deletion refused while it holds volumes, the api_requests and volume_storage_gb quotas.
import { apis, Client, runtime } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { UsageRecorder, hashApiKey } from '../../src/accounts/index.js'
import { silentLogger } from '../../src/core/log.js'
import { startTestServer, type TestServer } from '../support/server.js'
import type { Json } from './sandbox-fixture.js'

let server: TestServer

beforeAll(async () => {
  server = await startTestServer()
})

afterAll(async () => {
  await server?.close()
})

function config(token: string): InstanceType<typeof runtime.Configuration> {
  return new runtime.Configuration({ basePath: server.url, accessToken: async () => token })
}

/** A raw call to any path (the account routes have no /api/v1 prefix). */
async function call(
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Json }> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, json: (await res.json()) as Json }
}

/** The status and error code a generated-client call must fail with. */
async function sdkError(p: Promise<unknown>): Promise<{ status: number; code: string }> {
  const err = await p.then(
    () => new Error('expected the call to fail'),
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(runtime.ResponseError)
  const res = (err as InstanceType<typeof runtime.ResponseError>).response
  return { status: res.status, code: ((await res.json()) as Json).error.code }
}

async function newKey(
  token: string,
  role: 'admin' | 'member',
  teamId?: string,
): Promise<{ id: string; key: string; teamId: string }> {
  const r = await call(token, 'POST', '/api-keys', {
    name: `${role}-key`,
    roles: [role],
    ...(teamId ? { team_id: teamId } : {}),
  })
  expect(r.status).toBe(201)
  return { id: r.json.data.id, key: r.json.data.key, teamId: r.json.data.team_id }
}

describe('API keys', () => {
  it('creates, lists, reads the current key, deactivates and deletes keys; the secret is shown once', async () => {
    const keys = new apis.ApiKeysApi(config(server.token))
    const created = await keys.apiKeysPost({
      createAPIKeyRequest: { name: 'ci', roles: ['member'], expiresIn: '30d' },
    })
    const k = created.data!
    expect(k.key).toMatch(/^s0_/)
    expect(k.roles).toEqual(['member'])
    expect(k.expiresAt.getTime()).toBeGreaterThan(Date.now() + 29 * 86_400_000)
    // Only the hash is stored.
    const stored = await server.t.tdb.db.query<{ key_hash: Buffer }>(
      'SELECT key_hash FROM api_keys WHERE id = $1',
      [k.id],
    )
    expect(stored.rows[0]?.key_hash.equals(hashApiKey(k.key!))).toBe(true)

    const list = (await keys.apiKeysGet()).data!.apiKeys!
    const listed = list.find((x) => x.id === k.id)
    expect(listed?.keyValue).toBeUndefined()
    expect(JSON.stringify(list)).not.toContain(k.key!)
    expect(listed?.isActive).toBe(true)

    const current = (await new apis.ApiKeysApi(config(k.key!)).apiKeysCurrentGet()).data!.apiKey!
    expect(current).toMatchObject({ id: k.id, roles: ['member'], isActive: true })
    const me = (await new apis.UsersApi(config(k.key!)).usersMeGet()).data!
    expect(me).toMatchObject({ id: k.id, isAdmin: false })

    await keys.apiKeysIdDeactivatePost({ id: k.id })
    expect((await call(k.key!, 'GET', '/api-keys/current')).status).toBe(401)
    expect((await keys.apiKeysGet()).data!.apiKeys!.find((x) => x.id === k.id)?.isActive).toBe(false)
    await keys.apiKeysIdDelete({ id: k.id })
    expect((await keys.apiKeysGet()).data!.apiKeys!.some((x) => x.id === k.id)).toBe(false)
    expect((await call(server.token, 'DELETE', `/api-keys/${k.id}`)).status).toBe(404)
  })

  it('a member key gets 403 forbidden on every admin route and may use the rest', async () => {
    const member = await newKey(server.token, 'member')
    const admin = await newKey(server.token, 'admin')
    for (const [method, path, body] of [
      ['GET', '/api-keys', undefined],
      ['POST', '/api-keys', { name: 'x' }],
      ['POST', `/api-keys/${admin.id}/deactivate`, undefined],
      ['DELETE', `/api-keys/${admin.id}`, undefined],
      ['POST', '/teams', { name: 'nope' }],
      ['PUT', `/teams/${member.teamId}`, { name: 'renamed' }],
      ['DELETE', `/teams/${member.teamId}`, undefined],
      ['GET', `/teams/${member.teamId}/members`, undefined],
      ['PUT', '/api/v1/quotas/api_requests', { limit_value: 1 }],
      [
        'POST',
        '/api/v1/credential-sources',
        { name: 'm', resolverKind: 'static_headers', spec: { staticHeaders: { values: { a: 'b' } } } },
      ],
    ] as const) {
      const r = await call(member.key, method, path, body)
      expect(r.status, `${method} ${path}`).toBe(403)
      expect(r.json.error.code, `${method} ${path}`).toBe('forbidden')
    }
    // What a member may do.
    expect((await call(member.key, 'GET', '/teams')).status).toBe(200)
    expect((await call(member.key, 'GET', '/api/v1/quotas')).status).toBe(200)
    expect((await call(member.key, 'POST', '/api/v1/sandboxvolumes', {})).status).toBe(201)
  })

  it('rejects a bad role, scope or expiry with 400', async () => {
    expect((await call(server.token, 'POST', '/api-keys', { name: 'x', roles: ['viewer'] })).status).toBe(400)
    expect(
      (await call(server.token, 'POST', '/api-keys', { name: 'x', scope: 'global' })).json.error.code,
    ).toBe('invalid_request')
    expect((await call(server.token, 'POST', '/api-keys', { name: 'x', expires_in: 'forever' })).status).toBe(
      400,
    )
  })
})

describe('teams', () => {
  it('an admin creates a team, acts in it through a key it makes there, and the teams stay apart', async () => {
    const teams = new apis.TeamsApi(config(server.token))
    const made = (await teams.teamsPost({ createTeamRequest: { name: 'Data Science', slug: 'data-sci' } }))
      .data!
    expect(made).toMatchObject({ name: 'Data Science', slug: 'data-sci', homeRegionId: 'local' })
    const listed = (await teams.teamsGet()).data!.teams!.map((t) => t.id)
    expect(listed).toContain(made.id)
    expect((await teams.teamsIdGet({ id: made.id })).data!.name).toBe('Data Science')
    const renamed = (await teams.teamsIdPut({ id: made.id, updateTeamRequest: { name: 'DS' } })).data!
    expect(renamed.name).toBe('DS')

    // The creator's admin key makes an admin key in the new team (s0's team_id extension).
    const inner = await newKey(server.token, 'admin', made.id)
    expect(inner.teamId).toBe(made.id)
    const members = (await teams.teamsIdMembersGet({ id: made.id })).data!.members!
    expect(members.map((m) => m.id)).toEqual([inner.id])
    expect(
      (await call(server.token, 'POST', `/teams/${made.id}/members`, { email: 'a@b.c', role: 'admin' })).json
        .error.code,
    ).toBe('not_supported')

    // Isolation: the new team sees itself only; the parent's keys and team are not found there.
    const innerTeams = (await new apis.TeamsApi(config(inner.key)).teamsGet()).data!.teams!
    expect(innerTeams.map((t) => t.id)).toEqual([made.id])
    const parentTeam = (await call(server.token, 'GET', '/api-keys/current')).json.data.api_key
      .team_id as string
    expect((await call(inner.key, 'GET', `/teams/${parentTeam}`)).status).toBe(404)
    const parentKey = (await call(server.token, 'GET', '/api-keys/current')).json.data.api_key.id as string
    expect((await call(inner.key, 'DELETE', `/api-keys/${parentKey}`)).status).toBe(404)
    expect((await call(inner.key, 'POST', `/api-keys/${parentKey}/deactivate`)).status).toBe(404)
    expect((await call(inner.key, 'POST', '/api-keys', { name: 'x', team_id: parentTeam })).status).toBe(404)
    // A volume of the new team is not the parent's.
    const vol = await call(inner.key, 'POST', '/api/v1/sandboxvolumes', {})
    expect(vol.status).toBe(201)
    expect((await call(server.token, 'GET', `/api/v1/sandboxvolumes/${vol.json.data.id}`)).status).toBe(404)

    // Deleting is refused while it holds a volume, then takes its keys with it.
    const refused = await sdkError(teams.teamsIdDelete({ id: made.id }))
    expect(refused.status).toBe(409)
    expect(refused.code).toBe('team_not_empty')
    const body = (await call(server.token, 'DELETE', `/teams/${made.id}`)).json
    expect(body.error.details.blocking_resources).toEqual([{ category: 'volumes', count: 1 }])
    expect((await call(inner.key, 'DELETE', `/api/v1/sandboxvolumes/${vol.json.data.id}`)).status).toBe(200)
    expect((await call(inner.key, 'DELETE', `/teams/${made.id}`)).json.error.code).toBe('conflict')
    await teams.teamsIdDelete({ id: made.id })
    expect((await call(inner.key, 'GET', '/teams')).status).toBe(401)
    expect((await call(server.token, 'GET', `/teams/${made.id}`)).status).toBe(404)
  })

  it('refuses a taken slug with 409 and serves regions and metadata', async () => {
    const teams = new apis.TeamsApi(config(server.token))
    await teams.teamsPost({ createTeamRequest: { name: 'one', slug: 'same-slug' } })
    expect(
      (await sdkError(teams.teamsPost({ createTeamRequest: { name: 'two', slug: 'same-slug' } }))).status,
    ).toBe(409)
    const regions = (await new apis.RegionsApi(config(server.token)).regionsGet()).data!.regions!
    expect(regions).toEqual([
      expect.objectContaining({ id: 'local', enabled: true, regionalGatewayUrl: server.url }),
    ])
    const meta = (await new apis.HealthApi(config('')).metadataGet()).data!
    expect(meta).toEqual({ gatewayMode: 'direct', service: 's0' })
  })
})

describe('quotas and usage', () => {
  it('lists every dimension (unset is unlimited), sets and clears one, and the SDK reads them', async () => {
    const c = new Client({ token: server.token, baseUrl: server.url })
    const all = await c.quotas.list()
    expect(all.map((q) => q.dimension)).toEqual([
      'active_sandboxes',
      'sandbox_claims',
      'volume_storage_gb',
      'snapshot_storage_gb',
      'api_requests',
      'network_egress_bytes',
      'network_ingress_bytes',
    ])
    const egress = all.find((q) => q.dimension === 'network_egress_bytes')!
    expect(egress).toMatchObject({
      limitValue: null,
      unlimited: true,
      source: 'unlimited',
      kind: 'rate',
      unit: 'bytes',
    })
    expect((await c.quotas.get('active_sandboxes')).source).toBe('region_default')

    const set = await call(server.token, 'PUT', '/api/v1/quotas/sandbox_claims', {
      limit_value: 50,
      interval_ms: 60_000,
    })
    expect(set.status).toBe(200)
    expect(await c.quotas.get('sandbox_claims')).toMatchObject({
      limitValue: 50,
      intervalMs: 60_000,
      unlimited: false,
      source: 'team_override',
      remaining: 50,
    })
    await call(server.token, 'PUT', '/api/v1/quotas/sandbox_claims', { limit_value: null })
    expect((await c.quotas.get('sandbox_claims')).unlimited).toBe(true)
    expect(
      (
        await call(server.token, 'PUT', '/api/v1/quotas/volume_storage_gb', {
          limit_value: 1,
          interval_ms: 60_000,
        })
      ).status,
    ).toBe(400)
    expect((await call(server.token, 'GET', '/api/v1/quotas/bogus')).status).toBe(400)
  })

  it('api_requests: a team over its limit gets 429 quota_exceeded naming the dimension; other teams are unaffected', async () => {
    const team = (await call(server.token, 'POST', '/teams', { name: 'busy' })).json.data
    const key = await newKey(server.token, 'member', team.id)
    // The team cannot lift its own limit; its parent sets it.
    const own = await newKey(server.token, 'admin', team.id)
    expect((await call(own.key, 'PUT', '/api/v1/quotas/api_requests', { limit_value: 1000 })).status).toBe(
      403,
    )
    const set = await call(server.token, 'PUT', '/api/v1/quotas/api_requests', {
      limit_value: 5,
      team_id: team.id,
    })
    expect(set.json.data).toMatchObject({ team_id: team.id, limit_value: 5 })
    // The refused call above counted (every authenticated request does); the parent reads the count.
    const before = (await call(server.token, 'GET', `/api/v1/quotas/api_requests?team_id=${team.id}`)).json
      .data
    expect(before.current).toBeGreaterThanOrEqual(1)
    const statuses: number[] = []
    let last: Json
    for (let i = 0; i < 6; i++) {
      const r = await call(key.key, 'GET', '/api/v1/sandboxvolumes')
      statuses.push(r.status)
      last = r.json
    }
    // A 60 s window may roll over mid-loop (then more pass); without that, exactly `remaining` do.
    const passed = statuses.filter((s) => s === 200).length
    expect(passed).toBeGreaterThanOrEqual(before.remaining)
    if (passed < statuses.length) {
      expect(statuses.slice(0, before.remaining)).toEqual(Array(before.remaining).fill(200))
      expect(statuses[before.remaining]).toBe(429)
      expect(last.error.code).toBe('quota_exceeded')
      expect(last.error.message).toContain('api_requests')
    }
    // The parent is not limited.
    expect((await call(server.token, 'GET', '/api/v1/sandboxvolumes')).status).toBe(200)
  })

  it('volume_storage_gb: a new volume is refused once the team holds its limit', async () => {
    const team = (await call(server.token, 'POST', '/teams', { name: 'storage' })).json.data
    const key = await newKey(server.token, 'member', team.id)
    expect(
      (
        await call(server.token, 'PUT', '/api/v1/quotas/volume_storage_gb', {
          limit_value: 0.000001,
          team_id: team.id,
        })
      ).status,
    ).toBe(200)
    const v = await call(key.key, 'POST', '/api/v1/sandboxvolumes', {})
    expect(v.status).toBe(201)
    const wrote = await fetch(`${server.url}/api/v1/sandboxvolumes/${v.json.data.id}/files?path=/f`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(4096, 1),
    })
    expect(wrote.status).toBe(200)
    const refused = await call(key.key, 'POST', '/api/v1/sandboxvolumes', {})
    expect(refused.status).toBe(429)
    expect(refused.json.error.code).toBe('quota_exceeded')
    expect(refused.json.error.message).toContain('volume_storage_gb')
    const q = await call(key.key, 'GET', '/api/v1/quotas/volume_storage_gb')
    expect(q.json.data.current).toBeGreaterThan(0)
  })

  it('usage windows: storage GiB-hours and network bytes billed per team and hour, paged by cursor', async () => {
    const db = server.t.tdb.db
    const team = (await call(server.token, 'GET', '/api-keys/current')).json.data.api_key.team_id as string
    // A file of the team's (small: its bytes stay inline until the packer moves them).
    const vol = await call(server.token, 'POST', '/api/v1/sandboxvolumes', {})
    const wrote = await fetch(`${server.url}/api/v1/sandboxvolumes/${vol.json.data.id}/files?path=/u`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(8192, 7),
    })
    expect(wrote.status).toBe(200)
    const rec = new UsageRecorder(db, silentLogger)
    const t0 = new Date()
    await rec.sample(t0)
    // Egress of a sandbox of the team, as the proxy records it.
    await db.query(
      `INSERT INTO sandbox_events (event_id, team_id, sandbox_id, occurred_at, ingested_at, source, event_type, phase,
         outcome, actor, action, resource, operation_id, producer, attributes)
       VALUES ('ev-usage-1', $1, 'sb-x', now(), now() - interval '1 minute', 'netd', 'network_audit', 'result',
         'succeeded', '{"kind":"sandbox_workload"}', 'connect', '{"type":"network_destination","id":"x:443"}', 'op',
         '{"service":"netd"}', '{"bytes_out": 1500, "bytes_in": 7000}')`,
      [team],
    )
    await rec.sample(new Date(t0.getTime() + 60_000))
    const c = new Client({ token: server.token, baseUrl: server.url })
    const page = await c.usage.listWindows({ windowType: 'network_egress_bytes' })
    expect(page.windows).toHaveLength(1)
    expect(page.windows[0]).toMatchObject({
      value: 1500,
      unit: 'bytes',
      subjectType: 'team',
      subjectId: team,
    })
    const ingress = await c.usage.listWindows({ windowType: 'network_ingress_bytes' })
    expect(ingress.windows[0]?.value).toBe(7000)
    // Its stored bytes are billed (60 s of them).
    const storage = await c.usage.listWindows({ windowType: 'storage_gib_hours' })
    expect(storage.windows.reduce((s, w) => s + w.value, 0)).toBeGreaterThan(0)
    // Paging: one window at a time, every window once.
    const all = await c.usage.listWindows({ limit: 100 })
    const seen: string[] = []
    let cursor: string | undefined
    for (let i = 0; i < 20; i++) {
      const p = await c.usage.listWindows({ limit: 1, ...(cursor ? { cursor } : {}) })
      seen.push(...p.windows.map((w) => w.windowId))
      if (!p.nextCursor) break
      cursor = p.nextCursor
    }
    expect(seen).toEqual(all.windows.map((w) => w.windowId))
    expect((await call(server.token, 'GET', '/api/v1/usage/windows?window_type=bogus')).status).toBe(400)
    // The quota reports the network bytes of its window.
    expect((await c.quotas.get('network_egress_bytes')).current).toBe(1500)
    // Another team sees none of it.
    const other = (await call(server.token, 'POST', '/teams', { name: 'elsewhere' })).json.data
    const ok = await newKey(server.token, 'member', other.id)
    expect((await call(ok.key, 'GET', '/api/v1/usage/windows')).json.data.windows).toEqual([])
  })
})
