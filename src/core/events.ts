// Sandbox events (Sandbox0's event model, schema version 2): an append-only, signed log in
// Postgres that every layer writes through one buffered appender (core/batched-appender.ts):
// lifecycle, API access, network audit (the egress proxy, on its hot path), processes and files.
// Each event is signed when it is written (core/event-signing.ts) over its wire document, the
// same JSON the API serves, so a range exported by the API verifies offline.
//
// Ordering: `seq` is the cursor. Writers take one transaction-scoped advisory lock per batch, so
// batches commit in `seq` order even with several writers (replicas): a reader that has seen
// `seq` n never later finds a smaller one appear, and `seq > cursor` resumes without gaps.
import { randomUUID } from 'node:crypto'
import { BatchedAppender } from './batched-appender.js'
import { ADVISORY_LOCK_KEYS } from './advisory-locks.js'
import type { Db } from './db.js'
import { EventSigner, type EventKeyring, type Integrity, type SignatureStatus } from './event-signing.js'
import { limits } from './limits.js'
import { SqlWhere } from './sql-where.js'
import type { Logger } from './log.js'

export type EventType = 'lifecycle' | 'network_audit' | 'runtime_stats' | 'api_access' | 'process' | 'file'
export type EventPhase = 'attempt' | 'result' | 'effect'
export type EventOutcome = 'completed' | 'denied' | 'error' | 'succeeded' | 'failed' | 'accepted' | 'unknown'
/** Which part of Sandbox0 produced it; `netd` is the node's network daemon (our egress proxy). */
export type EventSource = 'cluster_gateway' | 'manager' | 'netd' | 'procd' | 'ctld' | 'storage_proxy'
export type ActorKind =
  'human' | 'api_key' | 'service' | 'sandbox_workload' | 'ssh_user' | 'exposure_credential' | 'anonymous'

export const EVENT_TYPES: readonly EventType[] = [
  'lifecycle',
  'network_audit',
  'runtime_stats',
  'api_access',
  'process',
  'file',
]
export const EVENT_SOURCES: readonly EventSource[] = [
  'cluster_gateway',
  'manager',
  'netd',
  'procd',
  'ctld',
  'storage_proxy',
]
export const EVENT_OUTCOMES: readonly EventOutcome[] = [
  'completed',
  'denied',
  'error',
  'succeeded',
  'failed',
  'accepted',
  'unknown',
]
export const ACTOR_KINDS: readonly ActorKind[] = [
  'human',
  'api_key',
  'service',
  'sandbox_workload',
  'ssh_user',
  'exposure_credential',
  'anonymous',
]

export interface EventActor {
  kind: ActorKind
  id?: string
  user_id?: string
  api_key_id?: string
  auth_method?: string
}

/** The HTTP request behind an event (api_access), in the wire's names. */
export interface EventRequest {
  request_id?: string
  trace_id?: string
  source_ip?: string
  user_agent?: string
  http_method?: string
  route?: string
  status_code?: number
}

export interface SandboxEvent {
  teamId: string
  sandboxId: string
  occurredAt: Date
  source: EventSource
  eventType: EventType
  phase: EventPhase
  outcome: EventOutcome
  actor: EventActor
  action: string
  resource: { type: string; id: string; subresource?: string }
  /** Groups the events of one operation (a connection, a claim); defaults to the event id. */
  operationId?: string
  parentEventId?: string
  request?: EventRequest
  attributes?: Record<string, unknown>
}

export interface StoredEvent extends SandboxEvent {
  seq: number
  eventId: string
  operationId: string
  ingestedAt: Date
  regionId: string
  clusterId: string
  producer: { service: string; instance?: string; sequence?: number }
  integrity: Integrity | null
}

/** The wire form of an event without `integrity`: what is signed, and what the API serves. */
export interface EventDocument {
  event_id: string
  schema_version: 2
  team_id: string
  sandbox_id: string
  region_id: string
  cluster_id: string
  occurred_at: string
  ingested_at: string
  source: EventSource
  event_type: EventType
  phase: EventPhase
  outcome: EventOutcome
  actor: EventActor
  action: string
  resource: SandboxEvent['resource']
  operation_id: string
  parent_event_id?: string
  producer: StoredEvent['producer']
  request?: EventRequest
  attributes?: Record<string, unknown>
}

export function eventDocument(e: StoredEvent): EventDocument {
  return {
    event_id: e.eventId,
    schema_version: 2,
    team_id: e.teamId,
    sandbox_id: e.sandboxId,
    region_id: e.regionId,
    cluster_id: e.clusterId,
    occurred_at: e.occurredAt.toISOString(),
    ingested_at: e.ingestedAt.toISOString(),
    source: e.source,
    event_type: e.eventType,
    phase: e.phase,
    outcome: e.outcome,
    actor: e.actor,
    action: e.action,
    resource: e.resource,
    operation_id: e.operationId,
    ...(e.parentEventId ? { parent_event_id: e.parentEventId } : {}),
    producer: e.producer,
    ...(e.request ? { request: e.request } : {}),
    ...(e.attributes ? { attributes: e.attributes } : {}),
  }
}

/** The filters of `GET …/observability/events` (all optional). */
export interface EventQuery {
  /** Only events after this cursor (exclusive). */
  after?: number
  limit?: number
  startTime?: Date
  endTime?: Date
  source?: string
  eventType?: string
  outcome?: string
  actorKind?: string
  actorId?: string
  action?: string
  resourceType?: string
  operationId?: string
  eventId?: string
}

interface Row {
  seq: number
  event_id: string
  team_id: string
  sandbox_id: string
  region_id: string
  cluster_id: string
  occurred_at: Date
  ingested_at: Date
  source: EventSource
  event_type: EventType
  phase: EventPhase
  outcome: EventOutcome
  actor: EventActor
  action: string
  resource: SandboxEvent['resource']
  operation_id: string
  parent_event_id: string | null
  producer: StoredEvent['producer']
  request: EventRequest | null
  attributes: Record<string, unknown> | null
  integrity: Integrity | null
}

interface Queued {
  id: string
  e: SandboxEvent
  sequence: number
}

export interface EventLogOptions {
  /** Signs every event; an ephemeral key when absent (tests). The server passes its own. */
  signer?: EventSigner
  region?: string
  cluster?: string
  /** Tests lower the bounds; production uses limits.ts. */
  queueMax?: number
  batchMax?: number
}

const COLUMNS = 18

export class EventLog {
  private readonly appender: BatchedAppender<Queued>
  private sequence = 0
  readonly signer: EventSigner
  readonly region: string
  readonly cluster: string

  constructor(
    private readonly db: Db,
    log: Logger,
    /** The producer's instance name (this server's identity). */
    private readonly instance: string,
    opts: EventLogOptions = {},
  ) {
    this.signer = opts.signer ?? EventSigner.ephemeral()
    this.region = opts.region ?? 'local'
    this.cluster = opts.cluster ?? 'local'
    this.appender = new BatchedAppender<Queued>(
      'sandbox events',
      {
        queueMax: opts.queueMax ?? limits.eventQueueMax,
        batchMax: opts.batchMax ?? limits.eventBatchMax,
        flushIntervalMs: limits.eventFlushIntervalMs,
      },
      (batch) => this.write(batch),
      log,
    )
  }

  /** Events a full queue could not take, since start (metrics). */
  get dropped(): number {
    return this.appender.dropped
  }

  /** Events written, since start (metrics). */
  get written(): number {
    return this.appender.written
  }

  /** Queues an event; returns its id. Never throws, never waits. */
  append(e: SandboxEvent): string {
    const id = randomUUID()
    this.appender.push({ id, e, sequence: ++this.sequence })
    return id
  }

  /** Called with the (team, sandbox) pairs of every committed batch (live watches wake on it). */
  onWritten(listener: (sandboxes: ReadonlySet<string>) => void): () => void {
    return this.appender.onWritten((batch) =>
      listener(new Set(batch.map(({ e }) => watchKey(e.teamId, e.sandboxId)))),
    )
  }

  flush(): Promise<void> {
    return this.appender.flush()
  }

  private async write(batch: Queued[]): Promise<void> {
    const ingestedAt = new Date()
    const cols: unknown[][] = Array.from({ length: COLUMNS }, () => [])
    for (const { id, e, sequence } of batch) {
      const stored: StoredEvent = {
        ...e,
        seq: 0,
        eventId: id,
        operationId: e.operationId ?? id,
        ingestedAt,
        regionId: this.region,
        clusterId: this.cluster,
        producer: { service: 's0', instance: this.instance, sequence },
        integrity: null,
      }
      const integrity = this.signer.sign(eventDocument(stored))
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
        stored.operationId,
        e.parentEventId ?? null,
        JSON.stringify(stored.producer),
        e.request ? JSON.stringify(e.request) : null,
        e.attributes ? JSON.stringify(e.attributes) : null,
        JSON.stringify(integrity),
        ingestedAt,
      ]
      values.forEach((v, i) => (cols[i] as unknown[]).push(v))
    }
    await this.db.tx(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.eventAppend])
      await client.query(
        `INSERT INTO sandbox_events (event_id, team_id, sandbox_id, occurred_at, source, event_type, phase,
                                     outcome, actor, action, resource, operation_id, parent_event_id, producer,
                                     request, attributes, integrity, ingested_at, region_id, cluster_id)
         SELECT *, $19::text, $20::text FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::jsonb[], $10::text[], $11::jsonb[], $12::text[],
                              $13::text[], $14::jsonb[], $15::jsonb[], $16::jsonb[], $17::jsonb[], $18::timestamptz[])`,
        [...cols, this.region, this.cluster],
      )
    })
  }

  /** A sandbox's events matching `q`, oldest first, at most `limits.eventPageMax`. */
  async list(teamId: string, sandboxId: string, q: EventQuery = {}): Promise<StoredEvent[]> {
    const where = new SqlWhere(
      ['team_id = $1', 'sandbox_id = $2', 'seq > $3'],
      [teamId, sandboxId, q.after ?? 0],
    )
      .add('occurred_at >= ?', q.startTime)
      .add('occurred_at < ?', q.endTime)
      .add('source = ?', q.source)
      .add('event_type = ?', q.eventType)
      .add('outcome = ?', q.outcome)
      .add(`actor->>'kind' = ?`, q.actorKind)
      .add(`actor->>'id' = ?`, q.actorId)
      .add('action = ?', q.action)
      .add(`resource->>'type' = ?`, q.resourceType)
      .add('operation_id = ?', q.operationId)
      .add('event_id = ?', q.eventId)
    const limit = where.param(Math.min(Math.max(q.limit ?? limits.eventPageDefault, 1), limits.eventPageMax))
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM sandbox_events WHERE ${where.text} ORDER BY seq LIMIT ${limit}`,
      where.params,
    )
    return rows.map(fromRow)
  }

  /** Flushes and stops taking events. */
  close(): Promise<void> {
    return this.appender.close()
  }
}

/** The key `onWritten` reports a sandbox under. */
export function watchKey(teamId: string, sandboxId: string): string {
  return `${teamId}/${sandboxId}`
}

/** An event's signature status against the keys a reader knows. */
export function signatureStatus(e: StoredEvent, keyring: EventKeyring): SignatureStatus {
  return keyring.check(eventDocument(e), e.integrity)
}

function fromRow(r: Row): StoredEvent {
  return {
    seq: r.seq,
    eventId: r.event_id,
    teamId: r.team_id,
    sandboxId: r.sandbox_id,
    regionId: r.region_id,
    clusterId: r.cluster_id,
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
    ...(r.request ? { request: r.request } : {}),
    ...(r.attributes ? { attributes: r.attributes } : {}),
    integrity: r.integrity,
  }
}
