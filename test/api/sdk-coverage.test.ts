// The SDK 0.9.5 high-level methods no other test calls, end to end against a listening server
// running real sandboxes (runc): the Client's own observability and metrics calls, its WebSocket
// helpers used with a raw socket, a stream's resize and signal, a watch's unsubscribe, the
// `open` sessions (deleted on close), the template helper functions, `listTemplate` and
// `sandboxes.sandbox`. tools/sdk-coverage.ts lists which test covers which method (README).
import {
  APIError,
  Client,
  container,
  resources,
  templateCreateRequest,
  templateFromSandboxCreateRequest,
  templateSpec,
  templateUpdateRequest,
} from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { uncovered } from '../../tools/sdk-coverage.js'
import { eventually } from '../support/eventually.js'
import { apiCall, startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
let client: Client

beforeAll(async () => {
  server = await startSandboxServer({ metrics: { intervalMs: 200 } })
  client = new Client({ token: server.token, baseUrl: server.url })
}, 300_000)

afterAll(async () => {
  await server?.close()
})

/** Reads watch lines until `until` holds (bounded in lines and time). */
async function collect<T>(it: AsyncIterable<T>, until: (seen: T[]) => boolean, ms = 30_000): Promise<T[]> {
  const seen: T[] = []
  const deadline = Date.now() + ms
  for await (const line of it) {
    seen.push(line)
    if (until(seen) || seen.length > 10_000 || Date.now() > deadline) break
  }
  return seen
}

describe('sandbox0 SDK 0.9.5: the remaining high-level methods', () => {
  it("the Client's observability and metrics calls by sandbox id, listed and watched", async () => {
    const sb = await client.sandboxes.claim('default')
    const events = await client.watchSandboxObservabilityEvents(sb.id)
    const logs = await client.watchSandboxObservabilityLogs(sb.id)
    const sawEvent = collect(events, (seen) =>
      seen.some((l) => l.type === 'event' && (l.data as { action?: string }).action === 'file.write'),
    )
    const sawLog = collect(logs, (seen) =>
      seen.some(
        (l) => l.type === 'log' && String((l.data as { message?: string }).message).includes('cov-tick'),
      ),
    )
    await sb.cmd('sh -c "echo cov-tick"')
    await sb.writeFile('/tmp/cov.txt', 'x')
    expect((await sawEvent).length).toBeGreaterThan(0)
    expect((await sawLog).length).toBeGreaterThan(0)
    void events.body.cancel().catch(() => undefined)
    void logs.body.cancel().catch(() => undefined)

    const listed = await client.listSandboxObservabilityEvents(sb.id, { limit: 100 })
    expect(listed.events.map((e) => e.action)).toEqual(expect.arrayContaining(['sandbox.claim']))
    const lines = await client.listSandboxObservabilityLogs(sb.id)
    expect(lines.logs.map((l) => l.message).join('')).toContain('cov-tick\n')
    const catalog = await client.getSandboxMetricsCatalog(sb.id)
    expect(catalog.metrics.map((m) => m.name)).toContain('sandbox.cpu.usage')
    const metrics = await eventually(async () => {
      const m = await client.getSandboxMetrics(sb.id, { metrics: ['sandbox.memory.usage'] })
      return m.series.some((s) => s.segments.some((g) => g.points.length > 0)) ? m : undefined
    }, 'a memory sample')
    expect(metrics.series.every((s) => s.metric === 'sandbox.memory.usage')).toBe(true)
    await client.sandboxes.delete(sb.id)
  })

  it('websocketUrl and wsHeaders open a context stream with a plain WebSocket', async () => {
    const sb = client.sandboxes.sandbox((await client.sandboxes.claim('default')).id)
    const ctx = await sb.createContext({ type: 'cmd', cmd: { command: ['sh', '-c', 'read x; echo got-$x'] } })
    const url = client.websocketUrl(`/api/v1/sandboxes/${sb.id}/contexts/${ctx.id}/ws`)
    expect(url.startsWith('ws://127.0.0.1:')).toBe(true)
    const headers = await client.wsHeaders()
    expect(headers['Authorization']).toBe(`Bearer ${server.token}`)
    const ws = new WebSocket(url, { headers })
    const frames: { type: string; data?: string; exit_code?: number }[] = []
    const closed = new Promise<void>((resolve, reject) => {
      ws.on('message', (raw) => frames.push(JSON.parse(String(raw)) as (typeof frames)[number]))
      ws.on('close', () => resolve())
      ws.on('error', reject)
    })
    await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject))
    ws.send(JSON.stringify({ type: 'input', data: 'ws\n' }))
    await closed
    expect(
      frames
        .filter((f) => f.type === 'output')
        .map((f) => f.data)
        .join(''),
    ).toBe('got-ws\n')
    expect(frames.at(-1)).toMatchObject({ type: 'done', exit_code: 0 })
    await client.sandboxes.delete(sb.id)
  })

  it("a stream's resize and signal; a file watch's unsubscribe", async () => {
    const sb = await client.sandboxes.claim('default')
    const stream = await sb.cmdStream('sleep 60')
    stream.sendResize(30, 100)
    await eventually(async () => {
      const r = await apiCall(server, 'GET', `/sandboxes/${sb.id}/contexts/${stream.id}`)
      return r.json.data?.pty_size?.cols === 100 ? r : undefined
    }, 'the recorded size')
    stream.sendSignal('SIGTERM')
    const done = await stream.wait()
    expect(done.exitCode).not.toBe(0)

    const watcher = await sb.watchFiles('/tmp')
    expect(watcher.watchId).toBeTruthy()
    watcher.unsubscribe(watcher.watchId as string)
    // The server acknowledges, then the stream ends: no file event comes after it.
    const after: { type?: string; watchId?: string }[] = []
    for await (const e of watcher.events()) after.push(e)
    expect(after.map((e) => [e.type, e.watchId])).toEqual([['unsubscribed', watcher.watchId]])
    await client.sandboxes.delete(sb.id)
  })

  it('open sessions delete what they made on close; listTemplate; sandboxes.sandbox', async () => {
    const session = await client.sandboxes.open('busybox')
    const handle = client.sandboxes.sandbox(session.sandbox.id)
    expect((await handle.cmd('echo hi')).stdout).toBe('hi\n')
    await session.close()
    const gone = await client.sandboxes.get(session.sandbox.id).catch((e: unknown) => e)
    expect(gone).toBeInstanceOf(APIError)
    expect((gone as APIError).statusCode).toBe(404)

    const vs = await client.volumes.open({})
    expect((await client.volumes.get(vs.volume.id)).id).toBe(vs.volume.id)
    await vs.close()
    const vgone = await client.volumes.get(vs.volume.id).catch((e: unknown) => e)
    expect((vgone as APIError).statusCode).toBe(404)

    const all = await client.templates.listTemplate()
    expect(all.map((t) => t.templateId)).toEqual(expect.arrayContaining(['default', 'busybox']))
  })

  it('the template helpers build requests the server takes: create, update, from-sandbox', async () => {
    const spec = templateSpec(
      container('s0/busybox', resources('128Mi'), { env: [{ name: 'GREETING', value: 'hello' }] }),
      { displayName: 'Helpers', envVars: { OTHER: 'x' } },
    )
    const created = await client.templates.create(templateCreateRequest('helpers', spec))
    expect(created.spec.displayName).toBe('Helpers')
    const sb = await client.sandboxes.claim('helpers')
    expect((await sb.cmd('sh -c "echo $GREETING-$OTHER"')).stdout).toBe('hello-x\n')
    await sb.writeFile('/root/mark', 'kept')

    const updated = await client.templates.update(
      'helpers',
      templateUpdateRequest(
        templateSpec(container('s0/busybox', resources('256Mi')), { displayName: 'Helpers 2' }),
      ),
    )
    expect(updated.spec.displayName).toBe('Helpers 2')

    const captured = await client.templates.createFromSandbox(
      templateFromSandboxCreateRequest('helpers-captured', sb.id, { displayName: 'Captured' }),
      { wait: true, timeoutMs: 120_000, pollIntervalMs: 100 },
    )
    expect(captured.status?.creation?.state ?? 'ready').toBe('ready')
    const child = await client.sandboxes.claim('helpers-captured')
    expect(new TextDecoder().decode(await child.readFile('/root/mark'))).toBe('kept')
    for (const id of [child.id, sb.id]) await client.sandboxes.delete(id)
    for (const t of ['helpers-captured', 'helpers']) await client.templates.delete(t)
  }, 180_000)

  it('leaves no SDK method without a test, a reason, or the sessions note', () => {
    expect(uncovered()).toEqual([])
  })
})
