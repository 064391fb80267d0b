// Execution sessions on the wire (api-contract §12, the SDK's ExecutionSession* models).
import type { SessionEvent, SessionEventCursor, SessionRow } from '../../sandboxes/index.js'
import { iso } from './time.js'

export function sessionJson(s: SessionRow): Record<string, unknown> {
  const a = s.attempt
  return {
    id: s.id,
    spec: s.spec,
    spec_version: s.specVersion,
    phase: s.phase,
    runtime_generation: s.runtimeGeneration,
    ...(a
      ? {
          attempt: {
            id: a.id,
            number: a.number,
            runtime_generation: a.runtime_generation,
            ...(a.started_at ? { started_at: a.started_at } : {}),
            ...(a.finished_at ? { finished_at: a.finished_at } : {}),
            ...(a.exit_code !== undefined ? { exit_code: a.exit_code } : {}),
            ...(a.reason ? { reason: a.reason } : {}),
          },
        }
      : {}),
    restart_count: s.restartCount,
    cursor: { earliest: s.earliestSeq, latest: s.lastSeq },
    created_at: iso(s.createdAt),
    updated_at: iso(s.updatedAt),
    last_activity_at: iso(s.lastActivityAt),
  }
}

export function sessionEventJson(e: SessionEvent): Record<string, unknown> {
  return {
    seq: e.seq,
    session_id: e.sessionId,
    runtime_generation: e.runtimeGeneration,
    ...(e.attemptId ? { attempt_id: e.attemptId } : {}),
    type: e.type,
    ...(e.stream ? { stream: e.stream } : {}),
    ...(e.data ? { data_base64: e.data.toString('base64') } : {}),
    ...(e.exitCode !== undefined ? { exit_code: e.exitCode } : {}),
    ...(e.reason ? { reason: e.reason } : {}),
    occurred_at: iso(e.occurredAt),
  }
}

export function cursorJson(c: SessionEventCursor): Record<string, unknown> {
  return { earliest: c.earliest, latest: c.latest }
}
