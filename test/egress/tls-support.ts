// Loopback fixtures for the TLS interception tests: a test PKI, echo destinations (HTTPS over
// HTTP/1.1 and h2, plain HTTP, WebSocket), and a small MITM harness that plays the proxy core:
// it reads the ClientHello first, then calls terminateTls + serveHttp with originate upstream.
import crypto from 'node:crypto'
import { EventEmitter } from 'node:events'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import { WebSocketServer } from 'ws'
import { LeafCache } from '../../src/egress/tls/leaf-cache.js'
import { originate, terminateTls, type Alpn } from '../../src/egress/tls/intercept.js'
import { createCa, issueLeaf, type CertificatePem } from '../../src/egress/tls/x509.js'
import {
  serveHttp,
  type HttpDoneSummary,
  type HttpHooks,
  type HttpVerdict,
} from '../../src/egress/http/proxy-http.js'

export const UPSTREAM_NAME = 'upstream.test'

/** Bytes `/slow-upload` has received so far (emitted as 'bytes'). */
export const slowUploads = new EventEmitter()

export interface Pki {
  upstreamCa: CertificatePem
  upstreamLeaf: CertificatePem
  sandboxCa: CertificatePem
  leaves: LeafCache
}

export function makePki(): Pki {
  const upstreamCa = createCa('s0 test upstream CA')
  const sandboxCa = createCa('s0 sandbox test CA')
  return {
    upstreamCa,
    upstreamLeaf: issueLeaf(upstreamCa, [UPSTREAM_NAME, '127.0.0.1']),
    sandboxCa,
    leaves: new LeafCache(sandboxCa),
  }
}

export interface Echo {
  method: string
  url: string
  httpVersion: string
  headers: Array<[string, string]>
  body: string
  bodyLength: number
  bodySha256: string
}

export function header(e: Echo, name: string): string[] {
  return e.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)
}

/** Answers every request with what it received; `/bytes?n=N` streams N bytes of 'x' instead. */
function echoHandler(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
): void {
  const url = new URL(req.url ?? '/', 'http://x')
  if (url.pathname === '/reset') {
    // Half a response, then the connection drops (a destination that dies mid-answer).
    res.writeHead(200, { 'content-length': '100000' })
    ;(res as http.ServerResponse).write(Buffer.alloc(1000, 'r'), () =>
      setTimeout(() => req.socket.destroy(), 20),
    )
    return
  }
  if (url.pathname === '/slow-upload') {
    // Reads the body, never answers: the proxy must give up when the sandbox does.
    let got = 0
    req.on('data', (c: Buffer) => slowUploads.emit('bytes', (got += c.length)))
    return
  }
  if (url.pathname === '/bytes') {
    let left = Number(url.searchParams.get('n'))
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const piece = Buffer.alloc(64 * 1024, 'x')
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, piece.length)
        left -= n
        if (!(res as http.ServerResponse).write(piece.subarray(0, n))) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
    return
  }
  const hash = crypto.createHash('sha256')
  const kept: Buffer[] = []
  let length = 0
  req.on('data', (c: Buffer) => {
    hash.update(c)
    length += c.length
    if (length <= 64 * 1024) kept.push(c)
  })
  req.on('end', () => {
    const pairs: Array<[string, string]> = []
    for (let i = 0; i < req.rawHeaders.length; i += 2)
      pairs.push([req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string])
    const echo: Echo = {
      method: req.method ?? '',
      url: req.url ?? '',
      httpVersion: req.httpVersion,
      headers: pairs,
      body: length <= 64 * 1024 ? Buffer.concat(kept).toString('utf8') : '',
      bodyLength: length,
      bodySha256: hash.digest('hex'),
    }
    const body = JSON.stringify(echo)
    if ('addTrailers' in res && url.pathname === '/trailers') {
      res.writeHead(200, { 'content-type': 'application/json', trailer: 'x-checksum' })
      res.addTrailers({ 'x-checksum': echo.bodySha256 })
      res.end(body)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
}

export interface Upstream {
  port: number
  connections: number
  close(): Promise<void>
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

function tracked(server: net.Server, event: string): Upstream & { sockets: Set<net.Socket> } {
  const u = { port: 0, connections: 0, sockets: new Set<net.Socket>(), close: async () => {} }
  server.on(event, (s: net.Socket) => {
    u.connections++
    u.sockets.add(s)
    s.on('close', () => u.sockets.delete(s))
  })
  u.close = () =>
    new Promise<void>((resolve) => {
      for (const s of u.sockets) s.destroy()
      server.close(() => resolve())
    })
  return u
}

/** HTTPS (HTTP/1.1 only) echo with a WebSocket echo on `/ws`. */
export async function startHttpsUpstream(leaf: CertificatePem): Promise<Upstream> {
  const server = https.createServer({ cert: leaf.certPem, key: leaf.keyPem }, echoHandler)
  const wss = new WebSocketServer({ server, path: '/ws' })
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.headers['authorization'] ?? 'anonymous'}`)
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  })
  const u = tracked(server, 'secureConnection')
  u.port = await listen(server)
  const close = u.close
  u.close = async () => {
    for (const c of wss.clients) c.terminate()
    wss.close()
    await close()
  }
  return u
}

/** HTTPS that speaks h2 only. */
export async function startH2Upstream(leaf: CertificatePem): Promise<Upstream> {
  const server = http2.createSecureServer(
    { cert: leaf.certPem, key: leaf.keyPem, allowHTTP1: false },
    echoHandler,
  )
  const u = tracked(server, 'secureConnection')
  u.port = await listen(server)
  return u
}

export async function startPlainUpstream(): Promise<Upstream> {
  const server = http.createServer(echoHandler)
  const u = tracked(server, 'connection')
  u.port = await listen(server)
  return u
}

export interface Mitm {
  port: number
  done: HttpDoneSummary[]
  /** Errors of terminateTls / serveHttp set-up, in order. */
  errors: unknown[]
  /** The verdict each request gets (tests replace it). */
  verdict: (req: Parameters<HttpHooks['onRequest']>[0]) => HttpVerdict
  onBody?: HttpHooks['onBody']
  /** Resolves when `n` requests have been reported. */
  reported(n: number): Promise<void>
  close(): Promise<void>
}

export interface MitmOptions {
  pki: Pki
  upstreamPort: number
  /** Name the destination's certificate must carry (default the test name). */
  upstreamName?: string
  alpn?: Alpn[]
  /** false: plain HTTP both sides (no TLS at all). */
  tls?: boolean
}

export async function startMitm(opts: MitmOptions): Promise<Mitm> {
  const sockets = new Set<net.Socket>()
  const waiters: Array<{ n: number; resolve: () => void }> = []
  const m: Mitm = {
    port: 0,
    done: [],
    errors: [],
    verdict: () => ({ action: 'allow' }),
    reported: (n) =>
      new Promise((resolve) => (m.done.length >= n ? resolve() : waiters.push({ n, resolve }))),
    close: async () => {},
  }
  const hooks: HttpHooks = {
    onRequest: async (req) => m.verdict(req),
    onBody: (req, body) => (m.onBody ? m.onBody(req, body) : { action: 'allow' }),
    onDone: (s) => {
      m.done.push(s)
      for (const w of waiters.filter((w) => m.done.length >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
    },
  }
  const server = net.createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    // Play the proxy core: classify on the first bytes, then hand them over.
    client.once('data', (firstBytes: Buffer) => {
      client.pause()
      void handle(client, firstBytes)
    })
  })
  const handle = async (client: net.Socket, firstBytes: Buffer): Promise<void> => {
    try {
      if (opts.tls === false) {
        await serveHttp(client, {
          secure: false,
          firstBytes,
          upstream: () =>
            new Promise((resolve, reject) => {
              const s = net.connect(opts.upstreamPort, '127.0.0.1')
              s.once('connect', () => resolve(s))
              s.once('error', reject)
            }),
          hooks,
        })
        return
      }
      const tlsSocket = await terminateTls(client, {
        ca: opts.pki.leaves,
        serverName: UPSTREAM_NAME,
        alpn: opts.alpn ?? ['h2', 'http/1.1'],
        firstBytes,
      })
      await serveHttp(tlsSocket, {
        secure: true,
        alpn: tlsSocket.alpnProtocol,
        upstream: (want) =>
          originate({
            ip: '127.0.0.1',
            port: opts.upstreamPort,
            serverName: opts.upstreamName ?? UPSTREAM_NAME,
            alpn: want.alpn,
            ca: opts.pki.upstreamCa.certPem,
          }),
        hooks,
      })
    } catch (err) {
      m.errors.push(err)
    }
  }
  m.port = await listen(server)
  m.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
  return m
}

export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  trailers: NodeJS.Dict<string>
}

/** One HTTPS/1.1 request as a sandbox would send it: trusting only the sandbox CA. */
export function sandboxRequest(
  m: { port: number },
  pki: Pki,
  opts: {
    method?: string
    path?: string
    headers?: http.OutgoingHttpHeaders
    body?: Buffer | Buffer[]
    agent?: https.Agent
    ca?: string | null
    plain?: boolean
  } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const common = {
      host: '127.0.0.1',
      port: m.port,
      method: opts.method ?? 'GET',
      path: opts.path ?? '/',
      headers: { host: UPSTREAM_NAME, ...opts.headers },
    }
    const onResponse = (res: http.IncomingMessage): void => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts),
          trailers: res.trailers,
        }),
      )
      res.on('error', reject)
    }
    const req = opts.plain
      ? http.request({ ...common, agent: false }, onResponse)
      : https.request(
          {
            ...common,
            servername: UPSTREAM_NAME,
            ...(opts.ca === null ? {} : { ca: opts.ca ?? pki.sandboxCa.certPem }),
            agent: opts.agent ?? false,
          },
          onResponse,
        )
    req.on('error', reject)
    const body = opts.body
    if (Array.isArray(body)) {
      // Pieces written one at a time: no Content-Length, so Node sends them chunked.
      for (const b of body) req.write(b)
      req.end()
    } else {
      req.end(body)
    }
  })
}

export function json<T = Echo>(a: Answer): T {
  return JSON.parse(a.body.toString('utf8')) as T
}

/** An h2 client session to the MITM, trusting the sandbox CA. */
export function sandboxH2(m: { port: number }, pki: Pki): http2.ClientHttp2Session {
  return http2.connect(`https://${UPSTREAM_NAME}:${m.port}`, {
    ca: pki.sandboxCa.certPem,
    servername: UPSTREAM_NAME,
    createConnection: () =>
      tls.connect({
        host: '127.0.0.1',
        port: m.port,
        servername: UPSTREAM_NAME,
        ca: pki.sandboxCa.certPem,
        ALPNProtocols: ['h2'],
      }),
  })
}

export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer; trailers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(
      { ':authority': UPSTREAM_NAME, ...headers },
      { endStream: body === undefined, waitForTrailers: false },
    )
    let head: http2.IncomingHttpHeaders = {}
    let trailers: http2.IncomingHttpHeaders = {}
    const parts: Buffer[] = []
    stream.on('response', (h) => (head = h))
    stream.on('trailers', (t) => (trailers = t))
    stream.on('data', (c: Buffer) => parts.push(c))
    stream.on('end', () => resolve({ headers: head, body: Buffer.concat(parts), trailers }))
    stream.on('error', reject)
    if (body !== undefined) stream.end(body)
  })
}
