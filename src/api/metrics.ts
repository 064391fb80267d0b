// The server's Prometheus text: process gauges, HTTP request counts by route pattern (bounded by
// the route table), chunk store and object store counters, cache and database pool gauges.
import { ResilientObjectStore } from '../blockstore/resilient-object-store.js'
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

function metric(name: string, type: 'counter' | 'gauge', help: string, samples: string[]): string[] {
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

export function renderMetrics(services: ApiServices, requests: RequestMetrics): string {
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
    ...counterFamilies('s0_chunk_store', 'Chunk store counter', store.counters),
    ...(store.objects instanceof ResilientObjectStore
      ? counterFamilies('s0_object_store', 'Object store counter', store.objects.stats)
      : []),
    ...metric('s0_chunk_cache_bytes', 'gauge', 'Bytes held by the chunk caches.', [
      `s0_chunk_cache_bytes{tier="memory"} ${store.memoryCacheBytes}`,
      `s0_chunk_cache_bytes{tier="disk"} ${store.diskCacheBytes}`,
    ]),
    ...metric('s0_db_pool_connections', 'gauge', 'Postgres pool connections by state.', [
      `s0_db_pool_connections{state="total"} ${pool.totalCount}`,
      `s0_db_pool_connections{state="idle"} ${pool.idleCount}`,
      `s0_db_pool_connections{state="waiting"} ${pool.waitingCount}`,
    ]),
  ]
  return lines.join('\n') + '\n'
}
