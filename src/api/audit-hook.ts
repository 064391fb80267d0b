// Who called: every authenticated request runs as its API key (core/request-context.ts), so the
// events its work records name that actor; every call that reached a sandbox of the caller's team
// is itself an `api_access` event of that sandbox (route, status, request id, client).
import type { FastifyInstance } from 'fastify'
import type { EventLog, EventOutcome } from '../core/events.js'
import { runAs } from '../core/request-context.js'

const SANDBOX_ROUTE = '/api/v1/sandboxes/:id'

export function addAuditHooks(scope: FastifyInstance, events: EventLog | undefined): void {
  // preHandler, not onRequest: a body is read between the two, outside the request's async
  // context; from here on, the handler and all it awaits run inside `runAs`.
  scope.addHook('preHandler', (request, _reply, done) => {
    const auth = request.auth
    if (!auth) return done()
    runAs(
      {
        actor: { kind: 'api_key', id: auth.keyId, api_key_id: auth.keyId, auth_method: 'api_key' },
        requestId: String(request.id),
      },
      done,
    )
  })
  if (!events) return
  scope.addHook('onResponse', async (request, reply) => {
    const auth = request.auth
    const route = request.routeOptions.url
    const id = (request.params as { id?: unknown } | undefined)?.id
    // A 404 reached no sandbox of this team (another team's is a 404 too): nothing to record.
    if (!auth || typeof id !== 'string' || !route?.startsWith(SANDBOX_ROUTE) || reply.statusCode === 404)
      return
    const status = reply.statusCode
    const outcome: EventOutcome =
      status < 400 ? 'succeeded' : status === 401 || status === 403 ? 'denied' : 'failed'
    const userAgent = request.headers['user-agent']
    events.append({
      teamId: auth.teamId,
      sandboxId: id,
      occurredAt: new Date(),
      source: 'cluster_gateway',
      eventType: 'api_access',
      phase: 'result',
      outcome,
      actor: { kind: 'api_key', id: auth.keyId, api_key_id: auth.keyId, auth_method: 'api_key' },
      action: `${request.method} ${route.slice('/api/v1'.length)}`,
      resource: { type: 'sandbox', id },
      request: {
        request_id: String(request.id),
        source_ip: request.ip,
        ...(userAgent ? { user_agent: userAgent.slice(0, 256) } : {}),
        http_method: request.method,
        route,
        status_code: status,
      },
      attributes: { duration_ms: Math.round(reply.elapsedTime) },
    })
  })
}
