// The ingress proxy's routes, against a real sandbox running test/services/app-server.py (an echo
// server with streaming, SSE and a WebSocket echo): auth (none / bearer / header), CORS
// preflight, rate limit, method filter, prefix rewrite, WebSocket and SSE pass-through, a 100 MiB
// upload and download streamed, what the service sees of the caller (never the API key), and
// Host names that must not reach a service.
import { createHash } from 'node:crypto'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { appServerSource, ingress, startServicesServer, until } from './support.js'

let server: Awaited<ReturnType<typeof startServicesServer>>
let client: Client
let sandboxId: string
let host: (service: string) => string

const sha = (s: string): string => createHash('sha256').update(s).digest('hex')

beforeAll(async () => {
  server = await startServicesServer()
  client = new Client({ token: server.token, baseUrl: server.url })
  const sandbox = await client.sandboxes.claim('default')
  sandboxId = sandbox.id
  await sandbox.writeFile('/opt/app-server.py', await appServerSource())
  const app = (id: string, port: number, routes: unknown[]): unknown => ({
    id,
    port,
    runtime: { type: 'cmd', command: ['python3', '/opt/app-server.py', String(port)] },
    ingress: { _public: true, routes },
  })
  await sandbox.updateServices([
    app('echo', 9000, []),
    app('guarded', 9001, [
      {
        id: 'bearer',
        pathPrefix: '/bearer',
        auth: { mode: 'bearer', bearerTokenSha256: sha('t0ken') },
        resume: true,
      },
      {
        id: 'header',
        pathPrefix: '/header',
        auth: { mode: 'header', headerName: 'X-Api-Secret', headerValueSha256: sha('s3cret') },
        resume: true,
      },
      {
        id: 'cors',
        pathPrefix: '/cors',
        cors: { allowedOrigins: ['https://app.example'], allowedHeaders: ['x-custom'], maxAgeSeconds: 600 },
        resume: true,
      },
      { id: 'limited', pathPrefix: '/limited', rateLimit: { rps: 1, burst: 2 }, resume: true },
      { id: 'readonly', pathPrefix: '/ro', methods: ['GET'], resume: true },
      { id: 'rewrite', pathPrefix: '/api/v2', rewritePrefix: '/internal', resume: true },
    ]),
  ] as never)
  const port = new URL(server.url).port
  host = (service) => `${service}--${sandboxId}.localhost:${port}`
  for (const s of ['echo', 'guarded'])
    await until(
      async () => ((await ingress(server.url, host(s), '/ro/x')).status === 200 ? true : undefined),
      `${s} up`,
    )
}, 180_000)

afterAll(async () => {
  await server?.cleanup()
})

describe('ingress proxy', () => {
  it('forwards with X-Forwarded-* and never passes the API key on', async () => {
    const r = await ingress(server.url, host('echo'), '/a/b?c=d', {
      headers: {
        authorization: `Bearer ${server.token}`,
        'x-custom': 'kept',
        connection: 'keep-alive, x-hop',
        'x-hop': 'gone',
      },
    })
    expect(r.status).toBe(200)
    const seen = JSON.parse(r.text)
    expect(seen.path).toBe('/a/b?c=d')
    expect(seen.headers['authorization']).toBeUndefined()
    expect(seen.headers['x-custom']).toBe('kept')
    expect(seen.headers['x-hop']).toBeUndefined() // named in Connection: hop-by-hop
    expect(seen.headers['x-forwarded-host']).toBe(host('echo'))
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1')
    expect(seen.headers['x-forwarded-proto']).toBe('http')
  })

  it('checks bearer and header auth, consuming the credential', async () => {
    expect((await ingress(server.url, host('guarded'), '/bearer')).status).toBe(401)
    const wrong = await ingress(server.url, host('guarded'), '/bearer', {
      headers: { authorization: 'Bearer nope' },
    })
    expect(wrong.status).toBe(401)
    expect(wrong.headers['www-authenticate']).toBe('Bearer')
    expect(JSON.parse(wrong.text).error.code).toBe('unauthorized')
    const right = await ingress(server.url, host('guarded'), '/bearer/x', {
      headers: { authorization: 'Bearer t0ken' },
    })
    expect(right.status).toBe(200)
    expect(JSON.parse(right.text).headers['authorization']).toBeUndefined()

    expect(
      (await ingress(server.url, host('guarded'), '/header', { headers: { 'x-api-secret': 'bad' } })).status,
    ).toBe(401)
    const ok = await ingress(server.url, host('guarded'), '/header', {
      headers: { 'x-api-secret': 's3cret' },
    })
    expect(ok.status).toBe(200)
    expect(JSON.parse(ok.text).headers['x-api-secret']).toBeUndefined()
  })

  it('answers CORS preflights itself and adds CORS headers to answers', async () => {
    const pre = await ingress(server.url, host('guarded'), '/cors/x', {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'PUT' },
    })
    expect(pre.status).toBe(204)
    expect(pre.headers['access-control-allow-origin']).toBe('https://app.example')
    expect(pre.headers['access-control-allow-headers']).toBe('x-custom')
    expect(pre.headers['access-control-max-age']).toBe('600')
    const other = await ingress(server.url, host('guarded'), '/cors/x', {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'PUT' },
    })
    expect(other.status).toBe(403)
    const get = await ingress(server.url, host('guarded'), '/cors/x', {
      headers: { origin: 'https://app.example' },
    })
    expect(get.status).toBe(200)
    expect(get.headers['access-control-allow-origin']).toBe('https://app.example')
  })

  it('rate-limits a route with 429 and Retry-After', async () => {
    const statuses: number[] = []
    let retryAfter: string | string[] | undefined
    for (let i = 0; i < 4; i++) {
      const r = await ingress(server.url, host('guarded'), '/limited')
      statuses.push(r.status)
      if (r.status === 429) retryAfter = r.headers['retry-after']
    }
    expect(statuses.slice(0, 2)).toEqual([200, 200])
    expect(statuses).toContain(429)
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
  })

  it('filters methods, rewrites prefixes, and 404s paths no route takes', async () => {
    expect((await ingress(server.url, host('guarded'), '/ro/x')).status).toBe(200)
    const post = await ingress(server.url, host('guarded'), '/ro/x', { method: 'POST', body: 'x' })
    expect(post.status).toBe(405)
    expect(post.headers['allow']).toBe('GET')
    const rw = await ingress(server.url, host('guarded'), '/api/v2/users?id=1')
    expect(JSON.parse(rw.text).path).toBe('/internal/users?id=1')
    expect((await ingress(server.url, host('guarded'), '/api/v2x')).status).toBe(404)
    expect((await ingress(server.url, host('guarded'), '/elsewhere')).status).toBe(404)
  })

  it('passes WebSocket upgrades and SSE through', async () => {
    const u = new URL(server.url)
    const ws = new WebSocket(`ws://${u.host}/ws`, { headers: { host: host('echo') } })
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.once('open', () => ws.send('ping through the proxy'))
      ws.once('message', (data) => resolve(String(data)))
      ws.once('error', reject)
    })
    expect(echoed).toBe('ping through the proxy')
    ws.close()

    const sse = await ingress(server.url, host('echo'), '/sse')
    expect(sse.headers['content-type']).toBe('text/event-stream')
    expect(sse.text.match(/^data: \d/gm)).toHaveLength(3)
  })

  it('streams a 100 MiB upload and a 100 MiB download', async () => {
    const size = 100 * 1024 * 1024
    const block = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < block.length; i++) block[i] = i % 251
    const body = Buffer.concat(Array.from({ length: 100 }, () => block))
    const up = await ingress(server.url, host('echo'), '/upload', { method: 'PUT', body })
    expect(up.status).toBe(200)
    const seen = JSON.parse(up.text)
    expect(seen.bytes).toBe(size)
    expect(seen.sha256).toBe(createHash('sha256').update(body).digest('hex'))

    const down = await ingress(server.url, host('echo'), `/big/${size}`)
    expect(down.status).toBe(200)
    expect(down.body.length).toBe(size)
    const pattern = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    expect(down.body.subarray(size - 256).equals(pattern)).toBe(true)
  })

  it('reaches no service through Host tricks', async () => {
    const port = new URL(server.url).port
    // No such service, no such sandbox, a malformed label: 404 from the proxy.
    expect((await ingress(server.url, `nope--${sandboxId}.localhost:${port}`, '/')).status).toBe(404)
    expect((await ingress(server.url, `echo--sb-000000000000.localhost:${port}`, '/')).status).toBe(404)
    // Under another domain, or with extra labels: not a public URL, so the API answers (404, no route).
    const deeper = await ingress(server.url, `echo--${sandboxId}.evil.localhost:${port}`, '/')
    expect(deeper.status).toBe(404)
    expect(JSON.parse(deeper.text).error.message).toContain('no route')
    // The API host with an ingress-looking X-Forwarded-Host stays the API.
    const api = await ingress(server.url, `localhost:${port}`, '/', {
      headers: { 'x-forwarded-host': host('echo') },
    })
    expect(JSON.parse(api.text).error.message).toContain('no route')
    // An absolute-form target naming another host is refused.
    const abs = await ingress(server.url, host('echo'), `http://localhost:${port}/api/v1/sandboxes`)
    expect(abs.status).toBe(400)
    // The API's own paths on a service host go to the service, never to the API with its auth.
    const path = await ingress(server.url, host('echo'), '/api/v1/sandboxes')
    expect(JSON.parse(path.text).path).toBe('/api/v1/sandboxes')
  })

  it('records requests beyond the per-sandbox event budget in summaries, none uncounted', async () => {
    const n = 400
    for (let i = 0; i < n; i++) expect((await ingress(server.url, host('echo'), '/flood')).status).toBe(200)
    await new Promise((r) => setTimeout(r, 1_500)) // the summary's window
    await server.events.flush()
    const { rows } = await server.t.tdb.db.query<{ action: string; attributes: Record<string, unknown> }>(
      `SELECT action, attributes FROM sandbox_events WHERE sandbox_id = $1 AND event_type = 'api_access'`,
      [sandboxId],
    )
    const single = rows.filter(
      (r) => r.action === 'service.ingress' && r.attributes['path'] === '/flood',
    ).length
    const summaries = rows.filter((r) => r.action === 'service.ingress.summary')
    const summarized = summaries.reduce((a, r) => a + Number(r.attributes['requests']), 0)
    expect(single).toBeLessThan(n)
    expect(summaries.length).toBeGreaterThan(0)
    expect(single + summarized).toBeGreaterThanOrEqual(n)
    expect(summaries[0]?.attributes['statuses']).toMatchObject({ '2xx': expect.any(Number) })
  })

  it('records each ingress request as an api_access event', async () => {
    await ingress(server.url, host('echo'), '/recorded')
    await server.events.flush()
    const { rows } = await server.t.tdb.db.query<{ action: string; attributes: Record<string, unknown> }>(
      `SELECT action, attributes FROM sandbox_events WHERE sandbox_id = $1 AND event_type = 'api_access' ORDER BY seq`,
      [sandboxId],
    )
    const rec = rows.find((r) => r.attributes['path'] === '/recorded')
    expect(rec?.action).toBe('service.ingress')
    expect(rec?.attributes['status']).toBe(200)
    expect(Number(rec?.attributes['bytes_out'])).toBeGreaterThan(0)
  })
})
