// Per-team aggregates for the server's Prometheus endpoint (src/api/metrics.ts): counters kept
// in memory as things happen (claims and warm hits, pause / resume durations, network and CPU
// use from the sampler's readings), and gauges from Postgres (active sandboxes, volume bytes)
// refreshed at most every gaugeTtlMs, so a scrape never runs an expensive query. Counters start
// at 0 with the process, as Prometheus counters may (rate() handles the reset).
import type { Db } from '../../core/db.js'

/** Bucket bounds (seconds) of the pause and resume duration histograms. */
export const DURATION_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

export interface Histogram {
  counts: number[]
  sum: number
  count: number
}

export interface TeamGauges {
  at: number
  sandboxes: Array<{ teamId: string; status: string; n: number }>
  volumes: Array<{ teamId: string; bytes: number; n: number }>
}

export class TeamCounters {
  readonly claims = new Map<string, { warmHits: number; warmMisses: number; total: number }>()
  readonly durations = new Map<string, Histogram>()
  /** `${team}\t${direction}` → bytes; `${team}` → CPU seconds. */
  readonly networkBytes = new Map<string, number>()
  readonly cpuSeconds = new Map<string, number>()
  /** The last counter values read per sandbox runtime (deltas never cross a restart). */
  private readonly lastReading = new Map<string, { key: string; rx: number; tx: number; cpuUsec: number }>()
  private gauges: TeamGauges | undefined
  private refreshing: Promise<TeamGauges> | undefined

  constructor(
    private readonly db: Db,
    private readonly gaugeTtlMs = 15_000,
  ) {}

  claimed(teamId: string, warm: boolean | undefined): void {
    const c = this.claims.get(teamId) ?? { warmHits: 0, warmMisses: 0, total: 0 }
    c.total++
    if (warm === true) c.warmHits++
    if (warm === false) c.warmMisses++
    this.claims.set(teamId, c)
  }

  observe(op: 'pause' | 'resume', teamId: string, seconds: number): void {
    const key = `${teamId}\t${op}`
    const h = this.durations.get(key) ?? { counts: DURATION_BUCKETS_S.map(() => 0), sum: 0, count: 0 }
    DURATION_BUCKETS_S.forEach((b, i) => {
      if (seconds <= b) h.counts[i]!++
    })
    h.sum += seconds
    h.count++
    this.durations.set(key, h)
  }

  /** One sampler reading of a sandbox: what its counters grew by since the last one. */
  reading(
    teamId: string,
    sandboxId: string,
    runtimeKey: string,
    r: { rx?: number; tx?: number; cpuUsec: number },
  ): void {
    const prev = this.lastReading.get(sandboxId)
    const now = { key: runtimeKey, rx: r.rx ?? 0, tx: r.tx ?? 0, cpuUsec: r.cpuUsec }
    this.lastReading.set(sandboxId, now)
    if (!prev || prev.key !== runtimeKey) return
    const add = (m: Map<string, number>, k: string, d: number): void => {
      if (d > 0) m.set(k, (m.get(k) ?? 0) + d)
    }
    add(this.networkBytes, `${teamId}\trx`, now.rx - prev.rx)
    add(this.networkBytes, `${teamId}\ttx`, now.tx - prev.tx)
    add(this.cpuSeconds, teamId, (now.cpuUsec - prev.cpuUsec) / 1e6)
  }

  /** Forgets sandboxes not read in the last tick (gone): bounded by what runs. */
  retain(sandboxIds: ReadonlySet<string>): void {
    for (const id of this.lastReading.keys()) if (!sandboxIds.has(id)) this.lastReading.delete(id)
  }

  /** Active sandboxes by team and status, volume bytes by team: cached for gaugeTtlMs. */
  async teamGauges(): Promise<TeamGauges> {
    if (this.gauges && Date.now() - this.gauges.at < this.gaugeTtlMs) return this.gauges
    this.refreshing ??= (async () => {
      const [sb, vol] = await Promise.all([
        this.db.query<{ team_id: string; status: string; n: number }>(
          `SELECT team_id, status, count(*)::int AS n FROM sandboxes WHERE status <> 'idle' GROUP BY 1, 2`,
        ),
        this.db.query<{ team_id: string; bytes: string; n: number }>(
          `SELECT team_id, sum(used_bytes)::text AS bytes, count(*)::int AS n FROM volumes WHERE kind = 'volume' GROUP BY 1`,
        ),
      ])
      return {
        at: Date.now(),
        sandboxes: sb.rows.map((r) => ({ teamId: r.team_id, status: r.status, n: r.n })),
        volumes: vol.rows.map((r) => ({ teamId: r.team_id, bytes: Number(r.bytes), n: r.n })),
      }
    })().finally(() => (this.refreshing = undefined))
    this.gauges = await this.refreshing
    return this.gauges
  }
}
