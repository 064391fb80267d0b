// The HTTP API: builds (never listens) the fastify instance with the wire envelope, bearer auth
// for /api/v1, one error handler over the error catalogue, health, readiness and Prometheus metrics.
import type { IncomingMessage } from 'node:http'
import Fastify from 'fastify'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { ResilientObjectStore } from '../blockstore/resilient-object-store.js'
import type { Config } from '../core/config.js'
import type { Db } from '../core/db.js'
import { S0Error, isS0Error, type ErrorCode } from '../core/errors.js'
import { randomHexId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import { authenticate, parseBearer, type AuthContext } from './auth.js'
import { registerVolumeRoutes } from './volumes.js'
import { registerMountRoutes } from './mounts.js'
import type { MountManager } from '../fuse/mounts.js'
import { registerVolumeWatchRoute } from './volume-watch.js'
import { registerVolumeArchiveRoute } from './volume-archive.js'
import { registerSandboxRoutes } from './sandboxes.js'
import { registerSandboxSnapshotRoutes } from './sandbox-snapshots.js'
import { registerContextRoutes, registerContextWsRoute } from './contexts.js'
import { registerSandboxFileRoutes } from './sandbox-files.js'
import { registerSandboxWatchRoute } from './sandbox-watch.js'
import type { SandboxService } from './sandbox-service.js'
import { registerTemplateRoutes } from './templates.js'
import websocket from '@fastify/websocket'
import { collectRoutes, openApiDocument } from './openapi.js'

export const API_PREFIX = '/api/v1/'
const API_VERSION = '0.1.0'
const READY_TIMEOUT_MS = 2_000
// Client-supplied request ids are kept (they help trace through proxies) only when harmless.
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/
const JSON_TYPE = 'application/json; charset=utf-8'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every /api/v1 route; null elsewhere. */
    auth: AuthContext | null
  }
}

export interface ServerDeps {
  db: Db
  chunkStore: ChunkStore
  /** The volume engine; without it the volume routes are not served. */
  volumes?: VolumeEngine
  /** Sandboxes, templates, contexts and sandbox files; without it those routes are not served. */
  sandboxes?: SandboxService
  /** FUSE mounts on this host; without it the mount routes are not served. */
  mounts?: MountManager
  config: Config
  log: Logger
}

export interface ErrorBody {
  success: false
  error: { code: string; message: string; details?: unknown }
}

export function ok<T>(data: T): { success: true; data: T } {
  return { success: true, data }
}

export function errorBody(code: ErrorCode, message: string, details?: unknown): ErrorBody {
  return { success: false, error: details === undefined ? { code, message } : { code, message, details } }
}

/** The caller of an /api/v1 route; the auth hook guarantees it is set there. */
export function requireAuth(request: FastifyRequest): AuthContext {
  if (!request.auth) throw new S0Error('unauthorized', 'authentication required')
  return request.auth
}

export function buildServer(deps: ServerDeps): FastifyInstance {
  const app = Fastify({
    logger: false,
    bodyLimit: limits.requestBodyBytesMax,
    // The SDK sends `//api/v1/...` when its baseUrl ends with '/'.
    routerOptions: { ignoreDuplicateSlashes: true },
    genReqId,
    // Unknown fields are errors, not silently dropped; types are not coerced beyond query strings.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
  })
  const metrics = new RequestMetrics()
  const routes = collectRoutes(app)
  app.decorateRequest('auth', null)
  // The SDK sends `Content-Type: application/json` with no body on some calls (fork without
  // options): an empty JSON body means "no body", anything else must parse.
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8')
    if (text.trim() === '') return done(null, undefined)
    try {
      done(null, JSON.parse(text) as unknown)
    } catch {
      done(Object.assign(new Error('request body is not valid JSON'), { statusCode: 400 }), undefined)
    }
  })

  app.addHook('onRequest', async (request) => {
    if (!request.routeOptions.url?.startsWith(API_PREFIX)) return
    request.auth = await authenticate(deps.db, parseBearer(request.headers.authorization))
  })
  app.addHook('onSend', async (request, reply, payload) => {
    void reply.header('X-Request-Id', request.id)
    return neverEmpty(request, reply, payload)
  })
  app.addHook('onResponse', async (request, reply) => {
    metrics.count(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode)
    deps.log.debug('request', {
      reqId: request.id,
      method: request.method,
      url: request.url,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
    })
  })

  app.setErrorHandler((err: unknown, request, reply) => sendError(deps.log, err, request, reply))
  app.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .type(JSON_TYPE)
      .send(errorBody('not_found', `no route for ${request.method} ${request.url}`))
  })

  registerHealthRoutes(app, deps, metrics)
  // Public: the document describes the API, it holds no data.
  app.get('/openapi.json', async () => openApiDocument(routes, API_VERSION))
  app.get('/api/v1/me', async (request) => {
    const auth = requireAuth(request)
    return ok({ team_id: auth.teamId, key_id: auth.keyId, role: auth.role })
  })
  void app.register(websocket, { options: { maxPayload: limits.webSocketMessageBytesMax } })
  const volumes = deps.volumes
  if (volumes) {
    registerVolumeRoutes(app, volumes, deps.mounts)
    if (deps.mounts) registerMountRoutes(app, deps.mounts)
    registerVolumeArchiveRoute(app, volumes)
    // WebSocket routes must be declared after the plugin has loaded, hence a child plugin.
    void app.register(async (scope) => registerVolumeWatchRoute(scope, volumes))
  }
  const sandboxes = deps.sandboxes
  if (sandboxes) {
    registerTemplateRoutes(app, sandboxes.catalog)
    registerSandboxRoutes(app, sandboxes)
    registerSandboxSnapshotRoutes(app, sandboxes)
    registerContextRoutes(app, sandboxes)
    void app.register(async (scope) => {
      registerSandboxFileRoutes(scope, sandboxes)
      registerContextWsRoute(scope, sandboxes)
      registerSandboxWatchRoute(scope, sandboxes)
    })
  }
  return app
}

function genReqId(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id']
  if (typeof incoming === 'string' && REQUEST_ID_PATTERN.test(incoming)) return incoming
  return `req-${randomHexId(8)}`
}

/** The SDK calls `response.json()` on every reply, so a 204 or an empty body would throw there. */
async function neverEmpty(request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (reply.statusCode === 204) void reply.code(200)
  const empty = payload === undefined || payload === null || payload === ''
  if (!empty || request.method === 'HEAD') return payload
  void reply.type(JSON_TYPE)
  return JSON.stringify(reply.statusCode < 400 ? ok({}) : errorBody('internal_error', 'empty response'))
}

function sendError(log: Logger, err: unknown, request: FastifyRequest, reply: FastifyReply): void {
  const { status, body } = toErrorResponse(err)
  // `unavailable` is expected (a sandbox waking up, a server starting): not worth an error line.
  if (status >= 500 && !(isS0Error(err) && err.code === 'unavailable'))
    log.error('request failed', { reqId: request.id, method: request.method, url: request.url, err })
  if (isS0Error(err) && err.retryAfterS !== undefined)
    void reply.header('retry-after', String(err.retryAfterS))
  void reply.code(status).type(JSON_TYPE).send(body)
}

/** Maps anything thrown during a request onto a catalogue status and the error envelope. */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (isS0Error(err)) return { status: err.status, body: errorBody(err.code, err.message, err.details) }
  const fe = err as { validation?: unknown; statusCode?: unknown; code?: unknown; message?: unknown }
  const message = typeof fe.message === 'string' ? fe.message : 'request failed'
  if (fe.validation !== undefined)
    return { status: 400, body: errorBody('bad_request', message, fe.validation) }
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500
  // fastify's own client errors (body too large, bad JSON, bad content type) carry a 4xx status.
  if (status === 413)
    return {
      status,
      body: errorBody('payload_too_large', `request body exceeds ${limits.requestBodyBytesMax} bytes`),
    }
  if (status === 404) return { status, body: errorBody('not_found', message) }
  if (status >= 400 && status < 500) return { status: 400, body: errorBody('bad_request', message) }
  // Anything else is a bug or an unexpected failure: its message may leak internals.
  return { status: 500, body: errorBody('internal_error', 'internal error; see the server log') }
}

function registerHealthRoutes(app: FastifyInstance, deps: ServerDeps, metrics: RequestMetrics): void {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async () => {
    await pingPostgres(deps.db)
    return { status: 'ok' }
  })
  app.get('/metrics', async (_request, reply) => {
    void reply.type('text/plain; version=0.0.4; charset=utf-8')
    return renderMetrics(deps, metrics)
  })
}

async function pingPostgres(db: Db): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS)
  })
  try {
    await Promise.race([db.query('SELECT 1'), timeout])
  } catch (err) {
    throw new S0Error('unavailable', `postgres is not ready: ${(err as Error).message}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
}

/** HTTP request counts by method, route pattern and status: bounded by the route table. */
class RequestMetrics {
  private readonly counts = new Map<string, { method: string; route: string; status: number; n: number }>()

  count(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`
    const entry = this.counts.get(key)
    if (entry) entry.n++
    else this.counts.set(key, { method, route, status, n: 1 })
  }

  lines(): string[] {
    return [...this.counts.values()].map(
      (e) =>
        `s0_http_requests_total{method="${label(e.method)}",route="${label(e.route)}",status="${e.status}"} ${e.n}`,
    )
  }
}

function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function snake(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

function metric(name: string, type: 'counter' | 'gauge', help: string, samples: string[]): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples]
}

/** Counter families from a record of numbers (chunk store counters, object store stats). */
function counterFamilies(prefix: string, what: string, record: object): string[] {
  const out: string[] = []
  for (const [key, value] of Object.entries(record)) {
    if (typeof value !== 'number') continue
    const name = `${prefix}_${snake(key)}_total`
    out.push(...metric(name, 'counter', `${what} ${key} since start.`, [`${name} ${value}`]))
  }
  return out
}

function renderMetrics(deps: ServerDeps, requests: RequestMetrics): string {
  const mem = process.memoryUsage()
  const store = deps.chunkStore
  const pool = deps.db.pool
  const lines = [
    ...metric('s0_process_uptime_seconds', 'gauge', 'Seconds since the process started.', [
      `s0_process_uptime_seconds ${process.uptime().toFixed(3)}`,
    ]),
    ...metric('s0_process_resident_memory_bytes', 'gauge', 'Resident set size.', [
      `s0_process_resident_memory_bytes ${mem.rss}`,
    ]),
    ...metric('s0_process_heap_used_bytes', 'gauge', 'V8 heap in use.', [
      `s0_process_heap_used_bytes ${mem.heapUsed}`,
    ]),
    ...metric(
      's0_http_requests_total',
      'counter',
      'HTTP requests by method, route and status.',
      requests.lines(),
    ),
    ...counterFamilies('s0_chunk_store', 'Chunk store counter', store.counters),
    ...(store.objects instanceof ResilientObjectStore
      ? counterFamilies('s0_object_store', 'Object store counter', store.objects.stats)
      : []),
    ...metric('s0_chunk_cache_bytes', 'gauge', 'Bytes held by the chunk caches.', [
      `s0_chunk_cache_bytes{tier="memory"} ${store.memoryCacheBytes}`,
      `s0_chunk_cache_bytes{tier="disk"} ${store.diskCacheBytes}`,
    ]),
    ...metric('s0_db_pool_connections', 'gauge', 'Postgres pool connections by state.', [
      `s0_db_pool_connections{state="total"} ${pool.totalCount}`,
      `s0_db_pool_connections{state="idle"} ${pool.idleCount}`,
      `s0_db_pool_connections{state="waiting"} ${pool.waitingCount}`,
    ]),
  ]
  return lines.join('\n') + '\n'
}
