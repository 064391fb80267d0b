// What happened to and in sandboxes, as signed events (core/events.ts): lifecycle operations
// (attempt and result, sharing an operation id), processes (context start and exit) and files
// written through the API. The actor is the API request's (core/request-context.ts) or the
// service's own for background work. Without an event log (some tests) nothing is recorded.
import { randomUUID } from 'node:crypto'
import { isS0Error } from '../core/errors.js'
import type {
  EventLog,
  EventOutcome,
  EventPhase,
  EventSource,
  EventType,
  SandboxEvent,
} from '../core/events.js'
import { currentActor } from '../core/request-context.js'

export interface AuditEntry {
  eventType: EventType
  action: string
  phase: EventPhase
  outcome: EventOutcome
  source?: EventSource
  resource?: SandboxEvent['resource']
  operationId?: string
  parentEventId?: string
  attributes?: Record<string, unknown>
}

export class SandboxAudit {
  constructor(private readonly events: EventLog | undefined) {}

  /** Records one event; its id (undefined without a log). Never throws. */
  record(teamId: string, sandboxId: string, e: AuditEntry): string | undefined {
    if (!this.events) return undefined
    return this.events.append({
      teamId,
      sandboxId,
      occurredAt: new Date(),
      source: e.source ?? 'manager',
      eventType: e.eventType,
      phase: e.phase,
      outcome: e.outcome,
      actor: currentActor(),
      action: e.action,
      resource: e.resource ?? { type: 'sandbox', id: sandboxId },
      ...(e.operationId ? { operationId: e.operationId } : {}),
      ...(e.parentEventId ? { parentEventId: e.parentEventId } : {}),
      ...(e.attributes ? { attributes: e.attributes } : {}),
    })
  }

  /**
   * Makes what was recorded so far durable: a lifecycle operation's caller is answered only once
   * its events are stored, so a crash right after the answer loses none of them. A database
   * failure does not fail the operation (the events stay queued and are retried).
   */
  async durable(): Promise<void> {
    await this.events?.flush()
  }

  /**
   * A lifecycle operation: an `attempt` event, then `fn`, then a `result` (succeeded with its
   * duration and `attrs` of the result, or failed with the error's code and message).
   */
  async lifecycle<T>(
    teamId: string,
    sandboxId: string,
    action: string,
    fn: () => Promise<T>,
    attrs?: (result: T) => Record<string, unknown>,
  ): Promise<T> {
    if (!this.events) return fn()
    const operationId = randomUUID()
    const attempt = this.record(teamId, sandboxId, {
      eventType: 'lifecycle',
      action,
      phase: 'attempt',
      outcome: 'accepted',
      operationId,
    })
    const started = performance.now()
    const result = (outcome: EventOutcome, attributes: Record<string, unknown>): void =>
      void this.record(teamId, sandboxId, {
        eventType: 'lifecycle',
        action,
        phase: 'result',
        outcome,
        operationId,
        ...(attempt ? { parentEventId: attempt } : {}),
        attributes: { duration_ms: Math.round(performance.now() - started), ...attributes },
      })
    let r: T
    try {
      r = await fn()
    } catch (err) {
      result('failed', errorAttributes(err))
      await this.durable()
      throw err
    }
    result('succeeded', attrs?.(r) ?? {})
    await this.durable()
    return r
  }
}

export function errorAttributes(err: unknown): Record<string, unknown> {
  return isS0Error(err)
    ? { error_code: err.code, error: err.message.slice(0, 500) }
    : { error_code: 'internal_error', error: String((err as Error)?.message ?? err).slice(0, 500) }
}
