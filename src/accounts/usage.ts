// Usage windows (`/api/v1/usage/windows`, `s0 usage`): per team and hour, sandbox seconds (also
// weighted by size: GiB-seconds of memory, core-seconds of CPU), storage GiB-hours after dedup
// (live bytes of the team's packs) and network bytes (the egress proxy's network_audit events).
// A sampler bills what ran since its last run every limits.usageSampleIntervalMs into hourly rows;
// one sampler at a time across servers sharing the database (an advisory lock and its progress
// row), so nothing is billed twice. Queries read the rows; they compute nothing.
import { ADVISORY_LOCK_KEYS } from '../core/advisory-locks.js'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'

const GiB = 1024 ** 3

export const USAGE_WINDOW_TYPES = {
  sandbox_seconds: 'seconds',
  sandbox_memory_gib_seconds: 'GiB-seconds',
  sandbox_cpu_core_seconds: 'core-seconds',
  storage_gib_hours: 'GiB-hours',
  network_egress_bytes: 'bytes',
  network_ingress_bytes: 'bytes',
} as const

export type UsageWindowType = keyof typeof USAGE_WINDOW_TYPES

export function isUsageWindowType(v: string): v is UsageWindowType {
  return Object.hasOwn(USAGE_WINDOW_TYPES, v)
}

export interface UsageWindowInfo {
  id: number
  teamId: TeamId
  windowType: UsageWindowType
  windowStart: Date
  windowEnd: Date
  value: number
  unit: string
  recordedAt: Date
}

/** Events summed only once they are this old: a writer's batch with a lower seq may commit late. */
const EVENT_SETTLE_S = 10

interface Bill {
  teamId: string
  type: UsageWindowType
  start: Date
  value: number
}

/** Splits [from, to) at hour boundaries: the seconds of each hourly window it covers. */
export function hourPieces(from: Date, to: Date): Array<{ start: Date; seconds: number }> {
  const out: Array<{ start: Date; seconds: number }> = []
  let t = from.getTime()
  const end = to.getTime()
  for (let i = 0; t < end && i < 10_000; i++) {
    const start = Math.floor(t / limits.usageWindowMs) * limits.usageWindowMs
    const next = Math.min(start + limits.usageWindowMs, end)
    out.push({ start: new Date(start), seconds: (next - t) / 1000 })
    t = next
  }
  return out
}

export class UsageRecorder {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly intervalMs = limits.usageSampleIntervalMs,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => {
      this.running ??= this.sample()
        .then(() => undefined)
        .catch((err: unknown) => this.log.warn('usage sample failed', { err }))
        .finally(() => (this.running = undefined))
    }, this.intervalMs)
    this.timer.unref()
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.running
  }

  /**
   * Bills everything since the last sample (at most limits.usageSampleGapMaxMs: a server that was
   * down ran nothing) up to `now`. Returns false when another server is sampling.
   */
  async sample(now = new Date()): Promise<boolean> {
    return this.db.tx(async (c) => {
      const { rows: locked } = await c.query<{ ok: boolean }>(
        'SELECT pg_try_advisory_xact_lock($1::int) AS ok',
        [ADVISORY_LOCK_KEYS.usageSampler],
      )
      if (!locked[0]?.ok) return false
      const { rows: st } = await c.query<{ sampled_at: Date; event_seq: number }>(
        'SELECT sampled_at, event_seq FROM usage_sampler_state WHERE id = 1',
      )
      const state = st[0]
      const bills: Bill[] = []
      if (state && now > state.sampled_at) {
        const from = new Date(
          Math.max(state.sampled_at.getTime(), now.getTime() - limits.usageSampleGapMaxMs),
        )
        const pieces = hourPieces(from, now)
        const { rows: sbx } = await c.query<{ team_id: string; n: number; mem: number; cpu: number }>(
          `SELECT team_id, count(*)::int AS n,
                  coalesce(sum((config->>'memory_bytes')::float8), 0) AS mem,
                  coalesce(sum((config->>'cpu_millis')::float8), 0) AS cpu
             FROM sandboxes WHERE status IN ('starting', 'running') GROUP BY team_id`,
        )
        // Stored bytes after dedup: live bytes of the team's packs, and small files' bytes still
        // inline in their inode rows (the packer moves them into packs later; partial index).
        const { rows: packs } = await c.query<{ team_id: string; bytes: number }>(
          `SELECT team_id, sum(bytes)::float8 AS bytes FROM (
             SELECT team_id, live_bytes AS bytes FROM packs WHERE state = 'live'
             UNION ALL
             SELECT l.team_id, length(i.inline_data) FROM inodes i JOIN layers l ON l.id = i.layer_id
              WHERE i.inline_data IS NOT NULL) s
            GROUP BY team_id`,
        )
        for (const p of pieces) {
          for (const r of sbx) {
            bills.push({ teamId: r.team_id, type: 'sandbox_seconds', start: p.start, value: r.n * p.seconds })
            bills.push({
              teamId: r.team_id,
              type: 'sandbox_memory_gib_seconds',
              start: p.start,
              value: (r.mem / GiB) * p.seconds,
            })
            bills.push({
              teamId: r.team_id,
              type: 'sandbox_cpu_core_seconds',
              start: p.start,
              value: (r.cpu / 1000) * p.seconds,
            })
          }
          for (const r of packs)
            bills.push({
              teamId: r.team_id,
              type: 'storage_gib_hours',
              start: p.start,
              value: (r.bytes / GiB) * (p.seconds / 3600),
            })
        }
      }
      // Network bytes of the events settled since the last sample, in the hour they occurred.
      const { rows: net } = await c.query<{ team_id: string; h: Date; out: number; in: number; seq: number }>(
        `SELECT team_id,
                to_timestamp(floor(extract(epoch FROM occurred_at) / $3) * $3) AS h,
                coalesce(sum((attributes->>'bytes_out')::float8), 0) AS out,
                coalesce(sum((attributes->>'bytes_in')::float8), 0) AS in,
                max(seq) AS seq
           FROM sandbox_events
          WHERE seq > $1 AND event_type = 'network_audit' AND ingested_at < $2::timestamptz - make_interval(secs => $4)
          GROUP BY 1, 2`,
        [state?.event_seq ?? 0, now, limits.usageWindowMs / 1000, EVENT_SETTLE_S],
      )
      let seq = state?.event_seq ?? 0
      for (const r of net) {
        seq = Math.max(seq, Number(r.seq))
        bills.push({ teamId: r.team_id, type: 'network_egress_bytes', start: r.h, value: r.out })
        bills.push({ teamId: r.team_id, type: 'network_ingress_bytes', start: r.h, value: r.in })
      }
      for (const b of bills) {
        if (!(b.value > 0)) continue
        await c.query(
          `INSERT INTO usage_windows (team_id, window_type, window_start, window_end, value, unit)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (team_id, window_type, window_start)
             DO UPDATE SET value = usage_windows.value + EXCLUDED.value, recorded_at = now()`,
          [
            b.teamId,
            b.type,
            b.start,
            new Date(b.start.getTime() + limits.usageWindowMs),
            b.value,
            USAGE_WINDOW_TYPES[b.type],
          ],
        )
      }
      await c.query(
        `INSERT INTO usage_sampler_state (id, sampled_at, event_seq) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET sampled_at = GREATEST(usage_sampler_state.sampled_at, $1), event_seq = $2`,
        [now, seq],
      )
      return true
    })
  }
}

/** The team's windows, newest first; `cursor` is the previous page's next_cursor. */
export async function listUsageWindows(
  db: Db,
  teamId: TeamId,
  q: { cursor?: string; limit?: number; windowType?: string },
): Promise<{ windows: UsageWindowInfo[]; nextCursor: string }> {
  if (q.windowType !== undefined && !isUsageWindowType(q.windowType))
    throw new S0Error(
      'invalid_request',
      `window_type must be one of ${Object.keys(USAGE_WINDOW_TYPES).join(', ')}`,
    )
  let before: number | null = null
  if (q.cursor !== undefined && q.cursor !== '') {
    if (!/^[1-9][0-9]{0,15}$/.test(q.cursor))
      throw new S0Error('invalid_request', 'cursor is not a usage cursor')
    before = Number(q.cursor)
  }
  const limit = Math.min(q.limit ?? limits.usageWindowsListDefault, limits.usageWindowsListMax)
  const { rows } = await db.query<{
    id: number
    team_id: string
    window_type: UsageWindowType
    window_start: Date
    window_end: Date
    value: number
    unit: string
    recorded_at: Date
  }>(
    `SELECT id, team_id, window_type, window_start, window_end, value, unit, recorded_at FROM usage_windows
      WHERE team_id = $1 AND ($2::text IS NULL OR window_type = $2) AND ($3::bigint IS NULL OR id < $3)
      ORDER BY id DESC LIMIT $4`,
    [teamId, q.windowType ?? null, before, limit + 1],
  )
  const page = rows.slice(0, limit)
  return {
    windows: page.map((r) => ({
      id: r.id,
      teamId: r.team_id as TeamId,
      windowType: r.window_type,
      windowStart: r.window_start,
      windowEnd: r.window_end,
      value: r.value,
      unit: r.unit,
      recordedAt: r.recorded_at,
    })),
    nextCursor: rows.length > limit && page.length > 0 ? String(page[page.length - 1]?.id) : '',
  }
}
