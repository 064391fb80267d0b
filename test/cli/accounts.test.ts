// `s0 team`, `s0 quota`, `s0 usage` in-process against a listening s0 server (real Postgres), and
// `s0 apikey create --team` (offline, on the same database) for a team made through the API.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { run as apikey } from '../../src/cli/apikey-command.js'
import { run as quota } from '../../src/cli/quota-command.js'
import { run as team } from '../../src/cli/team-command.js'
import { run as usage } from '../../src/cli/usage-command.js'
import { runCommand } from '../support/cli.js'
import { startTestServer, type TestServer } from '../support/server.js'

let server: TestServer

beforeAll(async () => {
  server = await startTestServer()
  vi.stubEnv('S0_API_URL', server.url)
  vi.stubEnv('S0_TOKEN', server.token)
  vi.stubEnv('DATABASE_URL', server.t.tdb.url)
  vi.stubEnv('S0_STATE_DIR', server.stateDir)
  vi.stubEnv('S0_LOG_LEVEL', 'silent')
})

afterAll(async () => {
  vi.unstubAllEnvs()
  await server?.close()
})

async function ok(cmd: (a: string[]) => Promise<number>, ...args: string[]): Promise<string> {
  const r = await runCommand(cmd, args)
  expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(0)
  return r.out
}

describe('s0 team / quota / usage', () => {
  it('creates a team, gives it a key offline, sets its quota, lists usage and removes it', async () => {
    const id = (await ok(team, 'create', 'Research Lab', '--slug', 'research')).trim()
    expect(id).toMatch(/^team-/)
    const teams = JSON.parse(await ok(team, 'list', '--json')) as Array<{ id: string; slug: string }>
    expect(teams.map((t) => t.slug)).toContain('research')
    expect(await ok(team, 'list')).toContain('Research Lab')

    // The offline key command finds the team made through the API (by slug), and the key works.
    const created = await runCommand(apikey, ['create', '--team', 'research', '--role', 'member'])
    expect(created.code).toBe(0)
    const key = created.out.trim()
    const me = await fetch(`${server.url}/api-keys/current`, { headers: { authorization: `Bearer ${key}` } })
    expect(((await me.json()) as { data: { api_key: { team_id: string } } }).data.api_key.team_id).toBe(id)

    const set = JSON.parse(await ok(quota, 'set', 'active_sandboxes', '3', '--team', 'research', '--json'))
    expect(set).toMatchObject({
      team_id: id,
      dimension: 'active_sandboxes',
      limit_value: 3,
      source: 'team_override',
    })
    await ok(quota, 'set', 'sandbox_claims', '10', '--interval', '60', '--team', id)
    const ls = JSON.parse(await ok(quota, 'ls', '--team', 'research', '--json')) as Array<{
      dimension: string
      limit_value: number | null
      interval_ms: number | null
    }>
    expect(ls.find((q) => q.dimension === 'sandbox_claims')).toMatchObject({
      limit_value: 10,
      interval_ms: 60_000,
    })
    expect(await ok(quota, 'ls', '--team', 'research')).toMatch(/active_sandboxes\s+capacity\s+3/)
    const got = JSON.parse(await ok(quota, 'get', 'api_requests', '--json'))
    expect(got).toMatchObject({ dimension: 'api_requests', unlimited: true })
    await ok(quota, 'set', 'active_sandboxes', 'none', '--team', id)
    expect(JSON.parse(await ok(quota, 'get', 'active_sandboxes', '--team', id, '--json')).source).toBe(
      'region_default',
    )

    const bad = await runCommand(quota, ['set', 'bogus', '1'])
    expect(bad.code).toBe(2)
    const neg = await runCommand(quota, ['set', 'api_requests', '-5'])
    expect(neg.code).toBe(2)

    const page = JSON.parse(await ok(usage, '--json')) as { windows: unknown[]; next_cursor: string }
    expect(Array.isArray(page.windows)).toBe(true)
    expect(await ok(usage, '--type', 'storage_gib_hours')).toContain('WINDOW START')

    expect(await ok(team, 'rm', 'research')).toContain(`team ${id} deleted`)
    const gone = await runCommand(team, ['rm', id])
    expect(gone.code).toBe(1)
    expect(gone.err).toContain('not_found')
  })

  it('a member key cannot create a team (403 forbidden, exit 1)', async () => {
    const created = await runCommand(apikey, ['create', '--role', 'member'])
    vi.stubEnv('S0_TOKEN', created.out.trim())
    try {
      const r = await runCommand(team, ['create', 'nope'])
      expect(r.code).toBe(1)
      expect(r.err).toContain('[forbidden]')
    } finally {
      vi.stubEnv('S0_TOKEN', server.token)
    }
  })
})
