// Team quotas (`/api/v1/quotas`, `s0 quota`): the effective limit of each dimension with what is
// used now, setting and clearing a team's own limits, and the checks that are not claims (API
// requests, volume storage). Claims are admitted in src/sandboxes/claim-quota.ts on the same rows.
import { LRUCache } from 'lru-cache'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import {
  ACTIVE_SANDBOX_STATUSES,
  DIMENSIONS,
  QUOTA_DIMENSIONS,
  readQuotas,
  windowStart,
  type EffectiveQuota,
  type QuotaDimension,
} from '../core/quota-dimensions.js'

const GB = 1e9

export interface TeamQuotaInfo extends EffectiveQuota {
  teamId: TeamId
  kind: 'capacity' | 'rate'
  unit: string
  /** What is used now (capacity) or in the current window (rate). */
  current: number
  /** Whether s0 refuses work over the limit (the others are reported only). */
  enforced: boolean
}

/** Dimensions s0 refuses work over; the rest are measured and reported (docs/ACCOUNTS.md). */
export const ENFORCED_DIMENSIONS: ReadonlySet<QuotaDimension> = new Set([
  'active_sandboxes',
  'sandbox_claims',
  'volume_storage_gb',
  'api_requests',
])

/** Bytes of the team's volumes (logical: what their files hold). */
async function volumeBytes(db: Db, teamId: TeamId): Promise<number> {
  const { rows } = await db.query<{ n: number | null }>(
    "SELECT coalesce(sum(used_bytes), 0)::bigint AS n FROM volumes WHERE team_id = $1 AND kind = 'volume'",
    [teamId],
  )
  return Number(rows[0]?.n ?? 0)
}

/** Bytes held by the team's volume snapshots and sandbox root-filesystem snapshots. */
async function snapshotBytes(db: Db, teamId: TeamId): Promise<number> {
  const { rows } = await db.query<{ n: number | null }>(
    `SELECT (coalesce((SELECT sum(size_bytes) FROM volume_snapshots WHERE team_id = $1), 0)
           + coalesce((SELECT sum(v.used_bytes) FROM rootfs_snapshots s JOIN volumes v ON v.id = s.volume_id
                        WHERE s.team_id = $1), 0))::bigint AS n`,
    [teamId],
  )
  return Number(rows[0]?.n ?? 0)
}

async function counterValue(db: Db, teamId: TeamId, dimension: QuotaDimension, start: Date): Promise<number> {
  const { rows } = await db.query<{ value: number }>(
    'SELECT value FROM quota_counters WHERE team_id = $1 AND dimension = $2 AND window_start = $3',
    [teamId, dimension, start],
  )
  return rows[0]?.value ?? 0
}

/** Network bytes of the team since `start`, from the usage windows (hourly, so whole hours). */
async function networkBytes(db: Db, teamId: TeamId, type: string, start: Date): Promise<number> {
  const { rows } = await db.query<{ n: number | null }>(
    `SELECT coalesce(sum(value), 0)::float8 AS n FROM usage_windows
      WHERE team_id = $1 AND window_type = $2 AND window_start >= $3`,
    [teamId, type, new Date(Math.floor(start.getTime() / limits.usageWindowMs) * limits.usageWindowMs)],
  )
  return Number(rows[0]?.n ?? 0)
}

async function currentOf(
  db: Db,
  teamId: TeamId,
  q: EffectiveQuota,
  meter: ApiRequestMeter | undefined,
): Promise<number> {
  const now = Date.now()
  const start = q.intervalMs !== null ? windowStart(now, q.intervalMs) : new Date(now)
  switch (q.dimension) {
    case 'active_sandboxes': {
      const { rows } = await db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM sandboxes WHERE team_id = $1 AND status = ANY($2::text[])',
        [teamId, ACTIVE_SANDBOX_STATUSES],
      )
      return rows[0]?.n ?? 0
    }
    case 'sandbox_claims':
      return counterValue(db, teamId, 'sandbox_claims', start)
    case 'api_requests':
      return (await counterValue(db, teamId, 'api_requests', start)) + (meter?.pending(teamId, start) ?? 0)
    case 'volume_storage_gb':
      return (await volumeBytes(db, teamId)) / GB
    case 'snapshot_storage_gb':
      return (await snapshotBytes(db, teamId)) / GB
    case 'network_egress_bytes':
      return networkBytes(db, teamId, 'network_egress_bytes', start)
    case 'network_ingress_bytes':
      return networkBytes(db, teamId, 'network_ingress_bytes', start)
  }
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000
}

/** Every dimension of the team, in the SDK's order. */
export async function listQuotas(db: Db, teamId: TeamId, meter?: ApiRequestMeter): Promise<TeamQuotaInfo[]> {
  const quotas = await readQuotas(db, teamId)
  const out: TeamQuotaInfo[] = []
  for (const d of QUOTA_DIMENSIONS) out.push(await infoOf(db, teamId, quotas.get(d) as EffectiveQuota, meter))
  return out
}

export async function getQuota(
  db: Db,
  teamId: TeamId,
  dimension: QuotaDimension,
  meter?: ApiRequestMeter,
): Promise<TeamQuotaInfo> {
  const quotas = await readQuotas(db, teamId)
  return infoOf(db, teamId, quotas.get(dimension) as EffectiveQuota, meter)
}

async function infoOf(
  db: Db,
  teamId: TeamId,
  q: EffectiveQuota,
  meter: ApiRequestMeter | undefined,
): Promise<TeamQuotaInfo> {
  const spec = DIMENSIONS[q.dimension]
  return {
    ...q,
    teamId,
    kind: spec.kind,
    unit: spec.unit,
    current: await currentOf(db, teamId, q, meter),
    enforced: ENFORCED_DIMENSIONS.has(q.dimension),
  }
}

export interface QuotaSetting {
  /** null: remove the team's limit (back to the default: unlimited or the server's bound). */
  limit: number | null
  intervalMs?: number
  burst?: number
}

/** Sets (or with `limit: null` clears) one dimension of a team. */
export async function setQuota(
  db: Db,
  teamId: TeamId,
  dimension: QuotaDimension,
  s: QuotaSetting,
  meter?: ApiRequestMeter,
): Promise<TeamQuotaInfo> {
  const spec = DIMENSIONS[dimension]
  if (s.limit === null) {
    await db.query('DELETE FROM team_quotas WHERE team_id = $1 AND dimension = $2', [teamId, dimension])
  } else {
    if (!Number.isFinite(s.limit) || s.limit < 0)
      throw new S0Error('invalid_request', 'limit_value must be a number >= 0 (or null to remove the limit)')
    if (spec.kind === 'capacity' && s.intervalMs !== undefined)
      throw new S0Error('invalid_request', `${dimension} is a capacity: it takes no interval_ms`)
    if (
      s.intervalMs !== undefined &&
      (!Number.isSafeInteger(s.intervalMs) ||
        s.intervalMs < limits.quotaIntervalMsMin ||
        s.intervalMs > limits.quotaIntervalMsMax)
    )
      throw new S0Error(
        'invalid_request',
        `interval_ms must be an integer from ${limits.quotaIntervalMsMin} to ${limits.quotaIntervalMsMax}`,
      )
    await db.query(
      `INSERT INTO team_quotas (team_id, dimension, limit_value, interval_ms, burst_value) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (team_id, dimension) DO UPDATE
         SET limit_value = $3, interval_ms = $4, burst_value = $5, updated_at = now()`,
      [teamId, dimension, s.limit, s.intervalMs ?? null, s.burst ?? null],
    )
  }
  meter?.forget(teamId)
  return getQuota(db, teamId, dimension, meter)
}

/** Refuses a new volume while the team's volumes hold volume_storage_gb or more. */
export async function checkVolumeStorage(db: Db, teamId: TeamId): Promise<void> {
  const q = (await readQuotas(db, teamId)).get('volume_storage_gb')
  if (q?.limit == null) return
  const gb = (await volumeBytes(db, teamId)) / GB
  if (gb >= q.limit)
    throw new S0Error(
      'quota_exceeded',
      `quota volume_storage_gb exceeded: the team's volumes hold ${round3(gb)} GB of ${q.limit} GB; free some first`,
      { details: { dimension: 'volume_storage_gb', limit: q.limit, current: round3(gb) } },
    )
}

interface TeamCount {
  /** The window the counts belong to. */
  start: number
  intervalMs: number
  /** Counted here and not yet added to Postgres. */
  pending: number
  /** The window's total in Postgres as of the last flush (all servers). */
  flushed: number
}

/**
 * api_requests: every authenticated request of a team is counted in memory and added to Postgres
 * in one statement per team every limits.apiRequestFlushMs (never a write per request). A request
 * is refused once the window's total (as of the last flush, all servers) plus what this server
 * counted since reaches the limit; several servers may together overshoot by what they admit
 * between two flushes.
 */
export class ApiRequestMeter {
  private readonly counts = new Map<TeamId, TeamCount>()
  private readonly quotas: LRUCache<TeamId, { q: EffectiveQuota }>
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly flushMs = limits.apiRequestFlushMs,
  ) {
    this.quotas = new LRUCache({ max: limits.quotaCacheTeamsMax, ttl: limits.quotaCacheTtlMs })
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.flushMs)
    this.timer.unref()
  }

  private async quotaOf(teamId: TeamId): Promise<EffectiveQuota> {
    const hit = this.quotas.get(teamId)
    if (hit) return hit.q
    const q = (await readQuotas(this.db, teamId)).get('api_requests') as EffectiveQuota
    this.quotas.set(teamId, { q })
    return q
  }

  /** Counts one request of the team, or throws `quota_exceeded` (not counted) over the limit. */
  async admit(teamId: TeamId): Promise<void> {
    const q = await this.quotaOf(teamId)
    const intervalMs = q.intervalMs ?? limits.quotaApiRequestsIntervalMsDefault
    const now = Date.now()
    const start = windowStart(now, intervalMs).getTime()
    let c = this.counts.get(teamId)
    if (!c || c.start !== start || c.intervalMs !== intervalMs) {
      // A new window: what the old one still holds is flushed with it.
      if (c && c.pending > 0) void this.flushOne(teamId, c)
      c = { start, intervalMs, pending: 0, flushed: 0 }
      this.counts.set(teamId, c)
    }
    if (q.limit !== null && c.flushed + c.pending >= q.limit) {
      const retryAfterS = Math.max(1, Math.ceil((start + intervalMs - now) / 1000))
      throw new S0Error(
        'quota_exceeded',
        `quota api_requests exceeded: ${q.limit} requests per ${intervalMs / 1000} s window; retry in ${retryAfterS} s`,
        { details: { dimension: 'api_requests', limit: q.limit }, retryAfterS },
      )
    }
    c.pending++
  }

  /** Requests of the team counted here and not flushed yet, in the window starting at `start`. */
  pending(teamId: TeamId, start: Date): number {
    const c = this.counts.get(teamId)
    return c && c.start === start.getTime() ? c.pending : 0
  }

  /** A team's quota changed: read it again on the next request. */
  forget(teamId: TeamId): void {
    this.quotas.delete(teamId)
  }

  private async flushOne(teamId: TeamId, c: TeamCount): Promise<void> {
    const n = c.pending
    if (n === 0) return
    c.pending -= n
    try {
      const { rows } = await this.db.query<{ value: number }>(
        `INSERT INTO quota_counters (team_id, dimension, window_start, value) VALUES ($1, 'api_requests', $2, $3)
         ON CONFLICT (team_id, dimension, window_start) DO UPDATE SET value = quota_counters.value + $3
         RETURNING value`,
        [teamId, new Date(c.start), n],
      )
      c.flushed = rows[0]?.value ?? c.flushed + n
    } catch (err) {
      // Kept for the next flush: the count is late, not lost.
      c.pending += n
      this.log.warn('api request counts not flushed', { teamId, err })
    }
  }

  /** Adds every pending count to Postgres (the timer, shutdown, tests). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing
    const run = (async () => {
      for (const [teamId, c] of this.counts) await this.flushOne(teamId, c)
      // Windows that ended and hold nothing more to flush are dropped.
      const now = Date.now()
      for (const [teamId, c] of this.counts)
        if (c.pending === 0 && c.start + c.intervalMs <= now) this.counts.delete(teamId)
    })()
    this.flushing = run
    try {
      await run
    } finally {
      this.flushing = undefined
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.flush()
  }
}
