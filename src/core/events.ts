// Sandbox events (Sandbox0's event model, schema version 2): an append-only log in Postgres that
// every layer writes through one buffered writer. Appending never blocks the caller (the egress
// proxy audits every connection on its hot path): events queue in memory, bounded, and are
// inserted in batches; what a full queue cannot take is counted as dropped and logged, never
// silently lost. `flush()` makes everything appended so far durable (tests, shutdown).
import { randomUUID } from 'node:crypto'
import type { Db } from './db.js'
import { limits } from './limits.js'
import type { Logger } from './log.js'

export type EventType = 'lifecycle' | 'network_audit' | 'runtime_stats' | 'api_access' | 'process' | 'file'
export type EventPhase = 'attempt' | 'result' | 'effect'
export type EventOutcome = 'completed' | 'denied' | 'error' | 'succeeded' | 'failed' | 'accepted' | 'unknown'
/** Which part of Sandbox0 produced it; `netd` is the node's network daemon (our egress proxy). */
export type EventSource = 'cluster_gateway' | 'manager' | 'netd' | 'procd' | 'ctld' | 'storage_proxy'
export type ActorKind =
  'human' | 'api_key' | 'service' | 'sandbox_workload' | 'ssh_user' | 'exposure_credential' | 'anonymous'

export interface SandboxEvent {
  teamId: string
  sandboxId: string
  occurredAt: Date
  source: EventSource
  eventType: EventType
  phase: EventPhase
  outcome: EventOutcome
  actor: { kind: ActorKind; id?: string; api_key_id?: string; auth_method?: string }
  action: string
  resource: { type: string; id: string; subresource?: string }
  /** Groups the events of one operation (a connection, a claim); defaults to the event id. */
  operationId?: string
  parentEventId?: string
  attributes?: Record<string, unknown>
}

export interface StoredEvent extends SandboxEvent {
  seq: number
  eventId: string
  operationId: string
  ingestedAt: Date
  producer: { service: string; instance?: string; sequence?: number }
}

interface Row {
  seq: string
  event_id: string
  team_id: string
  sandbox_id: string
  occurred_at: Date
  ingested_at: Date
  source: EventSource
  event_type: EventType
  phase: EventPhase
  outcome: EventOutcome
  actor: SandboxEvent['actor']
  action: string
  resource: SandboxEvent['resource']
  operation_id: string
  parent_event_id: string | null
  producer: StoredEvent['producer']
  attributes: Record<string, unknown> | null
}

export class EventLog {
  private queue: Array<{ id: string; e: SandboxEvent; sequence: number }> = []
  private sequence = 0
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined
  private closed = false
  /** Events a full queue could not take, since start (metrics). */
  dropped = 0
  /** Events written, since start (metrics). */
  written = 0

  private readonly queueMax: number
  private readonly batchMax: number

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    /** The producer's instance name (this server's identity). */
    private readonly instance: string,
    /** Tests lower the bounds; production uses limits.ts. */
    bounds: { queueMax?: number; batchMax?: number } = {},
  ) {
    this.queueMax = bounds.queueMax ?? limits.eventQueueMax
    this.batchMax = bounds.batchMax ?? limits.eventBatchMax
  }

  /** Queues an event; returns its id. Never throws, never waits. */
  append(e: SandboxEvent): string {
    const id = randomUUID()
    if (this.closed || this.queue.length >= this.queueMax) {
      if (this.dropped++ % this.queueMax === 0)
        this.log.warn('event queue full: events dropped', { dropped: this.dropped })
      return id
    }
    this.queue.push({ id, e, sequence: ++this.sequence })
    if (this.queue.length >= this.batchMax) this.kick()
    else this.timer ??= setTimeout(() => this.kick(), limits.eventFlushIntervalMs)
    return id
  }

  private kick(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    // Its failure is logged inside; the events stay queued for the next flush.
    void this.flush()
  }

  /** Writes everything queued so far, batch by batch (and waits for a write in progress). */
  async flush(): Promise<void> {
    for (;;) {
      while (this.flushing) await this.flushing
      if (this.queue.length === 0) return
      let ok = false
      this.flushing = this.write()
        .then((written) => void (ok = written))
        .finally(() => (this.flushing = undefined))
      await this.flushing
      if (!ok) break // the database failed: the timer tries again
    }
    if (this.queue.length > 0 && !this.timer && !this.closed)
      this.timer = setTimeout(() => this.kick(), limits.eventFlushIntervalMs)
  }

  /** One batch; false if the database refused it (the batch is back in the queue). */
  private async write(): Promise<boolean> {
    const batch = this.queue.splice(0, this.batchMax)
    const cols: unknown[][] = Array.from({ length: 14 }, () => [])
    for (const { id, e, sequence } of batch) {
      const values = [
        id,
        e.teamId,
        e.sandboxId,
        e.occurredAt,
        e.source,
        e.eventType,
        e.phase,
        e.outcome,
        JSON.stringify(e.actor),
        e.action,
        JSON.stringify(e.resource),
        e.operationId ?? id,
        e.parentEventId ?? null,
        JSON.stringify({ service: 's0', instance: this.instance, sequence }),
      ]
      values.forEach((v, i) => (cols[i] as unknown[]).push(v))
    }
    const attrs = batch.map(({ e }) => (e.attributes ? JSON.stringify(e.attributes) : null))
    try {
      await this.db.query(
        `INSERT INTO sandbox_events (event_id, team_id, sandbox_id, occurred_at, source, event_type, phase,
                                     outcome, actor, action, resource, operation_id, parent_event_id, producer, attributes)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
                              $8::text[], $9::jsonb[], $10::text[], $11::jsonb[], $12::text[], $13::text[], $14::jsonb[], $15::jsonb[])`,
        [...cols, attrs],
      )
      this.written += batch.length
      return true
    } catch (err) {
      // Back to the front (bounded: what no longer fits is dropped and counted), retried later.
      const room = Math.max(0, this.queueMax - this.queue.length)
      this.dropped += Math.max(0, batch.length - room)
      this.queue.unshift(...batch.slice(0, room))
      this.log.warn('writing sandbox events failed; will retry', { events: batch.length, err })
      return false
    }
  }

  /** A sandbox's events after cursor `after`, oldest first (tests; issue 16 serves the API). */
  async list(
    teamId: string,
    sandboxId: string,
    o: { after?: number; limit?: number } = {},
  ): Promise<StoredEvent[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM sandbox_events WHERE team_id = $1 AND sandbox_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
      [teamId, sandboxId, o.after ?? 0, Math.min(o.limit ?? limits.eventBatchMax, limits.eventBatchMax)],
    )
    return rows.map((r) => ({
      seq: Number(r.seq),
      eventId: r.event_id,
      teamId: r.team_id,
      sandboxId: r.sandbox_id,
      occurredAt: r.occurred_at,
      ingestedAt: r.ingested_at,
      source: r.source,
      eventType: r.event_type,
      phase: r.phase,
      outcome: r.outcome,
      actor: r.actor,
      action: r.action,
      resource: r.resource,
      operationId: r.operation_id,
      ...(r.parent_event_id ? { parentEventId: r.parent_event_id } : {}),
      producer: r.producer,
      ...(r.attributes ? { attributes: r.attributes } : {}),
    }))
  }

  /** Flushes and stops taking events. */
  async close(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.flush()
    this.closed = true
  }
}
