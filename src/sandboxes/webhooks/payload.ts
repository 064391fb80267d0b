// What one webhook POST carries: the event as JSON (docs/WEBHOOKS.md has the shape) and its
// signature, hex HMAC-SHA256 of the exact body bytes keyed with the webhook's secret (what the
// SDK's verifyWebhookSignature checks in `X-Sandbox0-Signature`).
import { createHmac } from 'node:crypto'

export const SIGNATURE_HEADER = 'X-Sandbox0-Signature'

/** A sandbox_events row as the deliverer reads it. */
export interface EventRow {
  seq: string
  event_id: string
  team_id: string
  sandbox_id: string
  occurred_at: Date
  ingested_at: Date
  event_type: string
  phase: string
  outcome: string
  actor: Record<string, unknown>
  action: string
  resource: Record<string, unknown>
  operation_id: string
  producer: { instance?: string } | null
  attributes: Record<string, unknown> | null
}

/** The body: the same bytes on every attempt, so a retry is recognisable by event_id. */
export function webhookBody(e: EventRow): string {
  return JSON.stringify({
    event_id: e.event_id,
    type: e.action,
    sandbox_id: e.sandbox_id,
    team_id: e.team_id,
    occurred_at: e.occurred_at.toISOString(),
    data: {
      event_type: e.event_type,
      phase: e.phase,
      outcome: e.outcome,
      actor: e.actor,
      resource: e.resource,
      operation_id: e.operation_id,
      ...(e.attributes ? { attributes: e.attributes } : {}),
    },
  })
}

export function sign(secret: string, body: string): string {
  return createHmac('sha256', secret).update(body).digest('hex')
}
