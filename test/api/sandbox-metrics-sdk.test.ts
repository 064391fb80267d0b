// Sandbox runtime metrics end to end with the official SDK (npm sandbox0@0.9.5, unchanged): a
// real runc sandbox sampled every 200 ms from its cgroup, veth and writable root; the catalog;
// bad query parameters; another team's sandbox; a pause as a gap and a new segment.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiKey } from '../../src/accounts/index.js'
import { asTeamId } from '../../src/core/ids.js'
import { METRIC_NAMES } from '../../src/sandboxes/index.js'
import { sdkError } from '../support/sdk.js'
import { eventually } from '../support/eventually.js'
import { apiCall, startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
let client: Client
let other: Client

beforeAll(async () => {
  server = await startSandboxServer({ metrics: { intervalMs: 200 } })
  client = new Client({ token: server.token, baseUrl: server.url })
  await server.t.tdb.db.query(`INSERT INTO teams (id, name) VALUES ('team-metrics-other', 'other')`)
  const key = await createApiKey(server.t.tdb.db, {
    teamId: asTeamId('team-metrics-other'),
    name: 'o',
    role: 'member',
  })
  other = new Client({ token: key.key, baseUrl: server.url })
}, 300_000)

afterAll(async () => {
  await server?.close()
})

describe('sandbox metrics (SDK 0.9.5)', () => {
  it('reports CPU after a CPU-burning command, memory, processes, network and the writable root', async () => {
    const sb = await client.sandboxes.claim('default')
    const started = new Date(Date.now() - 1_000)
    await sb.cmd(
      `sh -c "dd if=/dev/zero of=/root/blob bs=1M count=8 && python3 -c 'x=0\nfor i in range(3000000): x+=i'"`,
    )
    const m = await eventually(async () => {
      const r = await sb.getMetrics({ startTime: started, stepSeconds: 1 })
      const time = r.series.find((s) => s.metric === 'sandbox.cpu.time')
      const usage = r.series.find((s) => s.metric === 'sandbox.cpu.usage')
      const points = usage?.segments.flatMap((g) => g.points) ?? []
      return time && points.some((p) => p.value > 0) ? r : undefined
    }, 'a CPU sample after the command')
    expect(m.stepSeconds).toBeGreaterThanOrEqual(1)
    expect(m.freshness.status).toBe('fresh')
    expect(m.freshness.newestObservedAt).toBeInstanceOf(Date)
    expect(m.partial).toBe(false)
    const byName = new Map(
      m.series.map((s) => [`${s.metric}${s.dimensions ? JSON.stringify(s.dimensions) : ''}`, s]),
    )
    // Every catalog metric is in the default answer (network once per direction).
    for (const name of METRIC_NAMES) expect([...byName.keys()].some((k) => k.startsWith(name))).toBe(true)
    const last = (key: string): number => {
      const s = byName.get(key)
      const pts = s?.segments.flatMap((g) => g.points) ?? []
      return pts.at(-1)?.value ?? NaN
    }
    const cpuTime = byName.get('sandbox.cpu.time')!
    expect(cpuTime.kind).toBe('counter')
    expect(cpuTime.statistic).toBe('rate') // auto: a counter's rate
    expect(cpuTime.unit).toBe('cores')
    expect(byName.get('sandbox.cpu.usage')!.unit).toBe('cores')
    expect(last('sandbox.cpu.limit')).toBeGreaterThan(0)
    expect(last('sandbox.memory.usage')).toBeGreaterThan(0)
    expect(last('sandbox.memory.limit')).toBeGreaterThan(last('sandbox.memory.working_set'))
    expect(last('sandbox.memory.utilization')).toBeGreaterThan(0)
    expect(last('sandbox.memory.utilization')).toBeLessThanOrEqual(1)
    expect(last('sandbox.process.count')).toBeGreaterThanOrEqual(1)
    // The 8 MiB written under /root are on the writable root.
    expect(last('sandbox.rootfs.writable.usage')).toBeGreaterThanOrEqual(8 * 1024 * 1024)
    expect(last('sandbox.rootfs.writable.inodes')).toBeGreaterThan(0)

    // The cumulative CPU time with statistic=last, in seconds.
    const total = await sb.getMetrics({
      startTime: started,
      metrics: ['sandbox.cpu.time'],
      statistic: 'last',
    })
    expect(total.series).toHaveLength(1)
    expect(total.series[0]!.unit).toBe('seconds')
    const pts = total.series[0]!.segments.flatMap((g) => g.points)
    expect(pts.at(-1)!.value).toBeGreaterThan(0.05)
    expect(total.stepSeconds).toBeGreaterThanOrEqual(1)

    const cat = await sb.getMetricsCatalog()
    expect(cat.metrics.map((d) => d.name).sort()).toEqual([...METRIC_NAMES].sort())
    expect(cat.metrics.find((d) => d.name === 'sandbox.network.io')!.dimensions).toEqual(['direction'])
    await client.sandboxes.delete(sb.id)
  }, 120_000)

  it('a pause is a gap and starts a new segment; counters restart there', async () => {
    const sb = await client.sandboxes.claim('busybox')
    const from = new Date(Date.now() - 1_000)
    await eventually(async () => {
      const r = await sb.getMetrics({ startTime: from, metrics: ['sandbox.process.count'], stepSeconds: 1 })
      return (r.series[0]?.segments[0]?.points.length ?? 0) >= 2 ? r : undefined
    }, 'samples before the pause')
    await client.sandboxes.pause(sb.id)
    await new Promise((r) => setTimeout(r, 1_500))
    await client.sandboxes.resume(sb.id)
    const r = await eventually(async () => {
      const q = await sb.getMetrics({ startTime: from, metrics: ['sandbox.process.count'], stepSeconds: 1 })
      return (q.series[0]?.segments.length ?? 0) >= 2 ? q : undefined
    }, 'a second segment after the resume')
    expect(r.gaps.some((g) => g.metric === 'sandbox.process.count' && g.reason === 'unavailable')).toBe(true)

    // The server's Prometheus text has the team's aggregates.
    const prom = await (await fetch(`${server.url}/metrics`)).text()
    const team = (await client.sandboxes.get(sb.id)).teamId
    expect(prom).toContain(`s0_team_sandboxes{team="${team}",status="running"}`)
    expect(prom).toMatch(
      new RegExp(`s0_team_sandbox_claims_total\\{team="${team}",warm="(hit|miss)"\\} [1-9]`),
    )
    expect(prom).toMatch(new RegExp(`s0_sandbox_pause_duration_seconds_count\\{team="${team}"\\} 1`))
    expect(prom).toMatch(
      new RegExp(`s0_sandbox_resume_duration_seconds_bucket\\{team="${team}",le="\\+Inf"\\} 1`),
    )
    expect(prom).toMatch(new RegExp(`s0_team_sandbox_cpu_seconds_total\\{team="${team}"\\} \\d`))
    expect(prom).toContain('# TYPE s0_sandbox_pause_duration_seconds histogram')
    await client.sandboxes.delete(sb.id)
  }, 120_000)

  it('refuses bad parameters with 400 and clear messages; another team gets 404', async () => {
    const sb = await client.sandboxes.claim('busybox')
    const cases: Array<[string, RegExp]> = [
      ['metrics=sandbox.cpu.nope', /unknown metric "sandbox.cpu.nope"/],
      ['statistic=median', /statistic/],
      ['statistic=rate&metrics=sandbox.memory.usage', /rate applies to counters only/],
      ['max_points=1001', /max_points/],
      ['step_seconds=0', /step_seconds/],
      ['start_time=yesterday', /start_time must be an RFC 3339 time/],
      ['start_time=2025-01-02T00:00:00Z&end_time=2025-01-01T00:00:00Z', /start_time must be before end_time/],
      ['start_time=2024-01-01T00:00:00Z&end_time=2025-01-01T00:00:00Z', /at most 30 days/],
    ]
    for (const [q, message] of cases) {
      const r = await apiCall(server, 'GET', `/sandboxes/${sb.id}/metrics?${q}`)
      expect(r.status, q).toBe(400)
      expect(r.json.error.code).toBe('bad_request')
      expect(r.json.error.message).toMatch(message)
    }
    // Through the SDK too.
    expect((await sdkError(sb.getMetrics({ maxPoints: 5000 }))).statusCode).toBe(400)
    // The server raises a step too small for max_points instead of refusing it.
    const raised = await sb.getMetrics({ stepSeconds: 1, maxPoints: 10 })
    expect(raised.stepSeconds).toBe(360)

    const theirs = other.sandbox(sb.id)
    expect((await sdkError(theirs.getMetrics())).statusCode).toBe(404)
    expect((await sdkError(theirs.getMetricsCatalog())).statusCode).toBe(404)
    expect((await sdkError(client.sandbox('sb-000000000000').getMetrics())).statusCode).toBe(404)
    await client.sandboxes.delete(sb.id)
  }, 120_000)
})
