// An API replica's forwarding to agents (`s0 api`, docs/DEPLOY.md). Requests for sandboxes,
// templates, volumes and the rest of the runtime surface go to an agent; the replica serves
// accounts, quotas, usage and credential sources itself. For each forwarded request it:
// - authenticates the user's API key and admits it against api_requests (as a server would);
// - picks the agent: the sandbox's node while it is live; a placement (warm slot, else the least
//   loaded node with room for its CPU and memory and its template's labels) for a claim, and for
//   a sandbox whose node died (that agent takes it over on resume); the lease holder of a
//   volume; any live node for the rest;
// - forwards the request as a stream, with the cluster token and the resolved principal instead
//   of the user's key. WebSocket upgrades are forwarded as byte pipes; watches are long responses
//   and stream through unchanged. App service URLs (`<service>--<sandbox>.<domain>`) go to the
//   sandbox's node without authentication (its ingress checks them).
// Built on node:http rather than @fastify/reply-from: one keep-alive agent per node, streaming
// both ways, upgrades and a placement read of the claim body are all it needs (bench: `scale`).
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { authenticate, parseBearer, type ApiRequestMeter, type AuthContext } from '../accounts/index.js'
import type { Db } from '../core/db.js'
import { isS0Error, S0Error } from '../core/errors.js'
import { randomHexId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import {
  claimDemand,
  liveNodes,
  ownerNode,
  place,
  sandboxDemand,
  volumeWriterNode,
  type NodeRow,
} from '../sandboxes/cluster/index.js'
import { parseServiceLabel } from '../sandboxes/index.js'
import { CLUSTER_TOKEN_HEADER, encodePrincipal, PLACEMENT_HEADER, PRINCIPAL_HEADER } from './cluster-auth.js'
import { errorBody, JSON_TYPE, toErrorResponse } from './reply.js'

/** /api/v1 routes a replica serves itself (everything else under /api/v1 is an agent's). */
const LOCAL_PREFIXES = [
  '/api/v1/me',
  '/api/v1/quotas',
  '/api/v1/usage',
  '/api/v1/credential-sources',
  '/api/v1/nodes',
]
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'authorization',
  CLUSTER_TOKEN_HEADER,
  PRINCIPAL_HEADER,
  PLACEMENT_HEADER,
])

export interface NodeRouterOptions {
  db: Db
  clusterToken: string
  deadAfterS: number
  meter: ApiRequestMeter
  /** The wildcard domain of app service URLs (undefined: none are routed). */
  exposureDomain: () => string | undefined
  log: Logger
}

interface Target {
  node: NodeRow
  reservationId?: string
  /** The claim body, when it was read to place the claim. */
  body?: Buffer
}

export class NodeRouter {
  private readonly agents = new Map<string, http.Agent>()
  private live: { at: number; nodes: Promise<NodeRow[]> } | undefined
  private next = 0
  private paths: { at: number; paths: Record<string, unknown> } | undefined

  constructor(private readonly o: NodeRouterOptions) {}

  /** Whether this request is an agent's (then `handle` answers it). */
  claims(req: IncomingMessage): boolean {
    if (this.serviceSandbox(req)) return true
    const p = pathOf(req)
    if (!p.startsWith('/api/v1/')) return false
    return !LOCAL_PREFIXES.some((l) => p === l || p.startsWith(`${l}/`))
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const target = await this.route(req)
      await this.forward(req, res, target)
    } catch (err) {
      this.fail(res, err)
    }
  }

  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy())
    let target: Target
    try {
      target = await this.route(req)
    } catch (err) {
      const { status, body } = toErrorResponse(err)
      const text = JSON.stringify(body)
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\ncontent-type: ${JSON_TYPE}\r\n` +
          `content-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
      )
      return
    }
    const up = http.request(this.requestOptions(req, target, true))
    up.on('upgrade', (upRes, upSocket, upHead) => {
      const lines = [`HTTP/1.1 ${upRes.statusCode ?? 101} ${upRes.statusMessage ?? 'Switching Protocols'}`]
      for (let i = 0; i < upRes.rawHeaders.length; i += 2)
        lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`)
      socket.write(`${lines.join('\r\n')}\r\n\r\n`)
      if (upHead.length > 0) socket.write(upHead)
      upSocket.on('error', () => socket.destroy())
      socket.on('close', () => upSocket.destroy())
      upSocket.on('close', () => socket.destroy())
      upSocket.pipe(socket)
      socket.pipe(upSocket)
    })
    up.on('response', (upRes) => {
      // The agent refused the upgrade: its answer goes back as it is.
      const lines = [`HTTP/1.1 ${upRes.statusCode ?? 502} ${upRes.statusMessage ?? ''}`]
      for (let i = 0; i < upRes.rawHeaders.length; i += 2)
        lines.push(`${upRes.rawHeaders[i]}: ${upRes.rawHeaders[i + 1]}`)
      socket.write(`${lines.join('\r\n')}\r\nconnection: close\r\n\r\n`)
      upRes.pipe(socket)
    })
    up.on('error', () => socket.destroy())
    if (head.length > 0) up.write(head)
    up.end()
  }

  /**
   * The paths of the routes this replica forwards, from a live agent's OpenAPI document (its
   * routes and schemas are the ones that validate the forwarded requests). Cached: every agent
   * of a cluster runs the same version.
   */
  async agentPaths(): Promise<Record<string, unknown>> {
    if (this.paths && Date.now() - this.paths.at < limits.nodeOpenApiCacheMs) return this.paths.paths
    const node = await this.anyNode()
    const unavailable = (why: string): S0Error =>
      new S0Error('unavailable', `node ${node.name} did not describe its routes: ${why}`, { retryAfterS: 2 })
    const res = await fetch(new URL('/openapi.json', node.advertiseUrl), {
      signal: AbortSignal.timeout(limits.nodeOpenApiTimeoutMs),
    }).catch((err: unknown) => {
      throw unavailable((err as Error).message)
    })
    if (!res.ok) throw unavailable(`HTTP ${res.status}`)
    const doc = (await res.json()) as { paths?: Record<string, unknown> }
    this.paths = { at: Date.now(), paths: doc.paths ?? {} }
    return this.paths.paths
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy()
  }

  private async route(req: IncomingMessage): Promise<Target> {
    const service = this.serviceSandbox(req)
    if (service) return this.sandboxTarget(service, undefined)
    const auth = await authenticate(this.o.db, parseBearer(req.headers.authorization))
    await this.o.meter.admit(auth.teamId)
    ;(req as IncomingMessage & { s0Auth?: AuthContext }).s0Auth = auth
    const p = pathOf(req)
    if (req.method === 'POST' && p === '/api/v1/sandboxes') {
      const body = await readBody(req, limits.placementBodyBytesMax)
      const demand = await claimDemand(this.o.db, auth.teamId, parseJson(body))
      const placed = await place(this.o.db, { teamId: auth.teamId, demand }, this.o.deadAfterS)
      return { node: placed.node, reservationId: placed.reservationId, body }
    }
    const sandbox = /^\/api\/v1\/sandboxes\/([^/]+)/.exec(p)?.[1]
    if (sandbox) return this.sandboxTarget(decodeURIComponent(sandbox), auth)
    const volume = /^\/api\/v1\/sandboxvolumes\/([^/]+)/.exec(p)?.[1]
    if (volume) {
      const node = await volumeWriterNode(this.o.db, decodeURIComponent(volume), this.o.deadAfterS)
      if (node) return { node }
    }
    return { node: await this.anyNode() }
  }

  /** The sandbox's live node; else a placement (the chosen agent takes it over on resume). */
  private async sandboxTarget(id: string, auth: AuthContext | undefined): Promise<Target> {
    const owner = await ownerNode(this.o.db, id, this.o.deadAfterS)
    if (owner.node) return { node: owner.node }
    if (!owner.exists || !auth) return { node: await this.anyNode() }
    const demand = await sandboxDemand(this.o.db, id)
    const placed = await place(this.o.db, { teamId: auth.teamId, demand }, this.o.deadAfterS)
    return { node: placed.node, reservationId: placed.reservationId }
  }

  /** Round robin over the live nodes, read at most once a second. */
  private async anyNode(): Promise<NodeRow> {
    const now = Date.now()
    if (!this.live || now - this.live.at > 1_000) {
      const nodes = liveNodes(this.o.db, this.o.deadAfterS)
      nodes.catch(() => (this.live = undefined))
      this.live = { at: now, nodes }
    }
    const nodes = await this.live.nodes
    if (nodes.length === 0)
      throw new S0Error('unavailable', 'no live node can serve this', { retryAfterS: 2 })
    return nodes[this.next++ % nodes.length] as NodeRow
  }

  private serviceSandbox(req: IncomingMessage): string | undefined {
    const domain = this.o.exposureDomain()?.toLowerCase()
    const host = (req.headers.host ?? '').toLowerCase().replace(/\.$/, '')
    if (!domain || !host.includes('--')) return undefined
    const dot = host.indexOf('.')
    if (dot <= 0) return undefined
    let rest = host.slice(dot + 1)
    if (!domain.includes(':')) rest = rest.replace(/:\d+$/, '')
    if (rest !== domain) return undefined
    return parseServiceLabel(host.slice(0, dot))?.sandboxId
  }

  private agentFor(node: NodeRow): http.Agent {
    let a = this.agents.get(node.advertiseUrl)
    // Idle sockets go after 30 s, well before the agent's listener drops them (keepAliveTimeout
    // 72 s, server.ts): a socket the agent is closing is then rarely reused (see `forward`).
    if (!a)
      this.agents.set(
        node.advertiseUrl,
        (a = new http.Agent({ keepAlive: true, maxSockets: 256, timeout: limits.nodeProxyIdleSocketMs })),
      )
    return a
  }

  private requestOptions(req: IncomingMessage, t: Target, upgrade: boolean): http.RequestOptions {
    const url = new URL(t.node.advertiseUrl)
    const headers: http.OutgoingHttpHeaders = {}
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const name = (req.rawHeaders[i] as string).toLowerCase()
      if (HOP_BY_HOP.has(name)) continue
      if (name === 'content-length' && t.body) continue
      const v = req.rawHeaders[i + 1] as string
      const prev = headers[name]
      headers[name] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v]
    }
    if (upgrade) {
      headers['connection'] = 'Upgrade'
      headers['upgrade'] = req.headers.upgrade ?? 'websocket'
    }
    if (t.body) headers['content-length'] = String(t.body.length)
    const auth = (req as IncomingMessage & { s0Auth?: AuthContext }).s0Auth
    headers[CLUSTER_TOKEN_HEADER] = this.o.clusterToken
    if (auth) headers[PRINCIPAL_HEADER] = encodePrincipal(auth)
    if (t.reservationId) headers[PLACEMENT_HEADER] = t.reservationId
    headers['x-request-id'] ??= `req-${randomHexId(8)}`
    const xff = req.headers['x-forwarded-for']
    const peer = req.socket.remoteAddress ?? ''
    headers['x-forwarded-for'] = typeof xff === 'string' && xff !== '' ? `${xff}, ${peer}` : peer
    return {
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port,
      method: req.method,
      path: req.url,
      headers,
      ...(upgrade ? {} : { agent: this.agentFor(t.node) }),
    }
  }

  private forward(req: IncomingMessage, res: ServerResponse, t: Target, retried = false): Promise<void> {
    return new Promise((resolve, reject) => {
      const up = http.request(this.requestOptions(req, t, false), (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, stripHopByHop(upRes.rawHeaders))
        // Watches stream for as long as the client listens: flush each chunk as it comes.
        res.flushHeaders()
        upRes.pipe(res)
        upRes.on('end', () => resolve())
        upRes.on('error', () => res.destroy())
      })
      // The client went away: so does the forwarded request (a watch stops at the agent too).
      res.on('close', () => {
        if (!res.writableFinished) up.destroy()
        resolve()
      })
      up.on('error', (err) => {
        if (res.headersSent) {
          res.destroy()
          resolve()
          return
        }
        // A kept-alive socket the agent closed just as it was reused: nothing reached the agent,
        // so a request whose body is not a consumed stream goes again, once, on a new socket.
        const code = (err as NodeJS.ErrnoException).code
        if (!retried && up.reusedSocket && code === 'ECONNRESET' && (t.body || !hasBody(req))) {
          this.forward(req, res, t, true).then(resolve, reject)
          return
        }
        reject(
          new S0Error(
            'unavailable',
            `node ${t.node.name} did not answer (${(err as NodeJS.ErrnoException).code ?? err.message})`,
            {
              retryAfterS: 1,
              cause: err,
            },
          ),
        )
      })
      if (t.body) up.end(t.body)
      else req.pipe(up)
    })
  }

  private fail(res: ServerResponse, err: unknown): void {
    if (!isS0Error(err)) this.o.log.error('forwarding to a node failed', { err })
    if (res.headersSent) {
      res.destroy()
      return
    }
    const { status, body } =
      isS0Error(err) || (err as { statusCode?: number }).statusCode
        ? toErrorResponse(err)
        : { status: 502, body: errorBody('unavailable', 'forwarding to a node failed') }
    const headers: http.OutgoingHttpHeaders = { 'content-type': JSON_TYPE }
    if (isS0Error(err) && err.retryAfterS !== undefined) headers['retry-after'] = String(err.retryAfterS)
    res.writeHead(status, headers)
    res.end(JSON.stringify(body))
  }
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  // The SDK sends `//api/v1/...` when its base URL ends with '/'.
  return (q < 0 ? url : url.slice(0, q)).replace(/^\/+/, '/')
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0
}

function stripHopByHop(raw: string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (name === 'connection' || name === 'keep-alive' || name === 'transfer-encoding') continue
    out.push(raw[i] as string, raw[i + 1] as string)
  }
  return out
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let n = 0
    req.on('data', (c: Buffer) => {
      n += c.length
      if (n > max) {
        reject(new S0Error('payload_too_large', `request body over ${max} bytes`))
        req.destroy()
        return
      }
      parts.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(parts)))
    req.on('error', reject)
  })
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch {
    return undefined // the agent answers the parse error
  }
}
