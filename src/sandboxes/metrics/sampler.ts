// The metrics sampler: every interval, one reading of each sandbox this server runs (runtime/
// sandbox-stats.ts) and one batched INSERT of them all; and the retention job that deletes
// samples older than the retention age, in bounded batches. Ticks never overlap (the next is
// scheduled when one ends), and a failed tick is logged and the next one tries again.
import type { Db } from '../../core/db.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import { readSandboxStats, type SandboxStats } from '../../runtime/sandbox-stats.js'
import type { SandboxRecord } from '../../runtime/sandbox-record.js'

export interface SampledSandbox {
  id: string
  teamId: string
  record: SandboxRecord
}

export interface MetricsSamplerOptions {
  db: Db
  intervalMs: number
  retentionMs: number
  /** The claimed sandboxes running on this server now. */
  sandboxes: () => Promise<SampledSandbox[]>
  /** Every reading of a tick (per-team counters for the Prometheus endpoint). */
  onTick?: (readings: ReadonlyArray<{ s: SampledSandbox; stats: SandboxStats }>) => void
  log: Logger
}

const COLUMNS = [
  'cpu_usage_usec',
  'cpu_limit_cores',
  'memory_usage_bytes',
  'memory_working_set_bytes',
  'memory_limit_bytes',
  'pids',
  'net_rx_bytes',
  'net_tx_bytes',
  'net_rx_errors',
  'net_tx_errors',
  'rootfs_bytes',
  'rootfs_inodes',
] as const
const COLUMN_TYPES = [
  'int8',
  'float8',
  'int8',
  'int8',
  'int8',
  'int8',
  'int8',
  'int8',
  'int8',
  'int8',
  'int8',
  'int8',
]

function values(s: SandboxStats): (number | null)[] {
  return [
    s.cpuUsageUsec,
    s.cpuLimitCores,
    s.memoryUsageBytes,
    s.memoryWorkingSetBytes,
    s.memoryLimitBytes,
    s.pids,
    s.network?.rxBytes ?? null,
    s.network?.txBytes ?? null,
    s.network?.rxErrors ?? null,
    s.network?.txErrors ?? null,
    s.rootfs?.bytes ?? null,
    s.rootfs?.inodes ?? null,
  ]
}

export class MetricsSampler {
  private timer: NodeJS.Timeout | undefined
  private retentionTimer: NodeJS.Timeout | undefined
  private running: Promise<unknown> | undefined
  private stopped = true
  /** Samples written, ticks that failed, and sandboxes that could not be read, since start. */
  readonly stats = { samples: 0, failedTicks: 0, readErrors: 0, deleted: 0 }

  constructor(private readonly o: MetricsSamplerOptions) {}

  get intervalMs(): number {
    return this.o.intervalMs
  }

  get retentionMs(): number {
    return this.o.retentionMs
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.schedule(0)
    this.retentionTimer = setInterval(
      () => void this.track(this.sweepRetention()),
      limits.metricsRetentionSweepMs,
    )
    this.retentionTimer.unref()
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    clearInterval(this.retentionTimer)
    await this.running
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      void this.track(this.tick()).finally(() => this.schedule(this.o.intervalMs))
    }, ms)
    this.timer.unref()
  }

  /** Errors are logged here: a tick or a sweep never rejects into a timer. */
  private track(p: Promise<unknown>): Promise<unknown> {
    const q = p.catch((err: unknown) => {
      this.stats.failedTicks++
      this.o.log.warn('metrics sampling failed', { err })
    })
    this.running = q
    return q
  }

  /** One reading of every running sandbox, written in batches; the number of samples written. */
  async tick(): Promise<number> {
    const sandboxes = await this.o.sandboxes()
    const time = new Date()
    const rows: Array<{ s: SampledSandbox; stats: SandboxStats }> = []
    // A few at a time: each reading is a dozen small file reads and a statfs.
    for (let i = 0; i < sandboxes.length; i += limits.metricsReadsInFlight) {
      const batch = sandboxes.slice(i, i + limits.metricsReadsInFlight)
      const read = await Promise.all(
        batch.map((s) =>
          readSandboxStats(s.record).catch((err: unknown) => {
            this.stats.readErrors++
            this.o.log.debug('reading sandbox stats failed', { id: s.id, err })
            return undefined
          }),
        ),
      )
      read.forEach((stats, j) => stats && rows.push({ s: batch[j]!, stats }))
    }
    for (let i = 0; i < rows.length; i += limits.metricsSamplesPerInsertMax) {
      await this.insert(rows.slice(i, i + limits.metricsSamplesPerInsertMax), time)
    }
    this.stats.samples += rows.length
    this.o.onTick?.(rows)
    return rows.length
  }

  private async insert(rows: Array<{ s: SampledSandbox; stats: SandboxStats }>, time: Date): Promise<void> {
    const cols: unknown[][] = COLUMNS.map(() => [])
    for (const { stats } of rows) values(stats).forEach((v, i) => cols[i]!.push(v))
    const params: unknown[] = [
      rows.map((r) => r.s.id),
      rows.map((r) => r.s.teamId),
      time,
      rows.map((r) => r.s.record.createdAt || time.toISOString()),
      ...cols,
    ]
    const unnest = COLUMNS.map((_, i) => `$${i + 5}::${COLUMN_TYPES[i]}[]`).join(', ')
    await this.o.db.query(
      `INSERT INTO sandbox_metric_samples (sandbox_id, team_id, time, started_at, ${COLUMNS.join(', ')})
       SELECT u.sandbox_id, u.team_id, $3, u.started_at, ${COLUMNS.map((c) => `u.${c}`).join(', ')}
       FROM unnest($1::text[], $2::text[], $4::timestamptz[], ${unnest})
            AS u(sandbox_id, team_id, started_at, ${COLUMNS.join(', ')})
       ON CONFLICT DO NOTHING`,
      params,
    )
  }

  /** Deletes samples older than the retention age, a bounded batch at a time; rows deleted. */
  async sweepRetention(): Promise<number> {
    const before = new Date(Date.now() - this.o.retentionMs)
    let total = 0
    for (let i = 0; i < limits.metricsRetentionBatchesPerSweep; i++) {
      const { rowCount } = await this.o.db.query(
        `DELETE FROM sandbox_metric_samples WHERE ctid = ANY (ARRAY(
           SELECT ctid FROM sandbox_metric_samples WHERE time < $1 LIMIT $2))`,
        [before, limits.metricsRetentionDeleteBatch],
      )
      total += rowCount ?? 0
      if ((rowCount ?? 0) < limits.metricsRetentionDeleteBatch) break
    }
    this.stats.deleted += total
    return total
  }
}
