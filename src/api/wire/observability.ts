// Events and log lines as the SDK reads them (api-contract §11, §11.1). An event's document is
// the one that was signed (core/events.ts); its signature status is checked as it is served.
import { eventDocument, signatureStatus, type StoredEvent } from '../../core/events.js'
import { EVENT_SIGNATURE_ALGORITHM, type EventKeyring } from '../../core/event-signing.js'
import type { StoredLogLine } from '../../sandboxes/index.js'

export function eventJson(e: StoredEvent, keyring: EventKeyring): Record<string, unknown> {
  const status = signatureStatus(e, keyring)
  return {
    ...eventDocument(e),
    integrity: e.integrity
      ? { ...e.integrity, signature_status: status }
      : {
          algorithm: EVENT_SIGNATURE_ALGORITHM,
          payload_hash: '',
          signature: '',
          signing_key_id: '',
          signature_status: 'unavailable',
        },
  }
}

export function logJson(l: StoredLogLine, region: string, cluster: string): Record<string, unknown> {
  return {
    team_id: l.teamId,
    sandbox_id: l.sandboxId,
    region_id: region,
    cluster_id: cluster,
    ...(l.contextId ? { context_id: l.contextId } : {}),
    ...(l.processId ? { process_id: l.processId } : {}),
    occurred_at: l.occurredAt.toISOString(),
    ingested_at: l.ingestedAt.toISOString(),
    stream: l.stream,
    message: l.message,
    cursor: String(l.seq),
    ...(l.attributes ? { attributes: l.attributes } : {}),
  }
}
