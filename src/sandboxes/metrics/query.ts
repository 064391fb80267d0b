// A sandbox's metrics over a time range, bucketed to at most max_points per series: one SQL
// pass over the sandbox's samples (its index range) that computes, per bucket, the asked
// statistic of each asked series. Counters are never rated across a runtime restart (a new
// runtime's counters start at 0) nor across a hole in the samples; such holes and restarts end
// a segment and are reported as gaps. Nothing missing is ever reported as zero.
import type { Db } from '../../core/db.js'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import {
  METRICS,
  METRIC_NAMES,
  STATISTICS,
  type MetricDef,
  type MetricKind,
  type MetricUnit,
  type Statistic,
} from './catalog.js'

export type GapReason = 'unavailable' | 'unsupported' | 'collection_error' | 'no_data' | 'series_reset'

export interface MetricsQuery {
  startTime?: Date
  endTime?: Date
  metrics?: string[]
  stepSeconds?: number
  statistic?: Statistic
  maxPoints?: number
}

export interface MetricSeries {
  metric: string
  kind: MetricKind
  unit: MetricUnit
  statistic: Exclude<Statistic, 'auto'>
  dimensions?: Record<string, string>
  segments: Array<{ points: Array<{ time: Date; value: number }> }>
}

export interface MetricGap {
  metric: string
  dimensions?: Record<string, string>
  startTime: Date
  endTime: Date
  reason: GapReason
}

export interface MetricsResult {
  startTime: Date
  endTime: Date
  stepSeconds: number
  series: MetricSeries[]
  freshness: { status: 'fresh' | 'stale' | 'missing'; newestObservedAt?: Date; ageSeconds?: number }
  gaps: MetricGap[]
  partial: boolean
}

export interface SamplingInfo {
  intervalMs: number
  retentionMs: number
}

function bad(message: string, field: string): S0Error {
  return new S0Error('bad_request', message, { details: { field } })
}

interface Plan {
  start: Date
  end: Date
  step: number
  wanted: Array<{ def: MetricDef; statistic: Exclude<Statistic, 'auto'> }>
}

/** Checks the query and fills its defaults (the hour ending now, an automatic step). */
export function planQuery(q: MetricsQuery, sampling: SamplingInfo, now = new Date()): Plan {
  const end = q.endTime ?? now
  const start = q.startTime ?? new Date(end.getTime() - limits.metricsDefaultRangeMs)
  if (Number.isNaN(start.getTime())) throw bad('start_time is not a valid RFC 3339 time', 'start_time')
  if (Number.isNaN(end.getTime())) throw bad('end_time is not a valid RFC 3339 time', 'end_time')
  if (start.getTime() >= end.getTime()) throw bad('start_time must be before end_time', 'start_time')
  const rangeMs = end.getTime() - start.getTime()
  if (rangeMs > limits.metricsQueryRangeMsMax)
    throw bad(`the range may span at most ${limits.metricsQueryRangeMsMax / 86_400_000} days`, 'start_time')
  const maxPoints = q.maxPoints ?? limits.metricsMaxPointsDefault
  if (!Number.isInteger(maxPoints) || maxPoints < 1 || maxPoints > limits.metricsMaxPointsMax)
    throw bad(`max_points must be an integer from 1 to ${limits.metricsMaxPointsMax}`, 'max_points')
  let step: number
  if (q.stepSeconds !== undefined) {
    step = q.stepSeconds
    if (!Number.isInteger(step) || step < 1)
      throw bad('step_seconds must be a positive integer', 'step_seconds')
    // The SDK: "the server may increase it to honor maxPoints".
    step = Math.max(step, Math.ceil(rangeMs / 1000 / maxPoints))
  } else {
    step = Math.max(Math.ceil(rangeMs / 1000 / maxPoints), Math.ceil(sampling.intervalMs / 1000), 1)
  }
  const statistic = q.statistic ?? 'auto'
  if (!STATISTICS.includes(statistic))
    throw bad(`statistic must be one of ${STATISTICS.join(', ')}`, 'statistic')
  let names = q.metrics?.filter((m) => m !== '') ?? []
  const unknown = names.filter((n) => !METRIC_NAMES.includes(n))
  if (unknown.length > 0)
    throw bad(
      `unknown metric ${unknown.map((u) => JSON.stringify(u)).join(', ')} (GET .../metrics/catalog lists them)`,
      'metrics',
    )
  if (names.length === 0)
    names = METRICS.filter((m) => statistic !== 'rate' || m.kind === 'counter').map((m) => m.name)
  const wanted = [...new Set(names)].map((n) => {
    const def = METRICS.find((m) => m.name === n)!
    if (statistic === 'rate' && def.kind !== 'counter')
      throw bad(`statistic rate applies to counters only; ${def.name} is a gauge`, 'statistic')
    const resolved = statistic !== 'auto' ? statistic : def.kind === 'counter' ? 'rate' : 'average'
    return { def, statistic: resolved }
  })
  return { start, end, step, wanted }
}

/** `s.col` is the sample, `p.col` the previous sample of the same runtime (the `w` columns). */
function sql(expr: string): string {
  return expr.replace(/\bs\.(\w+)/g, '$1').replace(/\bp\.(\w+)/g, 'p_$1')
}

const LAGGED = ['cpu_usage_usec', 'net_rx_bytes', 'net_tx_bytes', 'net_rx_errors', 'net_tx_errors']

function aggregate(value: string, delta: string | undefined, statistic: Exclude<Statistic, 'auto'>): string {
  const v = `(${sql(value)})::float8`
  switch (statistic) {
    case 'average':
      return `avg(${v})`
    case 'minimum':
      return `min(${v})`
    case 'maximum':
      return `max(${v})`
    case 'last':
      return `(array_agg(${v} ORDER BY time DESC) FILTER (WHERE ${v} IS NOT NULL))[1]`
    case 'rate': {
      const d = `(${sql(delta ?? value)})::float8`
      return `sum(${d}) FILTER (WHERE dt IS NOT NULL) / NULLIF(sum(dt) FILTER (WHERE ${d} IS NOT NULL), 0)`
    }
  }
}

function unitOf(def: MetricDef, statistic: Exclude<Statistic, 'auto'>): MetricUnit {
  return statistic === 'rate' ? (def.rateUnit ?? def.unit) : def.unit
}

export async function queryMetrics(
  db: Db,
  teamId: string,
  sandboxId: string,
  q: MetricsQuery,
  sampling: SamplingInfo,
): Promise<MetricsResult> {
  const now = new Date()
  const plan = planQuery(q, sampling, now)
  // Samples further apart than this (or of another runtime) are not one continuous series.
  const holeS = Math.max((limits.metricsHoleIntervals * sampling.intervalMs) / 1000, 1)
  const series = plan.wanted.flatMap(({ def, statistic }) =>
    def.series.map((src) => ({ def, statistic, src })),
  )
  const aggs = series.map((s, i) => `${aggregate(s.src.value, s.src.delta, s.statistic)} AS v${i}`)
  const lagged = LAGGED.map((c) => `lag(${c}) OVER r AS p_${c}`).join(', ')
  const windowed = `
    w AS (
      SELECT *, lag(time) OVER r AS p_time, ${lagged},
             lag(time) OVER t AS t_prev, lag(started_at) OVER t AS t_prev_started
      FROM sandbox_metric_samples
      WHERE team_id = $1 AND sandbox_id = $2 AND time >= $3::timestamptz - make_interval(secs => $5::float8) AND time <= $4
      WINDOW r AS (PARTITION BY started_at ORDER BY time), t AS (ORDER BY time)
    ),
    x AS (
      SELECT *,
        CASE WHEN extract(epoch FROM time - p_time) <= $5::float8 THEN extract(epoch FROM time - p_time)::float8 END AS dt,
        (t_prev IS NULL OR started_at <> t_prev_started OR extract(epoch FROM time - t_prev) > $5::float8) AS breaks
      FROM w
    )`
  const { rows } = await db.query<Record<string, unknown> & { seg: string; b: number }>(
    `WITH ${windowed},
     y AS (SELECT *, sum(CASE WHEN breaks THEN 1 ELSE 0 END) OVER (ORDER BY time) AS seg FROM x)
     SELECT seg, floor(extract(epoch FROM time - $3::timestamptz) / $6::float8)::int AS b
            ${aggs.length > 0 ? ',' + aggs.join(', ') : ''}
     FROM y WHERE time >= $3
     GROUP BY seg, b ORDER BY seg, b`,
    [teamId, sandboxId, plan.start, plan.end, holeS, plan.step],
  )
  // Where the samples stop and start again in the range (holes and restarts), and its ends.
  const holes = await db.query<{ t_prev: Date; time: Date; reset: boolean; gap: boolean }>(
    `WITH ${windowed}
     SELECT t_prev, time, (started_at <> t_prev_started) AS reset, extract(epoch FROM time - t_prev) > $5::float8 AS gap
     FROM x WHERE time >= $3 AND t_prev IS NOT NULL AND breaks
     ORDER BY time LIMIT $6`,
    [teamId, sandboxId, plan.start, plan.end, holeS, limits.metricsGapsMax],
  )
  const ends = await db.query<{ first: Date | null; last: Date | null; newest: Date | null }>(
    `SELECT (SELECT min(time) FROM sandbox_metric_samples WHERE team_id = $1 AND sandbox_id = $2 AND time >= $3 AND time <= $4) AS first,
            (SELECT max(time) FROM sandbox_metric_samples WHERE team_id = $1 AND sandbox_id = $2 AND time >= $3 AND time <= $4) AS last,
            (SELECT max(time) FROM sandbox_metric_samples WHERE team_id = $1 AND sandbox_id = $2 AND time <= $4) AS newest`,
    [teamId, sandboxId, plan.start, plan.end],
  )
  const { first, last, newest } = ends.rows[0] ?? { first: null, last: null, newest: null }

  const out: MetricSeries[] = series.map(({ def, statistic, src }, i) => {
    const segments: MetricSeries['segments'] = []
    let seg: string | undefined
    for (const r of rows) {
      const v = r[`v${i}`]
      if (v === null || v === undefined) continue
      if (r.seg !== seg) {
        segments.push({ points: [] })
        seg = r.seg
      }
      segments.at(-1)!.points.push({
        time: new Date(plan.start.getTime() + r.b * plan.step * 1000),
        value: Number(v),
      })
    }
    return {
      metric: def.name,
      kind: def.kind,
      unit: unitOf(def, statistic),
      statistic,
      ...(src.dimensions ? { dimensions: { ...src.dimensions } } : {}),
      segments,
    }
  })

  // Gaps: the same holes for every series, plus a series never measured at all (no network).
  const gaps: MetricGap[] = []
  const spans: Array<{ from: Date; to: Date; reason: GapReason }> = []
  const holeMs = holeS * 1000
  if (!first || !last) spans.push({ from: plan.start, to: plan.end, reason: 'no_data' })
  else {
    if (first.getTime() - plan.start.getTime() > holeMs)
      spans.push({ from: plan.start, to: first, reason: 'no_data' })
    for (const h of holes.rows)
      spans.push({
        from: h.t_prev,
        to: h.time,
        // A new runtime after a hole: the sandbox was not running (paused, restarted).
        reason: h.reset ? (h.gap ? 'unavailable' : 'series_reset') : 'no_data',
      })
    if (plan.end.getTime() - last.getTime() > holeMs && now.getTime() - last.getTime() > holeMs)
      spans.push({ from: last, to: plan.end, reason: 'no_data' })
  }
  let partial = holes.rows.length >= limits.metricsGapsMax
  for (const [i, s] of out.entries()) {
    const dims = series[i]!.src.dimensions
    const base = { metric: s.metric, ...(dims ? { dimensions: { ...dims } } : {}) }
    if (first && s.segments.length === 0) {
      // Samples but never this value: a sandbox without a network has no interface to count.
      const reason = s.metric.startsWith('sandbox.network.') ? 'unsupported' : 'no_data'
      gaps.push({ ...base, startTime: plan.start, endTime: plan.end, reason })
      continue
    }
    for (const sp of spans) {
      if (gaps.length >= limits.metricsGapsMax) {
        partial = true
        break
      }
      gaps.push({ ...base, startTime: sp.from, endTime: sp.to, reason: sp.reason })
    }
  }
  // Samples older than the retention age are gone: a range reaching before it is incomplete.
  if (plan.start.getTime() < now.getTime() - sampling.retentionMs) partial = true

  const freshness: MetricsResult['freshness'] = newest
    ? {
        status: plan.end.getTime() - newest.getTime() <= holeMs ? 'fresh' : 'stale',
        newestObservedAt: newest,
        ageSeconds: Math.max(0, Math.round((plan.end.getTime() - newest.getTime()) / 1000)),
      }
    : { status: 'missing' }
  return {
    startTime: plan.start,
    endTime: plan.end,
    stepSeconds: plan.step,
    series: out,
    freshness,
    gaps,
    partial,
  }
}
