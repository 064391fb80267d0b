// The quota dimensions of a team (Sandbox0's QuotaDimension), what kind each is and its defaults.
// Shared by the accounts layer (quotas API, API request meter) and the sandboxes layer (claim
// admission), which may not import each other.
import type { Queryable } from './db.js'
import { limits } from './limits.js'

export const QUOTA_DIMENSIONS = [
  'active_sandboxes',
  'sandbox_claims',
  'volume_storage_gb',
  'snapshot_storage_gb',
  'api_requests',
  'network_egress_bytes',
  'network_ingress_bytes',
] as const

export type QuotaDimension = (typeof QUOTA_DIMENSIONS)[number]

export interface DimensionSpec {
  /** capacity: a level (how many now); rate: a count per fixed window of `intervalMs`. */
  kind: 'capacity' | 'rate'
  unit: 'count' | 'claims' | 'GB' | 'requests' | 'bytes'
  /** Rate dimensions: the window when the quota row sets none. */
  defaultIntervalMs: number | null
  /** The bound that applies when the team has no quota row (null: unlimited). */
  builtinLimit: number | null
}

export const DIMENSIONS: Readonly<Record<QuotaDimension, DimensionSpec>> = {
  active_sandboxes: {
    kind: 'capacity',
    unit: 'count',
    defaultIntervalMs: null,
    builtinLimit: limits.activeSandboxesPerTeamMax,
  },
  sandbox_claims: {
    kind: 'rate',
    unit: 'claims',
    defaultIntervalMs: limits.quotaClaimsIntervalMsDefault,
    builtinLimit: null,
  },
  volume_storage_gb: { kind: 'capacity', unit: 'GB', defaultIntervalMs: null, builtinLimit: null },
  snapshot_storage_gb: { kind: 'capacity', unit: 'GB', defaultIntervalMs: null, builtinLimit: null },
  api_requests: {
    kind: 'rate',
    unit: 'requests',
    defaultIntervalMs: limits.quotaApiRequestsIntervalMsDefault,
    builtinLimit: null,
  },
  network_egress_bytes: {
    kind: 'rate',
    unit: 'bytes',
    defaultIntervalMs: limits.quotaNetworkIntervalMsDefault,
    builtinLimit: null,
  },
  network_ingress_bytes: {
    kind: 'rate',
    unit: 'bytes',
    defaultIntervalMs: limits.quotaNetworkIntervalMsDefault,
    builtinLimit: null,
  },
}

export function isQuotaDimension(value: string): value is QuotaDimension {
  return (QUOTA_DIMENSIONS as readonly string[]).includes(value)
}

/** The start of the fixed window of `intervalMs` (aligned to the Unix epoch) that holds `at`. */
export function windowStart(at: number, intervalMs: number): Date {
  return new Date(Math.floor(at / intervalMs) * intervalMs)
}

/** Claims sandbox statuses that hold resources (a paused sandbox keeps its state and can resume). */
export const ACTIVE_SANDBOX_STATUSES = ['starting', 'running', 'paused'] as const

/** A team's quota on one dimension as it applies now: its own row, else the built-in default. */
export interface EffectiveQuota {
  dimension: QuotaDimension
  /** null: unlimited. */
  limit: number | null
  /** Rate dimensions: the window length; capacity: null. */
  intervalMs: number | null
  burst: number | null
  source: 'team_override' | 'region_default' | 'unlimited'
}

export interface QuotaRow {
  dimension: string
  limit_value: number
  interval_ms: number | null
  burst_value: number | null
}

/** Reads the team's quota rows (one query; `q` is a Db or a client inside a transaction). */
export async function readQuotas(q: Queryable, teamId: string): Promise<Map<QuotaDimension, EffectiveQuota>> {
  const { rows } = await q.query<QuotaRow>(
    'SELECT dimension, limit_value, interval_ms, burst_value FROM team_quotas WHERE team_id = $1',
    [teamId],
  )
  return effectiveQuotas(rows)
}

export function effectiveQuotas(rows: readonly QuotaRow[]): Map<QuotaDimension, EffectiveQuota> {
  const out = new Map<QuotaDimension, EffectiveQuota>()
  for (const dimension of QUOTA_DIMENSIONS) {
    const spec = DIMENSIONS[dimension]
    const row = rows.find((r) => r.dimension === dimension)
    const intervalMs =
      spec.kind === 'rate'
        ? row?.interval_ms != null
          ? Number(row.interval_ms)
          : spec.defaultIntervalMs
        : null
    if (row)
      out.set(dimension, {
        dimension,
        limit: row.limit_value,
        intervalMs,
        burst: row.burst_value,
        source: 'team_override',
      })
    else if (spec.builtinLimit !== null)
      out.set(dimension, {
        dimension,
        limit: spec.builtinLimit,
        intervalMs,
        burst: null,
        source: 'region_default',
      })
    else out.set(dimension, { dimension, limit: null, intervalMs, burst: null, source: 'unlimited' })
  }
  return out
}
