// The proxy's HTTP layer end to end over loopback: the test is the sandbox (trusting only its CA),
// a harness plays the proxy core (terminateTls + serveHttp + originate), echo servers are the
// destinations. Injection, substitution, denial, h2 both ways, WebSocket, failures, keep-alive.
import crypto from 'node:crypto'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import WebSocket from 'ws'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { limits } from '../../src/core/limits.js'
import {
  h2Request,
  header,
  json,
  makePki,
  sandboxH2,
  sandboxRequest,
  slowUploads,
  startH2Upstream,
  startHttpsUpstream,
  startMitm,
  startPlainUpstream,
  UPSTREAM_NAME,
  type Echo,
  type Mitm,
  type Pki,
  type Upstream,
} from './tls-support.js'

let pki: Pki
let h1Up: Upstream
let h2Up: Upstream
let plainUp: Upstream
const mitms: Mitm[] = []

beforeAll(async () => {
  pki = makePki()
  h1Up = await startHttpsUpstream(pki.upstreamLeaf)
  h2Up = await startH2Upstream(pki.upstreamLeaf)
  plainUp = await startPlainUpstream()
})
afterEach(async () => {
  for (const m of mitms.splice(0)) await m.close()
})
afterAll(async () => {
  await Promise.all([h1Up.close(), h2Up.close(), plainUp.close()])
})

async function mitm(opts: Partial<Parameters<typeof startMitm>[0]> = {}): Promise<Mitm> {
  const m = await startMitm({ pki, upstreamPort: h1Up.port, ...opts })
  mitms.push(m)
  return m
}

const PLACEHOLDER = 's0ph_0123456789abcdef'
const SECRET = 'sk-live/real+secret=1'

describe('HTTPS through terminate-reoriginate (HTTP/1.1 both sides)', () => {
  it('replaces a header the sandbox sent with the injected one', async () => {
    const m = await mitm()
    m.verdict = () => ({ action: 'allow', setHeaders: { Authorization: `Bearer ${SECRET}` } })
    const a = await sandboxRequest(m, pki, {
      path: '/v1/models?x=1',
      headers: { authorization: 'Bearer sandbox-fake', 'x-keep': 'me' },
    })
    expect(a.status).toBe(200)
    const e = json(a)
    expect(header(e, 'authorization')).toEqual([`Bearer ${SECRET}`])
    expect(header(e, 'x-keep')).toEqual(['me'])
    expect(header(e, 'host')).toEqual([UPSTREAM_NAME])
    expect(e.url).toBe('/v1/models?x=1')
    await m.reported(1)
    expect(m.done[0]).toMatchObject({
      status: 200,
      req: {
        method: 'GET',
        authority: UPSTREAM_NAME,
        path: '/v1/models',
        query: 'x=1',
        secure: true,
        httpVersion: '1.1',
      },
    })
    // The hook saw the sandbox's own header, never the secret.
    expect(m.done[0]?.req.headers['authorization']).toBe('Bearer sandbox-fake')
  })

  it('swaps a placeholder in a header, the query and a body of known length', async () => {
    const m = await mitm()
    m.verdict = () => ({
      action: 'allow',
      substitutions: [{ placeholder: PLACEHOLDER, value: SECRET, locations: ['header', 'query', 'body'] }],
    })
    const body = Buffer.from(JSON.stringify({ key: PLACEHOLDER, again: PLACEHOLDER }))
    const a = await sandboxRequest(m, pki, {
      method: 'POST',
      path: `/submit?token=${PLACEHOLDER}&n=2`,
      headers: { 'x-api-key': PLACEHOLDER, 'content-type': 'application/json' },
      body,
    })
    const e = json(a)
    expect(header(e, 'x-api-key')).toEqual([SECRET])
    expect(new URL(e.url, 'http://x').searchParams.get('token')).toBe(SECRET)
    expect(JSON.parse(e.body)).toEqual({ key: SECRET, again: SECRET })
    expect(header(e, 'content-length')).toEqual([String(Buffer.byteLength(e.body))])
    await m.reported(1)
    expect(m.done[0]?.bytesOut).toBe(Buffer.byteLength(e.body))
    expect(m.done[0]?.req.query).toContain(PLACEHOLDER) // hooks never see the secret
  })

  it('fails closed (502) on a body it cannot substitute, or forwards it unchanged when fail-open', async () => {
    const m = await mitm()
    const subs = [{ placeholder: PLACEHOLDER, value: SECRET, locations: ['body' as const] }]
    m.verdict = () => ({ action: 'allow', substitutions: subs })
    const big = Buffer.alloc(limits.egressSubstitutionBodyBytesMax + 1, 'a')
    const tooBig = await sandboxRequest(m, pki, { method: 'POST', body: big })
    expect(tooBig.status).toBe(502)
    expect(JSON.parse(tooBig.body.toString())).toMatchObject({ error: 'egress_http_substitution_failed' })
    const chunked = await sandboxRequest(m, pki, {
      method: 'POST',
      body: [Buffer.from(PLACEHOLDER), Buffer.from('!')],
    })
    expect(chunked.status).toBe(502)
    expect(chunked.body.toString()).toContain('no Content-Length')
    await m.reported(2)
    expect(m.done.map((d) => d.errorCode)).toEqual([
      'egress_http_substitution_failed',
      'egress_http_substitution_failed',
    ])

    m.verdict = () => ({ action: 'allow', substitutions: subs, failurePolicy: 'fail-open' })
    const open = await sandboxRequest(m, pki, {
      method: 'POST',
      body: [Buffer.from(PLACEHOLDER), Buffer.from('!')],
    })
    expect(open.status).toBe(200)
    expect(json(open).body).toBe(`${PLACEHOLDER}!`)
    expect(header(json(open), 'transfer-encoding')).toEqual(['chunked'])
    const openBig = await sandboxRequest(m, pki, { method: 'POST', body: big })
    expect(json(openBig).bodySha256).toBe(crypto.createHash('sha256').update(big).digest('hex'))
  })

  it('denies with 403 naming the rule, and the connection stays usable', async () => {
    const m = await mitm()
    m.verdict = (req) =>
      req.path.startsWith('/admin')
        ? { action: 'deny', status: 403, reason: 'path /admin is denied', rule: 'no-admin' }
        : { action: 'allow' }
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const denied = await sandboxRequest(m, pki, { path: '/public/../admin/users', agent })
      expect(denied.status).toBe(403)
      expect(denied.headers.connection).not.toBe('close') // nothing unread: the connection is kept
      expect(JSON.parse(denied.body.toString())).toEqual({
        error: 'egress_denied',
        rule: 'no-admin',
        reason: 'path /admin is denied',
      })
      const ok = await sandboxRequest(m, pki, { path: '/public/x', agent })
      expect(ok.status).toBe(200)
      await m.reported(2)
      expect(m.done[0]).toMatchObject({ status: 403, req: { path: '/admin/users' } })
    } finally {
      agent.destroy()
    }
  })

  it('keeps connections alive on both sides and streams large bodies both ways', async () => {
    const before = h1Up.connections
    const m = await mitm()
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      for (let i = 0; i < 3; i++)
        expect((await sandboxRequest(m, pki, { path: `/n${i}`, agent })).status).toBe(200)
      const n = 8 * 1024 * 1024
      const down = await sandboxRequest(m, pki, { path: `/bytes?n=${n}`, agent })
      expect(down.body.length).toBe(n)
      const up = Buffer.alloc(6 * 1024 * 1024, 'u')
      const e = json(await sandboxRequest(m, pki, { method: 'PUT', body: up, agent }))
      expect(e.bodyLength).toBe(up.length)
      expect(e.bodySha256).toBe(crypto.createHash('sha256').update(up).digest('hex'))
      await m.reported(5)
      expect(h1Up.connections - before).toBe(1) // one sandbox connection, one destination connection
      expect(m.done[3]?.bytesIn).toBe(n)
      expect(m.done[4]?.bytesOut).toBe(up.length)
    } finally {
      agent.destroy()
    }
  })

  it('drops hop-by-hop fields, keeps end-to-end ones, and forwards trailers', async () => {
    const m = await mitm()
    const a = await sandboxRequest(m, pki, {
      path: '/trailers',
      headers: {
        connection: 'keep-alive, x-hop',
        'x-hop': 'secret-to-proxy',
        'proxy-authorization': 'Basic Zm9v',
        'x-end': '1',
        cookie: 'a=1',
      },
    })
    const e = json(a)
    expect(header(e, 'x-hop')).toEqual([])
    expect(header(e, 'proxy-authorization')).toEqual([])
    expect(header(e, 'x-end')).toEqual(['1'])
    expect(header(e, 'cookie')).toEqual(['a=1'])
    expect(a.trailers['x-checksum']).toBe(e.bodySha256)
  })

  it('answers CONNECT with 405 (the proxy is transparent)', async () => {
    const m = await mitm()
    const answer = await new Promise<string>((resolve, reject) => {
      const s = tls.connect(
        { host: '127.0.0.1', port: m.port, servername: UPSTREAM_NAME, ca: pki.sandboxCa.certPem },
        () => {
          s.write(`CONNECT ${UPSTREAM_NAME}:443 HTTP/1.1\r\nHost: ${UPSTREAM_NAME}:443\r\n\r\n`)
        },
      )
      let text = ''
      s.on('data', (d: Buffer) => (text += d.toString()))
      s.on('end', () => resolve(text))
      s.on('error', reject)
    })
    expect(answer).toMatch(/^HTTP\/1.1 405 /)
    expect(answer).toContain('transparent proxy')
    await m.reported(1)
    expect(m.done[0]).toMatchObject({ status: 405, req: { method: 'CONNECT' } })
  })

  it('fails a request whose destination presents a certificate for another name (502, audited)', async () => {
    const m = await mitm({ upstreamName: 'not-the-upstream.test' })
    const a = await sandboxRequest(m, pki, { path: '/' })
    expect(a.status).toBe(502)
    expect(JSON.parse(a.body.toString())).toMatchObject({ error: 'egress_tls_upstream_unverified' })
    await m.reported(1)
    expect(m.done[0]?.errorCode).toBe('egress_tls_upstream_unverified')
    expect(m.done[0]?.error).toContain('not-the-upstream.test')
  })

  it('refuses a sandbox that does not trust its CA (sanity)', async () => {
    const m = await mitm()
    await expect(sandboxRequest(m, pki, { ca: null })).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    })
    await expect(sandboxRequest(m, pki, { ca: pki.upstreamCa.certPem })).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    })
    expect(m.errors.length).toBeGreaterThan(0)
  })

  it('checks an MCP body before forwarding it (deny by tool), and bounds what it buffers', async () => {
    const m = await mitm()
    m.verdict = () => ({ action: 'allow', inspectBody: 'mcp' })
    m.onBody = (_req, body) => {
      const call = JSON.parse(body.toString()) as { method: string; params?: { name?: string } }
      return call.method === 'tools/call' && call.params?.name === 'delete_repo'
        ? { action: 'deny', status: 403, reason: 'MCP tool delete_repo is denied', rule: 'mcp-tools' }
        : { action: 'allow' }
    }
    const call = (name: string): Buffer =>
      Buffer.from(
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: {} } }),
      )
    const denied = await sandboxRequest(m, pki, { method: 'POST', path: '/mcp', body: call('delete_repo') })
    expect(denied.status).toBe(403)
    expect(JSON.parse(denied.body.toString())).toMatchObject({ rule: 'mcp-tools' })
    const allowed = await sandboxRequest(m, pki, { method: 'POST', path: '/mcp', body: [call('list_repos')] })
    expect(allowed.status).toBe(200)
    expect(JSON.parse(json(allowed).body)).toMatchObject({ params: { name: 'list_repos' } })
    const huge = await sandboxRequest(m, pki, {
      method: 'POST',
      path: '/mcp',
      body: Buffer.alloc(limits.egressMcpBodyBytesMax + 10, ' '),
    })
    expect(huge.status).toBe(413)
  })

  it('asks the hook before telling an Expect: 100-continue client to send its body', async () => {
    const m = await mitm()
    m.verdict = (req) =>
      req.path === '/deny' ? { action: 'deny', status: 403, reason: 'uploads denied' } : { action: 'allow' }
    const exchange = (path: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = tls.connect(
          { host: '127.0.0.1', port: m.port, servername: UPSTREAM_NAME, ca: pki.sandboxCa.certPem },
          () =>
            s.write(
              `PUT ${path} HTTP/1.1\r\nHost: ${UPSTREAM_NAME}\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n`,
            ),
        )
        let text = ''
        s.on('data', (d: Buffer) => {
          text += d.toString()
          if (text === 'HTTP/1.1 100 Continue\r\n\r\n') s.write('hello')
          if (/\r\n\r\n[^]*\}$/.test(text) || text.startsWith('HTTP/1.1 403')) s.end()
        })
        s.on('close', () => resolve(text))
        s.on('error', reject)
      })
    const denied = await exchange('/deny')
    expect(denied).toMatch(/^HTTP\/1.1 403 /) // no 100 Continue first: the body was never asked for
    const allowed = await exchange('/ok')
    expect(allowed).toMatch(/^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 /)
    expect(allowed).toContain('"body":"hello"')
    await m.reported(2)
    expect(m.done[0]).toMatchObject({ status: 403, bytesOut: 0 })
    expect(m.done[1]).toMatchObject({ status: 200, bytesOut: 5 })
  })

  it('reports a destination that drops mid-response, and a sandbox that gives up mid-upload', async () => {
    const m = await mitm()
    await expect(sandboxRequest(m, pki, { path: '/reset' })).rejects.toThrow()
    await m.reported(1)
    expect(m.done[0]).toMatchObject({ status: 200, errorCode: 'egress_http_upstream_failed' })
    expect(m.done[0]?.bytesIn).toBeGreaterThanOrEqual(1000)

    const received = new Promise<void>((resolve) => {
      const on = (n: number): void => {
        if (n < 5000) return
        slowUploads.off('bytes', on)
        resolve()
      }
      slowUploads.on('bytes', on)
    })
    const s = tls.connect(
      { host: '127.0.0.1', port: m.port, servername: UPSTREAM_NAME, ca: pki.sandboxCa.certPem },
      () =>
        s.write(
          `POST /slow-upload HTTP/1.1\r\nHost: ${UPSTREAM_NAME}\r\nContent-Length: 100000\r\n\r\n${'a'.repeat(5000)}`,
        ),
    )
    s.on('error', () => {})
    await received
    s.destroy()
    await m.reported(2)
    expect(m.done[1]).toMatchObject({ req: { path: '/slow-upload' }, errorCode: 'aborted' })
  })

  it('forwards the normalised path the hook checked, and refuses two Host fields', async () => {
    const m = await mitm()
    const seen: string[] = []
    m.verdict = (req) => {
      seen.push(req.path)
      return { action: 'allow' }
    }
    const a = await sandboxRequest(m, pki, { path: '/x/%2e%2E/public/./%7euser/a%2fb?q=%2e' })
    expect(seen).toEqual(['/public/~user/a%2Fb'])
    expect(json(a).url).toBe('/public/~user/a%2Fb?q=%2e')
    const text = await new Promise<string>((resolve, reject) => {
      const s = tls.connect(
        { host: '127.0.0.1', port: m.port, servername: UPSTREAM_NAME, ca: pki.sandboxCa.certPem },
        () => s.write(`GET / HTTP/1.1\r\nHost: ${UPSTREAM_NAME}\r\nHost: evil.test\r\n\r\n`),
      )
      let t = ''
      s.on('data', (d: Buffer) => (t += d.toString()))
      s.on('close', () => resolve(t))
      s.on('error', reject)
      setTimeout(() => s.end(), 200)
    })
    expect(text).toMatch(/^HTTP\/1.1 400 /)
    expect(seen).toHaveLength(1) // the hook never saw it
  })
})

describe('h2', () => {
  it('serves an h2 sandbox through to an HTTP/1.1-only destination', async () => {
    const m = await mitm()
    m.verdict = () => ({ action: 'allow', setHeaders: { authorization: 'Bearer injected' } })
    const session = sandboxH2(m, pki)
    try {
      const [a, b] = await Promise.all([
        h2Request(session, {
          ':method': 'GET',
          ':path': '/one?q=1',
          cookie: ['a=1', 'b=2'],
          authorization: 'nope',
        }),
        h2Request(
          session,
          { ':method': 'POST', ':path': '/two', 'content-type': 'text/plain' },
          Buffer.from('hello h2'),
        ),
      ])
      expect(a.headers[':status']).toBe(200)
      const ea = JSON.parse(a.body.toString()) as Echo
      expect(ea.httpVersion).toBe('1.1')
      expect(ea.url).toBe('/one?q=1')
      expect(header(ea, 'host')).toEqual([UPSTREAM_NAME])
      expect(header(ea, 'cookie')).toEqual(['a=1; b=2'])
      expect(header(ea, 'authorization')).toEqual(['Bearer injected'])
      const eb = JSON.parse(b.body.toString()) as Echo
      expect(eb.body).toBe('hello h2')
      // Flow control both ways: a body larger than every window, up and down.
      const big = crypto.randomBytes(3 * 1024 * 1024)
      const up = await h2Request(session, { ':method': 'PUT', ':path': '/big' }, big)
      expect((JSON.parse(up.body.toString()) as Echo).bodySha256).toBe(
        crypto.createHash('sha256').update(big).digest('hex'),
      )
      const down = await h2Request(session, { ':method': 'GET', ':path': `/bytes?n=${5 * 1024 * 1024}` })
      expect(down.body.length).toBe(5 * 1024 * 1024)
      await m.reported(4)
      expect(m.done.every((d) => d.req.httpVersion === '2')).toBe(true)
    } finally {
      session.close()
    }
  })

  it('uses h2 to an h2 destination, for h2 and HTTP/1.1 sandboxes alike, trailers included', async () => {
    const m = await mitm({ upstreamPort: h2Up.port })
    const session = sandboxH2(m, pki)
    try {
      const a = await h2Request(
        session,
        { ':method': 'POST', ':path': '/trailers', te: 'trailers' },
        Buffer.from('x'),
      )
      const e = JSON.parse(a.body.toString()) as Echo
      expect(e.httpVersion).toBe('2.0')
      expect(header(e, 'te')).toEqual(['trailers'])
      expect(a.trailers['x-checksum']).toBe(e.bodySha256)
    } finally {
      session.close()
    }
    const viaH1 = await sandboxRequest(m, pki, { path: '/from-h1', headers: { 'x-a': '1' } })
    const e = json(viaH1)
    expect(e.httpVersion).toBe('2.0')
    expect(header(e, 'x-a')).toEqual(['1'])
    expect(header(e, ':authority')).toEqual([UPSTREAM_NAME])
  })

  it('answers an h2 CONNECT with 405 and denies per stream', async () => {
    const m = await mitm()
    m.verdict = (req) =>
      req.path === '/no' ? { action: 'deny', status: 403, reason: 'no' } : { action: 'allow' }
    const session = sandboxH2(m, pki)
    try {
      const denied = await h2Request(session, { ':method': 'GET', ':path': '/no' })
      expect(denied.headers[':status']).toBe(403)
      const ok = await h2Request(session, { ':method': 'GET', ':path': '/yes' })
      expect(ok.headers[':status']).toBe(200)
      const connect = await new Promise<number>((resolve, reject) => {
        const s = session.request(
          { ':method': 'CONNECT', ':authority': `${UPSTREAM_NAME}:443` },
          { endStream: false },
        )
        s.on('response', (h) => resolve(Number(h[':status'])))
        s.on('error', reject)
      })
      expect(connect).toBe(405)
    } finally {
      session.close()
    }
  })
})

describe('WebSocket', () => {
  it('passes an allowed upgrade through (raw frames both ways), with the header injected', async () => {
    const m = await mitm()
    m.verdict = () => ({ action: 'allow', setHeaders: { authorization: 'Bearer ws-secret' } })
    const ws = new WebSocket(`wss://${UPSTREAM_NAME}:${m.port}/ws`, {
      ca: pki.sandboxCa.certPem,
      createConnection: () =>
        tls.connect({
          host: '127.0.0.1',
          port: m.port,
          servername: UPSTREAM_NAME,
          ca: pki.sandboxCa.certPem,
        }),
    } as WebSocket.ClientOptions)
    const messages: string[] = []
    await new Promise<void>((resolve, reject) => {
      ws.on('message', (d: Buffer) => {
        messages.push(d.toString())
        if (messages.length === 1) ws.send('ping over the proxy')
        if (messages.length === 2) resolve()
      })
      ws.on('error', reject)
    })
    expect(messages).toEqual(['hello Bearer ws-secret', 'ping over the proxy'])
    ws.close()
    await m.reported(1)
    expect(m.done[0]).toMatchObject({ status: 101, req: { path: '/ws' } })
    expect(m.done[0]?.bytesIn).toBeGreaterThan(0)
  })

  it('denies an upgrade the hook refuses', async () => {
    const m = await mitm()
    m.verdict = () => ({ action: 'deny', status: 403, reason: 'no sockets', rule: 'ws-rule' })
    const ws = new WebSocket(`wss://${UPSTREAM_NAME}:${m.port}/ws`, {
      createConnection: () =>
        tls.connect({
          host: '127.0.0.1',
          port: m.port,
          servername: UPSTREAM_NAME,
          ca: pki.sandboxCa.certPem,
        }),
    } as WebSocket.ClientOptions)
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.on('error', () => {})
    })
    expect(status).toBe(403)
    await m.reported(1)
    expect(m.done[0]?.status).toBe(403)
  })
})

describe('plain HTTP', () => {
  it('replays the bytes the core read, injects headers, keeps the connection alive', async () => {
    const m = await mitm({ tls: false, upstreamPort: plainUp.port })
    m.verdict = () => ({ action: 'allow', setHeaders: { 'x-api-key': 'plain-secret' } })
    // Two pipelined requests in one write: the first bytes the core read hold both.
    const text = await new Promise<string>((resolve, reject) => {
      const s = net.connect(m.port, '127.0.0.1', () => {
        s.write(
          `GET /a HTTP/1.1\r\nHost: ${UPSTREAM_NAME}\r\nx-api-key: fake\r\n\r\n` +
            `GET /b?c=d HTTP/1.1\r\nHost: ${UPSTREAM_NAME}\r\nConnection: close\r\n\r\n`,
        )
      })
      let t = ''
      s.on('data', (d: Buffer) => (t += d.toString()))
      s.on('end', () => resolve(t))
      s.on('error', reject)
    })
    const bodies = text
      .split(/\r\n\r\n/)
      .filter((p) => p.startsWith('{'))
      .map((p) => JSON.parse(p.slice(0, p.lastIndexOf('}') + 1)) as Echo)
    expect(bodies.map((b) => b.url)).toEqual(['/a', '/b?c=d'])
    expect(header(bodies[0] as Echo, 'x-api-key')).toEqual(['plain-secret'])
    await m.reported(2)
    expect(m.done.map((d) => d.req.secure)).toEqual([false, false])
  })

  it('speaks h2 with prior knowledge when the bytes the core read start with the preface', async () => {
    const m = await mitm({ tls: false, upstreamPort: plainUp.port })
    const session = http2.connect(`http://${UPSTREAM_NAME}`, {
      createConnection: () => net.connect(m.port, '127.0.0.1'),
    })
    try {
      const a = await h2Request(session, { ':method': 'GET', ':path': '/h2c', ':scheme': 'http' })
      expect(a.headers[':status']).toBe(200)
      expect((JSON.parse(a.body.toString()) as Echo).url).toBe('/h2c')
      await m.reported(1)
      expect(m.done[0]?.req).toMatchObject({ httpVersion: '2', secure: false, path: '/h2c' })
    } finally {
      session.close()
    }
  })

  it('answers a malformed request 400 and reports it', async () => {
    const m = await mitm({ tls: false, upstreamPort: plainUp.port })
    const text = await new Promise<string>((resolve) => {
      const s = net.connect(m.port, '127.0.0.1', () =>
        s.write('GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n'),
      )
      let t = ''
      s.on('data', (d: Buffer) => (t += d.toString()))
      s.on('close', () => resolve(t))
      s.on('error', () => {})
    })
    expect(text).toMatch(/^HTTP\/1.1 400 /)
    await m.reported(1)
    expect(m.done[0]?.errorCode).toBe('egress_http_bad_request')
  })
})
