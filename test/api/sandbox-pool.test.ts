// Warm pools: a template's `pool.minIdle` sandboxes are started ahead of claims with their warm
// processes ready; concurrent claims never share one (SKIP LOCKED), claims beyond the pool start
// cold through the same API, the pool refills, and a changed template replaces its warm sandboxes.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { apiCall, startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
let client: Client

const api = (method: string, path: string, body?: unknown): ReturnType<typeof apiCall> =>
  apiCall(server, method, path, body)

async function idleCount(template: string): Promise<number> {
  const { rows } = await server.t.tdb.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM sandboxes WHERE status = 'idle' AND template_id = $1`,
    [template],
  )
  return rows[0]?.n ?? 0
}

async function waitIdle(template: string, n: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await idleCount(template)) < n) {
    if (Date.now() > deadline) throw new Error(`pool of ${template} did not reach ${n} idle sandboxes`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function waitDrained(template: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while ((await idleCount(template)) > 0) {
    if (Date.now() > deadline) throw new Error(`pool of ${template} did not drain`)
    await new Promise((r) => setTimeout(r, 100))
  }
  await server.svc.pool.idle()
}

const spec = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  mainContainer: { image: 's0/busybox', resources: { memory: '128Mi' } },
  pool: { minIdle: 3, maxIdle: 3 },
  warmProcesses: [
    {
      type: 'cmd',
      command: ['sh', '-c', 'echo warming; sleep 0.2; echo ready; exec sleep 3600'],
      readiness: { type: 'output', output: 'ready', timeoutMs: 20_000 },
    },
  ],
  ...extra,
})

beforeAll(async () => {
  server = await startSandboxServer({ sweepIntervalMs: 100 })
  client = new Client({ token: server.token, baseUrl: server.url })
})
afterAll(async () => {
  await server?.close()
})

describe('warm pools', () => {
  it('hands each warm sandbox to one claimer, starts the rest cold, and refills', async () => {
    expect((await api('POST', '/templates', { template_id: 'pooled', spec: spec() })).status).toBe(201)
    await waitIdle('pooled', 3)
    const warmIds = new Set(
      (
        await server.t.tdb.db.query<{ id: string }>(
          `SELECT id FROM sandboxes WHERE status = 'idle' AND template_id = 'pooled'`,
        )
      ).rows.map((r) => r.id),
    )
    // Idle sandboxes belong to nobody: the team does not see them.
    expect((await client.sandboxes.list()).sandboxes.filter((s) => s.templateId === 'pooled')).toEqual([])

    // Six claims at once against three warm sandboxes.
    const claims = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        api('POST', '/sandboxes', { template: 'pooled', config: { env_vars: { CLAIM: String(i) } } }),
      ),
    )
    expect(claims.map((c) => c.status)).toEqual(Array(6).fill(201))
    const ids = claims.map((c) => c.json.data.sandbox_id as string)
    expect(new Set(ids).size).toBe(6)
    const fromPool = ids.filter((id) => warmIds.has(id))
    expect(fromPool.length).toBe(3) // every warm one taken, each by one claimer
    for (const [i, id] of ids.entries()) {
      const sb = client.sandbox(id)
      // The claim's config applies to warm sandboxes too.
      expect((await sb.cmd('sh -c "echo $CLAIM"')).stdout).toBe(`${i}\n`)
      const contexts = await sb.listContexts()
      if (warmIds.has(id)) {
        // The warm process is there, running, and it said it was ready before the claim.
        expect(contexts.filter((c) => c.type === 'cmd' && c.running)).toHaveLength(1)
      }
    }
    // Taken ones are replaced.
    await waitIdle('pooled', 3)
    for (const id of ids) await client.sandboxes.delete(id)
  }, 180_000)

  it('replaces warm sandboxes of a template that changed, and drains a pool set to zero', async () => {
    await waitIdle('pooled', 3)
    const old = new Set(
      (
        await server.t.tdb.db.query<{ id: string }>(
          `SELECT id FROM sandboxes WHERE status = 'idle' AND template_id = 'pooled'`,
        )
      ).rows.map((r) => r.id),
    )
    expect(
      (await api('PUT', '/templates/pooled', { spec: spec({ envVars: { VERSION: '2' } }) })).status,
    ).toBe(200)
    const claimed = await client.sandboxes.claim('pooled')
    expect(old.has(claimed.id)).toBe(false) // never a sandbox of the old version
    expect((await claimed.cmd('sh -c "echo $VERSION"')).stdout).toBe('2\n')
    const deadline = Date.now() + 60_000
    for (;;) {
      const { rows } = await server.t.tdb.db.query<{ id: string }>(
        `SELECT id FROM sandboxes WHERE status = 'idle' AND template_id = 'pooled'`,
      )
      if (rows.length === 3 && rows.every((r) => !old.has(r.id))) break
      if (Date.now() > deadline) throw new Error('old warm sandboxes were not replaced')
      await new Promise((r) => setTimeout(r, 100))
    }
    await client.sandboxes.delete(claimed.id)
    expect(
      (await api('PUT', '/templates/pooled', { spec: spec({ pool: { minIdle: 0, maxIdle: 0 } }) })).status,
    ).toBe(200)
    await waitDrained('pooled')
    expect((await api('DELETE', '/templates/pooled')).status).toBe(200)
  }, 180_000)

  it('hands a warm python REPL to the first run after the claim', async () => {
    const r = await api('POST', '/templates', {
      template_id: 'warm-python',
      spec: {
        mainContainer: { image: 's0/default', resources: { memory: '512Mi' } },
        pool: { minIdle: 1, maxIdle: 1 },
        warmProcesses: [{ type: 'repl', alias: 'python' }],
      },
    })
    expect(r.status).toBe(201)
    await waitIdle('warm-python', 1, 120_000)
    const sb = await client.sandboxes.claim('warm-python')
    const [warm] = await sb.listContexts()
    expect(warm).toMatchObject({ type: 'repl', running: true })
    expect((await sb.run('python', 'import sys; print(sys.version_info[0])')).outputRaw).toBe('3\n')
    // The run used the warm REPL (no second context), and state persists in it.
    expect((await sb.listContexts()).map((c) => c.id)).toEqual([warm?.id])
    await sb.run('python', 'y = 20')
    expect((await sb.run('python', 'print(y + 22)')).outputRaw).toBe('42\n')
    // Another handle asks for another REPL: the warm one is handed out once.
    await client.sandbox(sb.id).run('python', 'print(1)')
    expect(await sb.listContexts()).toHaveLength(2)
    await client.sandboxes.delete(sb.id)
    await api('PUT', '/templates/warm-python', {
      spec: { mainContainer: { image: 's0/default', resources: { memory: '512Mi' } } },
    })
    await waitDrained('warm-python')
    expect((await api('DELETE', '/templates/warm-python')).status).toBe(200)
  }, 240_000)

  it('rejects bad warm processes in a template', async () => {
    const bad = [
      { type: 'repl' },
      { type: 'repl', alias: 'cobol' },
      { type: 'cmd' },
      { type: 'cmd', command: ['x'], readiness: { type: 'output' } },
      { type: 'cmd', command: ['x'], readiness: { type: 'sometime' } },
    ]
    for (const w of bad) {
      const r = await api('POST', '/templates', {
        template_id: 'bad-warm',
        spec: spec({ warmProcesses: [w] }),
      })
      expect({ w, status: r.status }).toEqual({ w, status: 400 })
    }
  })
})
