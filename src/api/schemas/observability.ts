// Query strings of the observability routes (api-contract §11): cursors are decimal positions in
// the log, times RFC 3339, enums the SDK's.
import { ACTOR_KINDS, EVENT_OUTCOMES, EVENT_SOURCES, EVENT_TYPES } from '../../core/events.js'
import { limits } from '../../core/limits.js'
import { LOG_STREAMS, type LogStream } from '../../sandboxes/index.js'

const cursor = { type: 'string', pattern: '^[0-9]{1,18}$' } as const
const time = { type: 'string', format: 'date-time' } as const
const name = { type: 'string', minLength: 1, maxLength: 256 } as const
const watch = { type: 'string', enum: ['true', 'false'] } as const

const common = {
  start_time: time,
  end_time: time,
  cursor,
  watch,
} as const

export const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...common,
    limit: { type: 'integer', minimum: 1, maximum: limits.eventPageMax },
    source: { type: 'string', enum: [...EVENT_SOURCES] },
    event_type: { type: 'string', enum: [...EVENT_TYPES] },
    outcome: { type: 'string', enum: [...EVENT_OUTCOMES] },
    actor_kind: { type: 'string', enum: [...ACTOR_KINDS] },
    actor_id: name,
    action: name,
    resource_type: name,
    operation_id: name,
    event_id: name,
  },
} as const

export interface EventsQuery {
  start_time?: string
  end_time?: string
  cursor?: string
  watch?: 'true' | 'false'
  limit?: number
  source?: string
  event_type?: string
  outcome?: string
  actor_kind?: string
  actor_id?: string
  action?: string
  resource_type?: string
  operation_id?: string
  event_id?: string
}

export const logsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...common,
    limit: { type: 'integer', minimum: 1, maximum: limits.logPageMax },
    context_id: name,
    stream: { type: 'string', enum: [...LOG_STREAMS] },
  },
} as const

export interface LogsQuery {
  start_time?: string
  end_time?: string
  cursor?: string
  watch?: 'true' | 'false'
  limit?: number
  context_id?: string
  stream?: LogStream
}
