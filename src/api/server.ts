// The HTTP API: builds (never listens) the fastify instance with the wire envelope, bearer auth on
// the /api/v1 scope, one error handler over the error catalogue, and one plugin per resource.
// Route handlers parse and answer; what they do is the domain's (sandboxes, snapshots, fuse).
import http, { type IncomingMessage, type RequestListener } from 'node:http'
import type { Duplex } from 'node:stream'
import websocket from '@fastify/websocket'
import Fastify from 'fastify'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { crashOnBug, isBug } from '../core/assert.js'
import { isS0Error } from '../core/errors.js'
import { randomHexId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import { IngressProxy, type Exposure } from '../sandboxes/index.js'
import type { ArchiveImportLimits } from '../snapshots/archive-import.js'
import { exposureOf } from './exposure.js'
import { addAuditHooks } from './audit-hook.js'
import { addAuthHook } from './auth-hook.js'
import { RequestMetrics } from './metrics.js'
import { collectRoutes, openApiDocument } from './openapi.js'
import { errorBody, JSON_TYPE, ok, toErrorResponse } from './reply.js'
import { contextWsRoute } from './routes/context-ws.js'
import { credentialSourceRoutes } from './routes/credential-sources.js'
import { contextRoutes } from './routes/contexts.js'
import { healthRoutes } from './routes/health.js'
import { meRoute } from './routes/me.js'
import { nodeRoutes } from './routes/nodes.js'
import { mountRoutes } from './routes/mounts.js'
import { networkRoutes } from './routes/network.js'
import { observabilityRoutes } from './routes/observability.js'
import { sandboxFileRoutes } from './routes/sandbox-files.js'
import { sandboxSnapshotRoutes } from './routes/sandbox-snapshots.js'
import { sandboxMetricsRoutes } from './routes/sandbox-metrics.js'
import { sandboxWatchRoute } from './routes/sandbox-watch.js'
import { sandboxRoutes } from './routes/sandboxes.js'
import { sessionRoutes } from './routes/sessions.js'
import { serviceRoutes } from './routes/services.js'
import { sshKeyRoutes } from './routes/ssh-keys.js'
import { templateRoutes } from './routes/templates.js'
import { registryRoutes } from './routes/registry.js'
import { volumeArchiveRoute } from './routes/volume-archive.js'
import { volumeFileRoutes } from './routes/volume-files.js'
import { volumeSyncRoutes } from './routes/volume-sync.js'
import { volumeWatchRoute } from './routes/volume-watch.js'
import { volumeRoutes } from './routes/volumes.js'
import type { ApiServices, PluginOptions } from './services.js'
import { ApiRequestMeter, UsageRecorder } from '../accounts/index.js'
import { addQuotaHook } from './quota-hook.js'
import { PLACEMENT_HEADER } from './cluster-auth.js'
import { NodeRouter } from './node-router.js'
import { releasePlacement } from '../sandboxes/cluster/index.js'
import { apiKeyRoutes } from './routes/api-keys.js'
import { quotaRoutes } from './routes/quotas.js'
import { metadataRoute, regionRoutes } from './routes/regions.js'
import { teamRoutes } from './routes/teams.js'
import { usageRoutes } from './routes/usage.js'
import { userRoutes } from './routes/users.js'

export type { ApiServices } from './services.js'
export { ok } from './reply.js'

export const API_PREFIX = '/api/v1'
const API_VERSION = '0.1.0'
// Client-supplied request ids are kept (they help trace through proxies) only when harmless.
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

export interface BuildOptions {
  /**
   * What happens to a bug (a failed assertion) thrown by a request: by default the process
   * crashes with its stack (core/assert.ts crashOnBug); tests observe it here instead.
   */
  onBug?: (err: Error) => void
  /** More resource plugins in the authenticated /api/v1 scope (embedders, tests). */
  apiPlugins?: readonly FastifyPluginAsync<PluginOptions>[]
  /** Limits of the volume archive import (tests lower them to reach the tar-bomb refusals). */
  archiveLimits?: ArchiveImportLimits
  /**
   * Scale-out roles (docs/DEPLOY.md). `api`: a stateless replica that serves accounts itself and
   * forwards the runtime surface to agents (node-router.ts). `agent`: serves only what replicas
   * forward, authenticated by the cluster token. Unset: the all-in-one server.
   */
  cluster?: { role: 'api'; token: string; deadAfterS: number } | { role: 'agent'; token: string }
}

export function buildServer(services: ApiServices, opts: BuildOptions = {}): FastifyInstance {
  let ingress: IngressProxy | undefined
  let exposure: Exposure | undefined
  let router: NodeRouter | undefined
  const cluster = opts.cluster
  const app = Fastify({
    logger: false,
    // App services' public URLs are served on this listener: a request whose Host names one goes
    // to the ingress proxy before fastify sees it (its body streams, never parsed or buffered).
    // An API replica's node router takes the agents' requests the same way.
    serverFactory: (handler: RequestListener) =>
      ingressFirst(
        handler,
        () => ingress,
        () => router,
      ),
    bodyLimit: limits.requestBodyBytesMax,
    // The SDK sends `//api/v1/...` when its baseUrl ends with '/'.
    routerOptions: { ignoreDuplicateSlashes: true },
    genReqId,
    // Unknown fields are errors, not silently dropped; types are not coerced beyond query strings.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
  })
  const requests = new RequestMetrics()
  const routes = collectRoutes(app)
  app.decorateRequest('auth', null)
  app.decorateRequest('forwarded', false)
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
  app.addHook('onSend', async (request, reply, payload) => {
    void reply.header('X-Request-Id', request.id)
    return neverEmpty(request, reply, payload)
  })
  app.addHook('onResponse', async (request, reply) => {
    requests.count(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode)
    services.log.debug('request', {
      reqId: request.id,
      method: request.method,
      url: request.url,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
    })
  })
  const onBug = opts.onBug ?? crashOnBug
  app.setErrorHandler((err: unknown, request, reply) => {
    if (isBug(err)) {
      // A bug is not an answer: no 500 is sent; the process goes down loudly (see docs/ERRORS.md).
      services.log.error('BUG: assertion failed in a request', {
        reqId: request.id,
        method: request.method,
        url: request.url,
        err,
      })
      onBug(err)
      reply.hijack()
      reply.raw.destroy()
      return
    }
    sendError(services.log, err, request, reply)
  })
  app.setNotFoundHandler((request, reply) => {
    void reply
      .code(404)
      .type(JSON_TYPE)
      .send(errorBody('not_found', `no route for ${request.method} ${request.url}`))
  })

  if (services.sandboxes) {
    const sandboxes = services.sandboxes
    ingress = new IngressProxy({
      services: sandboxes.services,
      // Once listening, the exposure never changes: asked per request, it is computed once
      // (the default names the listener's port, a getsockname each time).
      exposure: () =>
        (exposure ??= app.server.listening ? exposureOf(services.config, app.server) : undefined) ??
        exposureOf(services.config, app.server),
      ...(sandboxes.events ? { events: sandboxes.events } : {}),
      log: services.log.child({ component: 'ingress' }),
    })
    app.addHook('onClose', async () => ingress?.close())
  }
  const o: PluginOptions = { services }
  // Quotas and usage (docs/ACCOUNTS.md): API request counts flushed in batches, usage sampled hourly.
  const meter = new ApiRequestMeter(services.db, services.log.child({ component: 'quotas' }))
  if (cluster?.role === 'api') {
    router = new NodeRouter({
      db: services.db,
      clusterToken: cluster.token,
      deadAfterS: cluster.deadAfterS,
      meter,
      exposureDomain: () => services.config.exposureDomain || undefined,
      log: services.log.child({ component: 'node-router' }),
    })
    app.addHook('onClose', async () => router?.close())
  }
  const agentToken = cluster?.role === 'agent' ? cluster.token : undefined
  if (agentToken !== undefined) {
    // A forwarded claim's placement lease ends with it: the sandbox row counts from now on.
    app.addHook('onResponse', async (request) => {
      const lease = request.headers[PLACEMENT_HEADER]
      if (typeof lease === 'string' && request.forwarded)
        await releasePlacement(services.db, lease).catch((err: unknown) =>
          services.log.warn('placement lease release failed', { err }),
        )
    })
  }
  const usage = new UsageRecorder(services.db, services.log.child({ component: 'usage' }))
  app.addHook('onReady', async () => {
    meter.start()
    usage.start()
  })
  app.addHook('onClose', async () => {
    await meter.close()
    await usage.close()
  })
  void app.register(healthRoutes, { ...o, requests })
  // Public: the document describes the API, it holds no data.
  // A replica serves part of the API itself and forwards the rest: its document joins the paths
  // of a live agent's (what it forwards) to its own, so it describes the whole API.
  app.get('/openapi.json', async () => {
    const doc = openApiDocument(routes, API_VERSION)
    if (!router) return doc
    return { ...doc, paths: { ...(await router.agentPaths()), ...(doc['paths'] as Record<string, unknown>) } }
  })
  void app.register(websocket, { options: { maxPayload: limits.webSocketMessageBytesMax } })
  void app.register(
    async (api) => {
      addAuthHook(api, services.db, agentToken)
      addAuditHooks(api, services.sandboxes?.events)
      addQuotaHook(api, services.db, meter)
      const use = (plugin: FastifyPluginAsync<PluginOptions>): void => void api.register(plugin, o)
      use(meRoute)
      use(nodeRoutes)
      void api.register(quotaRoutes, { ...o, meter })
      use(usageRoutes)
      if (services.volumes) {
        use(volumeRoutes)
        use(volumeFileRoutes)
        use(volumeWatchRoute)
        use(volumeSyncRoutes)
        void api.register(volumeArchiveRoute, {
          ...o,
          ...(opts.archiveLimits ? { limits: opts.archiveLimits } : {}),
        })
        if (services.mounts) use(mountRoutes)
      }
      if (services.sandboxes) {
        use(templateRoutes)
        use(sandboxRoutes)
        use(sandboxSnapshotRoutes)
        use(networkRoutes)
        use(serviceRoutes)
        use(contextRoutes)
        use(contextWsRoute)
        use(sandboxFileRoutes)
        use(sandboxWatchRoute)
        use(observabilityRoutes)
        use(registryRoutes)
        use(sandboxMetricsRoutes)
        use(sessionRoutes)
      }
      if (services.credentials) use(credentialSourceRoutes)
      for (const plugin of opts.apiPlugins ?? []) use(plugin)
    },
    { prefix: API_PREFIX },
  )
  // The SDK's account surface has no /api/v1 prefix (`/users/me/ssh-keys`); same bearer auth.
  void app.register(async (account) => {
    addAuthHook(account, services.db, agentToken)
    addQuotaHook(account, services.db, meter)
    void account.register(sshKeyRoutes, o)
    void account.register(apiKeyRoutes, o)
    void account.register(teamRoutes, o)
    void account.register(userRoutes, o)
    void account.register(regionRoutes, o)
  })
  // Public, as the health routes: what kind of gateway this is.
  void app.register(metadataRoute, o)
  return app
}

/**
 * The HTTP server: requests and upgrades for an app service's host go to the ingress proxy,
 * everything else to fastify. Upgrades are taken before any other 'upgrade' listener (the
 * WebSocket plugin's) sees them: `emit` is the one place that decides who gets an event.
 */
function ingressFirst(
  handler: RequestListener,
  proxy: () => IngressProxy | undefined,
  nodes: () => NodeRouter | undefined,
): http.Server {
  const server = http.createServer((req, res) => {
    const r = nodes()
    if (r?.claims(req)) return void r.handle(req, res)
    const p = proxy()
    const named = p?.claims(req)
    if (named) void p?.handleRequest(req, res, named)
    else handler(req, res)
  })
  const emit = server.emit.bind(server) as (event: string, ...args: unknown[]) => boolean
  server.emit = ((event: string, ...args: unknown[]) => {
    if (event === 'upgrade') {
      const r = nodes()
      const req = args[0] as IncomingMessage
      if (r?.claims(req)) {
        void r.handleUpgrade(req, args[1] as Duplex, args[2] as Buffer)
        return true
      }
      const p = proxy()
      const named = p?.claims(req)
      if (named) {
        void p?.handleUpgrade(req, args[1] as Duplex, args[2] as Buffer, named)
        return true
      }
    }
    return emit(event, ...args)
  }) as typeof server.emit
  // fastify sets this on servers it creates; this one is ours (Node's default is 5 s).
  server.keepAliveTimeout = limits.httpKeepAliveTimeoutMs
  return server
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
