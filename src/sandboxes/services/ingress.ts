// The ingress proxy: requests whose Host is `<service>--<sandbox>.<exposure domain>` go to that
// service's port at the sandbox's address (on its veth), through the route that matches their
// path: method filter, auth (bearer / header, SHA-256 compared in constant time), CORS
// (preflights answered here), a token-bucket rate limit, and wake-on-request of a paused
// sandbox (held until it answers, bounded by the route's timeout). Bodies stream both ways
// (chunked, SSE), WebSocket upgrades become a byte pipe. The service never sees the API key.
// Each request is an api_access event, within a per-sandbox budget (ingress-events.ts).
// Served on the API's own listener (api/server.ts routes requests here by Host).
import { createHash, timingSafeEqual } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { isS0Error } from '../../core/errors.js'
import { endToEnd, fromRaw, toRecord } from '../../egress/http/headers.js'
import type { EventLog } from '../../core/events.js'
import type { SandboxId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { SandboxRow } from '../rows.js'
import { IngressEvents } from './ingress-events.js'
import { TokenBuckets } from './token-buckets.js'
import { parseServiceLabel, type AppServices, type Exposure } from './index.js'
import { matchRoute, rewritePath, type AppService, type ServiceRoute } from './model.js'

interface Target {
  row: SandboxRow
  service: AppService
  route: ServiceRoute
  address: string
  path: string
  /** When the proxy gives up (the route's timeout, from the request's arrival). */
  deadline: number
  /** Until when a refused connect is retried: the service may be starting (a wake, a restart). */
  retryUntil: number
  scheme: string
}

type Resolved = Target | { preflight: Record<string, string> }

/** An answer of the proxy itself (not the service's), in the API's error envelope. */
class IngressError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

export interface IngressOptions {
  services: AppServices
  /** The exposure domain and scheme now (the default domain names the listener's port). */
  exposure: () => Exposure
  events?: EventLog
  log: Logger
}

export class IngressProxy {
  private readonly buckets = new TokenBuckets(limits.ingressBucketsMax)
  private readonly agents = new Map<string, http.Agent>()
  private readonly events: IngressEvents

  constructor(private readonly o: IngressOptions) {
    this.events = new IngressEvents(o.events)
  }

  /**
   * The service a request's Host names, if it names one under the exposure domain: such a
   * request is the proxy's, whatever else it says (even a path of the API).
   */
  claims(req: IncomingMessage): { serviceId: string; sandboxId: SandboxId } | undefined {
    const host = (req.headers.host ?? '').toLowerCase().replace(/\.$/, '')
    if (!host.includes('--')) return undefined
    const domain = this.o.exposure().domain.toLowerCase()
    const dot = host.indexOf('.')
    if (dot <= 0) return undefined
    let rest = host.slice(dot + 1)
    // A domain without a port (behind a proxy on 443) matches a Host with or without one.
    if (!domain.includes(':')) rest = rest.replace(/:\d+$/, '')
    if (rest !== domain) return undefined
    return parseServiceLabel(host.slice(0, dot))
  }

  async handleRequest(req: IncomingMessage, res: ServerResponse, named = this.claims(req)): Promise<void> {
    if (!named) return this.fail(res, new IngressError(404, 'not_found', 'no such service'))
    const started = performance.now()
    let target: Target | undefined
    let bytesIn = 0
    let bytesOut = 0
    let status = 0
    try {
      const t = await this.resolve(req, named.serviceId, named.sandboxId)
      if ('preflight' in t) {
        status = 204
        res.writeHead(204, t.preflight)
        res.end()
        return
      }
      target = t
      const cors = corsHeaders(t.route, req)
      const declared = Number(req.headers['content-length'] ?? 0)
      if (declared > limits.ingressBodyBytesMax)
        throw new IngressError(
          413,
          'payload_too_large',
          `request body over ${limits.ingressBodyBytesMax} bytes`,
        )
      const upstream = await this.forward(req, t, (n) => (bytesIn += n))
      status = upstream.statusCode ?? 502
      const headers = endToEndHeaders(upstream.rawHeaders)
      for (const [k, v] of Object.entries(cors)) headers[k] = v
      res.writeHead(status, headers)
      upstream.on('data', (chunk: Buffer) => {
        bytesOut += chunk.length
        if (bytesOut > limits.ingressBodyBytesMax) {
          upstream.destroy()
          res.destroy()
        }
      })
      upstream.pipe(res)
      await new Promise<void>((resolve) => {
        res.once('close', resolve)
        upstream.once('error', () => {
          res.destroy()
          resolve()
        })
      })
      if (!res.writableFinished) upstream.destroy()
    } catch (err) {
      const e = toIngressError(err)
      status = e.status
      this.fail(res, e)
    } finally {
      if (target) this.record(target, req, status, bytesIn, bytesOut, started)
    }
  }

  async handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    named = this.claims(req),
  ): Promise<void> {
    socket.on('error', () => undefined)
    const started = performance.now()
    let target: Target | undefined
    try {
      if (!named) throw new IngressError(404, 'not_found', 'no such service')
      const t = await this.resolve(req, named.serviceId, named.sandboxId)
      if ('preflight' in t) throw new IngressError(400, 'invalid_request', 'an upgrade is not a preflight')
      target = t
      const upstream = await this.connect(t)
      const lines = [`${req.method ?? 'GET'} ${t.path} HTTP/1.1`]
      const headers = forwardHeaders(req, t, { keepUpgrade: true })
      for (const [k, v] of Object.entries(headers)) {
        for (const one of Array.isArray(v) ? v : [v]) lines.push(`${k}: ${one}`)
      }
      upstream.write(lines.join('\r\n') + '\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.on('error', () => socket.destroy())
      socket.on('error', () => upstream.destroy())
      upstream.pipe(socket)
      socket.pipe(upstream)
      this.record(t, req, 101, 0, 0, started)
    } catch (err) {
      const e = toIngressError(err)
      if (target) this.record(target, req, e.status, 0, 0, started)
      const body = JSON.stringify({ success: false, error: { code: e.code, message: e.message } })
      socket.end(
        `HTTP/1.1 ${e.status} ${http.STATUS_CODES[e.status] ?? ''}\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      )
    }
  }

  close(): void {
    this.events.flush()
    for (const a of this.agents.values()) a.destroy()
    this.agents.clear()
  }

  /** Finds the service and route, applies the route's rules, wakes the sandbox if it must. */
  private async resolve(req: IncomingMessage, serviceId: string, sandboxId: SandboxId): Promise<Resolved> {
    const svcs = this.o.services
    let row = await svcs.deps.lookup(sandboxId)
    const service = row ? svcs.servicesOf(row).find((s) => s.id === serviceId) : undefined
    // Not public, unknown, another's: all the same 404 (the name says nothing about a sandbox).
    if (!row || !service || !service.ingress.public)
      throw new IngressError(404, 'not_found', 'no such service')
    const rawPath = req.url ?? '/'
    if (!rawPath.startsWith('/'))
      throw new IngressError(400, 'invalid_request', 'absolute-form request targets are refused')
    const route = matchRoute(service, rawPath)
    if (!route)
      throw new IngressError(404, 'not_found', `no route of service ${serviceId} takes ${pathOf(rawPath)}`)
    const method = (req.method ?? 'GET').toUpperCase()
    if (isPreflight(req) && route.cors) return this.preflight(req, route)
    if (route.methods?.length && !route.methods.some((m) => m.toUpperCase() === method))
      throw new IngressError(
        405,
        'method_not_allowed',
        `route ${route.id} takes ${route.methods.join(', ')}`,
        {
          allow: route.methods.join(', ').toUpperCase(),
        },
      )
    checkAuth(route, req)
    this.rateLimit(`${sandboxId}/${serviceId}/${route.id}`, route)
    const deadline = Date.now() + timeoutMs(route)
    let retryUntil = 0
    if (row.status !== 'running' || !svcs.deps.live(row.id)) {
      row = await this.wake(row, route, deadline)
      retryUntil = deadline
    } else if (service.runtime?.type === 'cmd' || service.runtime?.type === 'function') {
      // A supervised process between restarts, or just started: worth a short wait.
      retryUntil = Math.min(deadline, Date.now() + limits.ingressStartingWaitMs)
    }
    const address = svcs.deps.address(row.id)
    if (address === undefined)
      throw new IngressError(
        502,
        'bad_gateway',
        'the server runs sandboxes without a network: the service cannot be reached',
      )
    const path = rewritePath(route, rawPath)
    return { row, service, route, address, path, deadline, retryUntil, scheme: this.o.exposure().scheme }
  }

  private async wake(row: SandboxRow, route: ServiceRoute, deadline: number): Promise<SandboxRow> {
    if (row.status !== 'paused')
      throw new IngressError(503, 'unavailable', `sandbox ${row.id} is ${row.status}`, { 'retry-after': '1' })
    if (!route.resume || row.config.auto_resume === false)
      throw new IngressError(
        503,
        'unavailable',
        `sandbox ${row.id} is paused and route ${route.id} does not resume it (set resume: true on the route, or resume the sandbox)`,
        { 'retry-after': '5' },
      )
    for (;;) {
      try {
        return await this.o.services.deps.running(row.teamId, row.id)
      } catch (err) {
        if (!(isS0Error(err) && err.code === 'unavailable') || Date.now() >= deadline) throw err
        await sleep(Math.min(200, Math.max(0, deadline - Date.now())))
      }
    }
  }

  private preflight(req: IncomingMessage, route: ServiceRoute): Resolved {
    const headers = corsHeaders(route, req)
    if (!headers['access-control-allow-origin'])
      throw new IngressError(403, 'forbidden', "origin not allowed by the route's CORS policy")
    const cors = route.cors ?? {}
    headers['access-control-allow-methods'] = (
      cors.allowed_methods?.length
        ? cors.allowed_methods
        : route.methods?.length
          ? route.methods
          : ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']
    ).join(', ')
    const asked = req.headers['access-control-request-headers']
    headers['access-control-allow-headers'] = cors.allowed_headers?.length
      ? cors.allowed_headers.join(', ')
      : (asked ?? '')
    if (cors.max_age_seconds !== undefined) headers['access-control-max-age'] = String(cors.max_age_seconds)
    return { preflight: headers }
  }

  private rateLimit(key: string, route: ServiceRoute): void {
    const rl = route.rate_limit
    if (!rl) return
    const wait = this.buckets.take(key, rl.rps, rl.burst)
    if (wait > 0)
      throw new IngressError(
        429,
        'rate_limited',
        `route ${route.id} allows ${rl.rps} requests/s (burst ${rl.burst})`,
        {
          'retry-after': String(Math.max(1, Math.min(60, Math.ceil(wait)))),
        },
      )
  }

  private agentFor(address: string): http.Agent {
    let a = this.agents.get(address)
    if (!a) {
      a = new http.Agent({ keepAlive: true, maxFreeSockets: limits.ingressKeepAliveSocketsMax })
      this.agents.set(address, a)
    }
    return a
  }

  /** The service's response (its head); the request body streams meanwhile. */
  private forward(req: IncomingMessage, t: Target, counted: (n: number) => void): Promise<IncomingMessage> {
    const deadline = t.deadline
    return new Promise((resolve, reject) => {
      let total = 0
      let sent = false
      const attempt = (): void => {
        const out = http.request({
          host: t.address,
          port: t.service.port,
          method: req.method,
          path: t.path,
          headers: forwardHeaders(req, t, { keepUpgrade: false }),
          agent: this.agentFor(t.address),
        })
        const timer = setTimeout(
          () =>
            out.destroy(
              new IngressError(
                504,
                'gateway_timeout',
                `service ${t.service.id} did not answer within ${timeoutMs(t.route) / 1000} s`,
              ),
            ),
          Math.max(0, deadline - Date.now()),
        )
        out.once('response', (res) => {
          clearTimeout(timer)
          resolve(res)
        })
        out.once('error', (err: NodeJS.ErrnoException) => {
          clearTimeout(timer)
          // Nothing listens yet (a woken sandbox's service starting): again, until the deadline,
          // as long as no byte of the body went.
          if (
            !sent &&
            err.code === 'ECONNREFUSED' &&
            Date.now() + limits.ingressConnectRetryMs < t.retryUntil
          ) {
            setTimeout(attempt, limits.ingressConnectRetryMs)
            return
          }
          if (err instanceof IngressError) return reject(err)
          reject(
            new IngressError(
              502,
              'bad_gateway',
              err.code === 'ECONNREFUSED'
                ? `nothing listens on port ${t.service.port} in sandbox ${t.row.id}`
                : `service ${t.service.id} failed: ${err.code ?? err.message}`,
            ),
          )
        })
        const hasBody =
          !req.readableEnded &&
          (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)
        if (!hasBody) {
          out.end()
          return
        }
        // The body starts once the connection is up: a refused connect then comes before its
        // first byte, so the attempt can be repeated with the whole body still unread.
        const pipeBody = (): void => {
          if (sent) return
          sent = true
          req.on('data', (chunk: Buffer) => {
            total += chunk.length
            counted(chunk.length)
            if (total > limits.ingressBodyBytesMax) {
              out.destroy(
                new IngressError(
                  413,
                  'payload_too_large',
                  `request body over ${limits.ingressBodyBytesMax} bytes`,
                ),
              )
              req.destroy()
            }
          })
          req.pipe(out)
        }
        out.once('socket', (socket: net.Socket) => {
          if (socket.connecting) socket.once('connect', pipeBody)
          else pipeBody()
        })
      }
      attempt()
    })
  }

  /** A raw connection to the service (WebSocket), retried like forward() after a wake. */
  private connect(t: Target): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const attempt = (): void => {
        const s = net.connect({ host: t.address, port: t.service.port as number })
        s.once('connect', () => {
          s.removeAllListeners('error')
          resolve(s)
        })
        s.once('error', (err: NodeJS.ErrnoException) => {
          if (err.code === 'ECONNREFUSED' && Date.now() + limits.ingressConnectRetryMs < t.retryUntil) {
            setTimeout(attempt, limits.ingressConnectRetryMs)
            return
          }
          reject(
            new IngressError(
              502,
              'bad_gateway',
              `nothing listens on port ${t.service.port} in sandbox ${t.row.id}`,
            ),
          )
        })
      }
      attempt()
    })
  }

  private fail(res: ServerResponse, e: IngressError): void {
    if (res.headersSent) {
      res.destroy()
      return
    }
    const body = JSON.stringify({ success: false, error: { code: e.code, message: e.message } })
    res.writeHead(e.status, {
      ...e.headers,
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    })
    res.end(body)
  }

  private record(
    t: Target,
    req: IncomingMessage,
    status: number,
    bytesIn: number,
    bytesOut: number,
    started: number,
  ): void {
    this.events.record({
      teamId: t.row.teamId,
      sandboxId: t.row.id,
      serviceId: t.service.id,
      routeId: t.route.id,
      authenticated: t.route.auth !== undefined && t.route.auth.mode !== 'none',
      method: req.method ?? 'GET',
      path: pathOf(req.url ?? '/'),
      status,
      bytesIn,
      bytesOut,
      durationMs: Math.round(performance.now() - started),
    })
  }
}

function timeoutMs(route: ServiceRoute): number {
  return (
    Math.min(route.timeout_seconds ?? limits.ingressTimeoutSecDefault, limits.ingressTimeoutSecMax) * 1000
  )
}

function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q < 0 ? url : url.slice(0, q)
}

function isPreflight(req: IncomingMessage): boolean {
  return (
    req.method === 'OPTIONS' &&
    req.headers.origin !== undefined &&
    req.headers['access-control-request-method'] !== undefined
  )
}

function sha256Equal(value: string, hex: string | undefined): boolean {
  if (hex === undefined) return false
  const want = Buffer.from(hex, 'hex')
  const got = createHash('sha256').update(value).digest()
  // Both are 32 bytes (hex checked when stored): the compare takes the same time whatever differs.
  return want.length === got.length && timingSafeEqual(want, got)
}

function checkAuth(route: ServiceRoute, req: IncomingMessage): void {
  const a = route.auth
  if (!a || a.mode === 'none') return
  if (a.mode === 'bearer') {
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')
    if (!m || !sha256Equal(m[1] ?? '', a.bearer_token_sha256))
      throw new IngressError(401, 'unauthorized', `route ${route.id} needs a valid bearer token`, {
        'www-authenticate': 'Bearer',
      })
    return
  }
  const v = req.headers[(a.header_name ?? '').toLowerCase()]
  if (typeof v !== 'string' || !sha256Equal(v, a.header_value_sha256))
    throw new IngressError(401, 'unauthorized', `route ${route.id} needs a valid ${a.header_name} header`)
}

function corsHeaders(route: ServiceRoute, req: IncomingMessage): Record<string, string> {
  const cors = route.cors
  const origin = req.headers.origin
  if (!cors || origin === undefined) return {}
  const allowed = cors.allowed_origins ?? []
  const any = allowed.includes('*')
  if (!any && !allowed.includes(origin)) return {}
  const out: Record<string, string> = {
    'access-control-allow-origin': any && !cors.allow_credentials ? '*' : origin,
    vary: 'Origin',
  }
  if (cors.allow_credentials) out['access-control-allow-credentials'] = 'true'
  if (cors.expose_headers?.length) out['access-control-expose-headers'] = cors.expose_headers.join(', ')
  return out
}

/** A message's end-to-end fields (hop-by-hop ones, those `Connection` names, and `host` gone). */
function endToEndHeaders(rawHeaders: readonly string[]): Record<string, string | string[]> {
  return toRecord(endToEnd(fromRaw(rawHeaders)))
}

/** The request's headers as the service gets them. */
function forwardHeaders(
  req: IncomingMessage,
  t: Target,
  o: { keepUpgrade: boolean },
): Record<string, string | string[]> {
  const h = endToEndHeaders(req.rawHeaders)
  // The route's credential is the proxy's to check, and an s0 API key never reaches a sandbox.
  const auth = t.route.auth
  if (auth?.mode === 'bearer' || /^Bearer\s+s0_/i.test(req.headers.authorization ?? ''))
    delete h['authorization']
  if (auth?.mode === 'header' && auth.header_name) delete h[auth.header_name.toLowerCase()]
  if (o.keepUpgrade) {
    h['connection'] = 'Upgrade'
    if (req.headers.upgrade) h['upgrade'] = req.headers.upgrade
  }
  h['host'] = req.headers.host ?? ''
  const peer = req.socket.remoteAddress ?? ''
  const prior = req.headers['x-forwarded-for']
  h['x-forwarded-for'] = prior ? `${String(prior)}, ${peer}` : peer
  h['x-forwarded-host'] = req.headers.host ?? ''
  h['x-forwarded-proto'] = t.scheme
  return h
}

function toIngressError(err: unknown): IngressError {
  if (err instanceof IngressError) return err
  if (isS0Error(err)) {
    const status =
      err.code === 'unavailable'
        ? 503
        : err.code === 'not_found'
          ? 404
          : err.code === 'sandbox_not_running'
            ? 503
            : 502
    return new IngressError(
      status,
      err.code,
      err.message,
      err.retryAfterS !== undefined ? { 'retry-after': String(err.retryAfterS) } : {},
    )
  }
  return new IngressError(502, 'bad_gateway', (err as Error).message ?? String(err))
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}
