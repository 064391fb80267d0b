// /api/v1/sandboxes/{id}/observability/{events,logs}: a sandbox's signed events and its contexts'
// output, paged by cursor or watched live as NDJSON (api-contract §11). Events and logs of a
// deleted sandbox stay readable until retention removes them.
import type { FastifyPluginAsync } from 'fastify'
import { EventKeyring } from '../../core/event-signing.js'
import { watchKey, type EventQuery, type StoredEvent } from '../../core/events.js'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { LogQuery, SandboxService, StoredLogLine } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { serveWatch } from '../ndjson-watch.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import { eventsQuery, logsQuery, type EventsQuery, type LogsQuery } from '../schemas/observability.js'
import type { PluginOptions } from '../services.js'
import { eventJson, logJson } from '../wire/observability.js'

function times(q: { start_time?: string; end_time?: string; watch?: string }): {
  startTime?: Date
  endTime?: Date
} {
  if (q.watch === 'true' && q.end_time !== undefined)
    throw new S0Error('invalid_request', 'end_time cannot be used with watch=true (a watch has no end)')
  const startTime = q.start_time === undefined ? undefined : new Date(q.start_time)
  const endTime = q.end_time === undefined ? undefined : new Date(q.end_time)
  if (startTime && endTime && endTime <= startTime)
    throw new S0Error('invalid_request', 'end_time must be after start_time')
  return { ...(startTime ? { startTime } : {}), ...(endTime ? { endTime } : {}) }
}

export const observabilityRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService
  const events = svc.events
  const region = events?.region ?? services.config.regionId
  const cluster = events?.cluster ?? 'local'
  // The keys events are checked against as they are served: this server's own.
  const keyring = new EventKeyring(events ? [events.signer.verifier] : [])

  app.get<{ Params: IdParams; Querystring: EventsQuery }>(
    '/sandboxes/:id/observability/events',
    { schema: { params: idParams, querystring: eventsQuery } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const id = request.params.id
      const q = request.query
      const filter: EventQuery = {
        ...times(q),
        ...(q.source ? { source: q.source } : {}),
        ...(q.event_type ? { eventType: q.event_type } : {}),
        ...(q.outcome ? { outcome: q.outcome } : {}),
        ...(q.actor_kind ? { actorKind: q.actor_kind } : {}),
        ...(q.actor_id ? { actorId: q.actor_id } : {}),
        ...(q.action ? { action: q.action } : {}),
        ...(q.resource_type ? { resourceType: q.resource_type } : {}),
        ...(q.operation_id ? { operationId: q.operation_id } : {}),
        ...(q.event_id ? { eventId: q.event_id } : {}),
      }
      await svc.requireObservable(teamId, id)
      if (!events) throw new S0Error('unavailable', 'this server keeps no events')
      const after = Number(q.cursor ?? 0)
      if (q.watch === 'true') {
        const key = watchKey(teamId, id)
        return serveWatch<StoredEvent>(
          request,
          reply,
          {
            fetch: (a) => events.list(teamId, id, { ...filter, after: a, limit: limits.eventPageMax }),
            cursorOf: (e) => e.seq,
            line: (e) => ({ type: 'event', data: eventJson(e, keyring) }),
            subscribe: (wake) => events.onWritten((keys) => keys.has(key) && wake()),
            pageMax: limits.eventPageMax,
          },
          after,
        )
      }
      const limit = q.limit ?? limits.eventPageDefault
      const rows = await events.list(teamId, id, { ...filter, after, limit })
      const last = rows.at(-1)
      return ok({
        events: rows.map((e) => eventJson(e, keyring)),
        ...(rows.length === limit && last ? { next_cursor: String(last.seq) } : {}),
        watermark: String(last?.seq ?? after),
      })
    },
  )

  app.get<{ Params: IdParams; Querystring: LogsQuery }>(
    '/sandboxes/:id/observability/logs',
    { schema: { params: idParams, querystring: logsQuery } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const id = request.params.id
      const q = request.query
      const filter: LogQuery = {
        ...times(q),
        ...(q.context_id ? { contextId: q.context_id } : {}),
        ...(q.stream ? { stream: q.stream } : {}),
      }
      await svc.requireObservable(teamId, id)
      const after = Number(q.cursor ?? 0)
      if (q.watch === 'true') {
        const key = watchKey(teamId, id)
        return serveWatch<StoredLogLine>(
          request,
          reply,
          {
            fetch: (a) => svc.logs.list(teamId, id, { ...filter, after: a, limit: limits.logPageMax }),
            cursorOf: (l) => l.seq,
            line: (l) => ({ type: 'log', data: logJson(l, region, cluster) }),
            subscribe: (wake) => svc.logs.onWritten((keys) => keys.has(key) && wake()),
            pageMax: limits.logPageMax,
          },
          after,
        )
      }
      const limit = q.limit ?? limits.logPageDefault
      const rows = await svc.logs.list(teamId, id, { ...filter, after, limit })
      const last = rows.at(-1)
      return ok({
        logs: rows.map((l) => logJson(l, region, cluster)),
        ...(rows.length === limit && last ? { next_cursor: String(last.seq) } : {}),
        watermark: String(last?.seq ?? after),
      })
    },
  )
}
