// Sandbox runtime metrics: `GET /sandboxes/{id}/metrics` (bucketed series of the sandbox's
// samples, with freshness, gaps and segments) and `GET /sandboxes/{id}/metrics/catalog`.
// Query strings are checked here for form, by the domain (metrics/query.ts) for meaning.
import type { FastifyPluginAsync } from 'fastify'
import { S0Error } from '../../core/errors.js'
import {
  catalog,
  STATISTICS,
  type MetricsResult,
  type SandboxService,
  type Statistic,
} from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import type { PluginOptions } from '../services.js'

interface MetricsQueryString {
  start_time?: string
  end_time?: string
  metrics?: string
  step_seconds?: number
  statistic?: Statistic
  max_points?: number
}

const metricsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    start_time: { type: 'string', maxLength: 64 },
    end_time: { type: 'string', maxLength: 64 },
    metrics: { type: 'string', maxLength: 2_048 },
    step_seconds: { type: 'integer', minimum: 1, maximum: 30 * 86_400 },
    statistic: { type: 'string', enum: [...STATISTICS] },
    max_points: { type: 'integer', minimum: 1, maximum: 1_000 },
  },
} as const

function time(v: string | undefined, field: string): Date | undefined {
  if (v === undefined) return undefined
  const d = new Date(v)
  // RFC 3339 only (what the SDK sends: toISOString); Date also takes looser forms.
  if (
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(v) ||
    Number.isNaN(d.getTime())
  )
    throw new S0Error('bad_request', `${field} must be an RFC 3339 time (e.g. 2025-01-02T03:04:05Z)`, {
      details: { field },
    })
  return d
}

export function metricsJson(r: MetricsResult): Record<string, unknown> {
  return {
    start_time: r.startTime.toISOString(),
    end_time: r.endTime.toISOString(),
    step_seconds: r.stepSeconds,
    series: r.series.map((s) => ({
      metric: s.metric,
      kind: s.kind,
      unit: s.unit,
      statistic: s.statistic,
      ...(s.dimensions ? { dimensions: s.dimensions } : {}),
      segments: s.segments.map((g) => ({
        points: g.points.map((p) => ({ time: p.time.toISOString(), value: p.value })),
      })),
    })),
    freshness: {
      status: r.freshness.status,
      ...(r.freshness.newestObservedAt
        ? { newest_observed_at: r.freshness.newestObservedAt.toISOString() }
        : {}),
      ...(r.freshness.ageSeconds !== undefined ? { age_seconds: r.freshness.ageSeconds } : {}),
    },
    gaps: r.gaps.map((g) => ({
      metric: g.metric,
      ...(g.dimensions ? { dimensions: g.dimensions } : {}),
      start_time: g.startTime.toISOString(),
      end_time: g.endTime.toISOString(),
      reason: g.reason,
    })),
    partial: r.partial,
  }
}

export const sandboxMetricsRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.get<{ Params: IdParams; Querystring: MetricsQueryString }>(
    '/sandboxes/:id/metrics',
    { schema: { params: idParams, querystring: metricsQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const q = request.query
      const start = time(q.start_time, 'start_time')
      const end = time(q.end_time, 'end_time')
      const result = await svc.metrics(teamId, request.params.id, {
        ...(start ? { startTime: start } : {}),
        ...(end ? { endTime: end } : {}),
        ...(q.metrics !== undefined ? { metrics: q.metrics.split(',').map((m) => m.trim()) } : {}),
        ...(q.step_seconds !== undefined ? { stepSeconds: q.step_seconds } : {}),
        ...(q.statistic !== undefined ? { statistic: q.statistic } : {}),
        ...(q.max_points !== undefined ? { maxPoints: q.max_points } : {}),
      })
      return ok(metricsJson(result))
    },
  )

  app.get<{ Params: IdParams }>(
    '/sandboxes/:id/metrics/catalog',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      // Another team's sandbox (or none) is not found, as for its metrics.
      await svc.get(teamId, request.params.id)
      return ok({ metrics: catalog() })
    },
  )
}
