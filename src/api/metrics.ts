// The server's Prometheus text: process gauges, HTTP request counts by route pattern (bounded by
// the route table), chunk store and object store counters, cache and database pool gauges.
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { ResilientObjectStore } from '../blockstore/resilient-object-store.js'
import { DURATION_BUCKETS_S, type SandboxService } from '../sandboxes/index.js'
import type { ApiServices } from './services.js'

/** HTTP request counts by method, route pattern and status: bounded by the route table. */
export class RequestMetrics {
  private readonly counts = new Map<string, { method: string; route: string; status: number; n: number }>()

  count(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`
    const entry = this.counts.get(key)
    if (entry) entry.n++
    else this.counts.set(key, { method, route, status, n: 1 })
  }

  lines(): string[] {
    return [...this.counts.values()].map(
      (e) =>
        `s0_http_requests_total{method="${label(e.method)}",route="${label(e.route)}",status="${e.status}"} ${e.n}`,
    )
  }
}

function label(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

function snake(camel: string): string {
  return camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

function metric(
  name: string,
  type: 'counter' | 'gauge' | 'histogram',
  help: string,
  samples: string[],
): string[] {
  return [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples]
}

/** Counter families from a record of numbers (chunk store counters, object store stats). */
function counterFamilies(prefix: string, what: string, record: object): string[] {
  const out: string[] = []
  for (const [key, value] of Object.entries(record)) {
    if (typeof value !== 'number') continue
    const name = `${prefix}_${snake(key)}_total`
    out.push(...metric(name, 'counter', `${what} ${key} since start.`, [`${name} ${value}`]))
  }
  return out
}

/**
 * Per-team aggregates a user graphs (docs/grafana/s0.json): sandboxes by status and volume bytes
 * (Postgres, cached by the counters), claims and warm-pool hits, pause / resume duration
 * histograms, network bytes and CPU seconds of the team's sandboxes, webhook deliveries.
 */
export async function renderTeamMetrics(svc: SandboxService): Promise<string[]> {
  const c = svc.teamCounters
  const g = await c.teamGauges()
  const team = (t: string): string => `team="${label(t)}"`
  const hist: string[] = []
  for (const [key, h] of c.durations) {
    const [t = '', op = ''] = key.split('\t')
    const name = `s0_sandbox_${op}_duration_seconds`
    DURATION_BUCKETS_S.forEach((b, i) => hist.push(`${name}_bucket{${team(t)},le="${b}"} ${h.counts[i]}`))
    hist.push(`${name}_bucket{${team(t)},le="+Inf"} ${h.count}`)
    hist.push(`${name}_sum{${team(t)}} ${h.sum.toFixed(6)}`, `${name}_count{${team(t)}} ${h.count}`)
  }
  const byOp = (op: string): string[] => hist.filter((l) => l.startsWith(`s0_sandbox_${op}_`))
  const w = svc.webhooks.stats
  const s = svc.metricsSampler.stats
  return [
    ...metric(
      's0_team_sandboxes',
      'gauge',
      'Sandboxes by team and status (idle warm ones excluded).',
      g.sandboxes.map((r) => `s0_team_sandboxes{${team(r.teamId)},status="${label(r.status)}"} ${r.n}`),
    ),
    ...metric(
      's0_team_volume_bytes',
      'gauge',
      "Bytes used by the team's volumes.",
      g.volumes.map((r) => `s0_team_volume_bytes{${team(r.teamId)}} ${r.bytes}`),
    ),
    ...metric(
      's0_team_sandbox_claims_total',
      'counter',
      'Sandbox claims by team and warm-pool result (hit, miss, none: not eligible).',
      [...c.claims].flatMap(([t, v]) => [
        `s0_team_sandbox_claims_total{${team(t)},warm="hit"} ${v.warmHits}`,
        `s0_team_sandbox_claims_total{${team(t)},warm="miss"} ${v.warmMisses}`,
        `s0_team_sandbox_claims_total{${team(t)},warm="none"} ${v.total - v.warmHits - v.warmMisses}`,
      ]),
    ),
    ...metric('s0_sandbox_pause_duration_seconds', 'histogram', 'Pause durations by team.', byOp('pause')),
    ...metric('s0_sandbox_resume_duration_seconds', 'histogram', 'Resume durations by team.', byOp('resume')),
    ...metric(
      's0_team_sandbox_network_bytes_total',
      'counter',
      "Bytes on the team's sandboxes' interfaces (tx: egress), as sampled.",
      [...c.networkBytes].map(([k, v]) => {
        const [t = '', dir = ''] = k.split('\t')
        return `s0_team_sandbox_network_bytes_total{${team(t)},direction="${dir}"} ${v}`
      }),
    ),
    ...metric(
      's0_team_sandbox_cpu_seconds_total',
      'counter',
      "CPU seconds used by the team's sandboxes, as sampled.",
      [...c.cpuSeconds].map(([t, v]) => `s0_team_sandbox_cpu_seconds_total{${team(t)}} ${v.toFixed(3)}`),
    ),
    ...metric('s0_webhook_deliveries_total', 'counter', 'Webhook events by result.', [
      `s0_webhook_deliveries_total{result="delivered"} ${w.delivered}`,
      `s0_webhook_deliveries_total{result="failed_attempt"} ${w.failedAttempts}`,
      `s0_webhook_deliveries_total{result="dropped"} ${w.dropped}`,
    ]),
    ...metric('s0_sandbox_metric_samples_total', 'counter', 'Sandbox metric samples written.', [
      `s0_sandbox_metric_samples_total ${s.samples}`,
    ]),
  ]
}

function storeMetrics(store: ChunkStore): string[] {
  return [
    ...counterFamilies('s0_chunk_store', 'Chunk store counter', store.counters),
    ...(store.objects instanceof ResilientObjectStore
      ? counterFamilies('s0_object_store', 'Object store counter', store.objects.stats)
      : []),
    ...metric('s0_chunk_cache_bytes', 'gauge', 'Bytes held by the chunk caches.', [
      `s0_chunk_cache_bytes{tier="memory"} ${store.memoryCacheBytes}`,
      `s0_chunk_cache_bytes{tier="disk"} ${store.diskCacheBytes}`,
    ]),
  ]
}

export async function renderMetrics(services: ApiServices, requests: RequestMetrics): Promise<string> {
  const mem = process.memoryUsage()
  const store = services.chunkStore
  const pool = services.db.pool
  const lines = [
    ...metric('s0_process_uptime_seconds', 'gauge', 'Seconds since the process started.', [
      `s0_process_uptime_seconds ${process.uptime().toFixed(3)}`,
    ]),
    ...metric('s0_process_resident_memory_bytes', 'gauge', 'Resident set size.', [
      `s0_process_resident_memory_bytes ${mem.rss}`,
    ]),
    ...metric('s0_process_heap_used_bytes', 'gauge', 'V8 heap in use.', [
      `s0_process_heap_used_bytes ${mem.heapUsed}`,
    ]),
    ...metric(
      's0_http_requests_total',
      'counter',
      'HTTP requests by method, route and status.',
      requests.lines(),
    ),
    ...(store ? storeMetrics(store) : []),
    ...metric('s0_db_pool_connections', 'gauge', 'Postgres pool connections by state.', [
      `s0_db_pool_connections{state="total"} ${pool.totalCount}`,
      `s0_db_pool_connections{state="idle"} ${pool.idleCount}`,
      `s0_db_pool_connections{state="waiting"} ${pool.waitingCount}`,
    ]),
    ...(services.sandboxes ? await renderTeamMetrics(services.sandboxes) : []),
  ]
  return lines.join('\n') + '\n'
}
