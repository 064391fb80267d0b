// What the ingress records in the event log: one `api_access` event per request, within a budget
// per sandbox (a token bucket, limits.ingressEventsPerSecond with a burst); requests beyond it
// are counted into one summary event per sandbox, service and route each second (requests,
// bytes, statuses by class). A public URL takes anonymous traffic: one row per request would let
// anyone on the internet write the team's Postgres at line rate (and, measured, halves the
// proxy's throughput on a 2-core host). Nothing goes uncounted.
import type { EventLog } from '../../core/events.js'
import { limits } from '../../core/limits.js'
import { TokenBuckets } from './token-buckets.js'

export interface IngressRecord {
  teamId: string
  sandboxId: string
  serviceId: string
  routeId: string
  authenticated: boolean
  method: string
  path: string
  status: number
  bytesIn: number
  bytesOut: number
  durationMs: number
}

interface Summary {
  teamId: string
  sandboxId: string
  serviceId: string
  routeId: string
  since: number
  requests: number
  bytesIn: number
  bytesOut: number
  statuses: Record<string, number>
}

export class IngressEvents {
  private readonly budgets = new TokenBuckets(limits.ingressBucketsMax)
  private readonly summaries = new Map<string, Summary>()
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly events: EventLog | undefined) {}

  record(r: IngressRecord): void {
    const events = this.events
    if (!events) return
    if (this.budgets.take(r.sandboxId, limits.ingressEventsPerSecond, limits.ingressEventsBurst) === 0) {
      events.append({
        teamId: r.teamId,
        sandboxId: r.sandboxId,
        occurredAt: new Date(),
        source: 'cluster_gateway',
        eventType: 'api_access',
        phase: 'result',
        outcome: r.status > 0 && r.status < 400 ? 'succeeded' : 'failed',
        actor: { kind: r.authenticated ? 'exposure_credential' : 'anonymous' },
        action: 'service.ingress',
        resource: { type: 'service', id: r.serviceId, subresource: r.routeId },
        attributes: {
          method: r.method,
          path: r.path,
          status: r.status,
          bytes_in: r.bytesIn,
          bytes_out: r.bytesOut,
          duration_ms: r.durationMs,
        },
      })
      return
    }
    const key = `${r.sandboxId}/${r.serviceId}/${r.routeId}`
    let s = this.summaries.get(key)
    if (!s) {
      s = {
        teamId: r.teamId,
        sandboxId: r.sandboxId,
        serviceId: r.serviceId,
        routeId: r.routeId,
        since: Date.now(),
        requests: 0,
        bytesIn: 0,
        bytesOut: 0,
        statuses: {},
      }
      this.summaries.set(key, s)
    }
    s.requests++
    s.bytesIn += r.bytesIn
    s.bytesOut += r.bytesOut
    const cls = r.status > 0 ? `${Math.floor(r.status / 100)}xx` : 'none'
    s.statuses[cls] = (s.statuses[cls] ?? 0) + 1
    this.timer ??= setTimeout(() => this.flush(), limits.ingressEventSummaryMs).unref()
  }

  /** Writes the pending summaries (each second, and at close). */
  flush(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    const now = Date.now()
    for (const s of this.summaries.values()) {
      this.events?.append({
        teamId: s.teamId,
        sandboxId: s.sandboxId,
        occurredAt: new Date(now),
        source: 'cluster_gateway',
        eventType: 'api_access',
        phase: 'result',
        outcome: 'completed',
        actor: { kind: 'anonymous' },
        action: 'service.ingress.summary',
        resource: { type: 'service', id: s.serviceId, subresource: s.routeId },
        attributes: {
          requests: s.requests,
          bytes_in: s.bytesIn,
          bytes_out: s.bytesOut,
          statuses: s.statuses,
          window_ms: now - s.since,
          why: `over ${limits.ingressEventsPerSecond} request events/s for this sandbox`,
        },
      })
    }
    this.summaries.clear()
  }
}
