// network_audit events: one per decision of the proxy or the resolver (allowed, denied, error),
// in Sandbox0's event model, written through the shared event log.
import type { EventLog, EventOutcome } from '../../core/events.js'
import type { EgressSandbox } from './directory.js'

export interface AuditedFlow {
  sandbox: EgressSandbox
  /** `connect` (TCP), `dns_query`, `http_request`, `ssh_session`. */
  action: string
  outcome: Extract<EventOutcome, 'succeeded' | 'denied' | 'error'>
  destination: { ip?: string; port?: number; name?: string; transport?: 'tcp' | 'udp' }
  rule: string
  appProtocol?: string
  /** One id per connection: the events of its requests share it. */
  operationId?: string
  attributes?: Record<string, unknown>
}

export function auditFlow(events: EventLog, f: AuditedFlow): string {
  const d = f.destination
  const target = d.name ?? d.ip ?? 'unknown'
  return events.append({
    teamId: f.sandbox.teamId,
    sandboxId: f.sandbox.sandboxId,
    occurredAt: new Date(),
    source: 'netd',
    eventType: 'network_audit',
    phase: 'result',
    outcome: f.outcome,
    actor: { kind: 'sandbox_workload', id: f.sandbox.sandboxId },
    action: f.action,
    resource: {
      type: 'network_destination',
      id: d.port === undefined ? target : `${target}:${d.port}`,
    },
    ...(f.operationId ? { operationId: f.operationId } : {}),
    attributes: {
      destination: { ...d },
      rule: f.rule,
      ...(f.appProtocol ? { app_protocol: f.appProtocol } : {}),
      ...f.attributes,
    },
  })
}
