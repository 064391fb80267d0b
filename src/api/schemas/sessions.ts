// Schemas of the execution session routes (api-contract §12): the spec, desired state, attempts,
// inputs, signals, terminal size, and the event cursor. Bounds come from core/limits.ts.
import { limits } from '../../core/limits.js'
import { envVars, ID_CHARS_MAX } from './common.js'

export const sessionParams = {
  type: 'object',
  required: ['id', 'session_id'],
  properties: {
    id: { type: 'string', maxLength: ID_CHARS_MAX },
    session_id: { type: 'string', maxLength: ID_CHARS_MAX },
  },
} as const

export interface SessionParams {
  id: string
  session_id: string
}

const int = (minimum: number, maximum: number) => ({ type: 'integer', minimum, maximum }) as const

export const sessionSpec = {
  type: 'object',
  required: ['command'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', maxLength: limits.sessionNameCharsMax },
    command: {
      type: 'array',
      minItems: 1,
      maxItems: limits.sessionCommandArgsMax,
      items: { type: 'string', maxLength: limits.sessionCommandArgBytesMax },
    },
    cwd: { type: 'string', minLength: 1, maxLength: 4096 },
    env: envVars,
    io: {
      type: 'object',
      additionalProperties: false,
      properties: {
        mode: { type: 'string', enum: ['pipes', 'pty'] },
        terminal: {
          type: 'object',
          additionalProperties: false,
          properties: { rows: int(1, 65535), cols: int(1, 65535), term: { type: 'string', maxLength: 64 } },
        },
      },
    },
    lifecycle: {
      type: 'object',
      additionalProperties: false,
      properties: {
        desired_state: { type: 'string', enum: ['running', 'stopped'] },
        restart: {
          type: 'object',
          additionalProperties: false,
          properties: {
            policy: { type: 'string', enum: ['never', 'on_failure', 'always'] },
            max_restarts: int(0, limits.sessionMaxRestartsMax),
            window_seconds: int(1, limits.sessionRestartWindowSecMax),
            initial_backoff_ms: int(0, limits.sessionBackoffMsMax),
            max_backoff_ms: int(0, limits.sessionBackoffMsMax),
          },
        },
        runtime_recovery: { type: 'string', enum: ['restart', 'stop'] },
        idle_timeout_seconds: int(0, limits.sessionTimeoutSecMax),
        max_lifetime_seconds: int(0, limits.sessionTimeoutSecMax),
        stop_grace_period_seconds: int(0, limits.sessionStopGraceSecMax),
      },
    },
    readiness: {
      type: 'object',
      additionalProperties: false,
      properties: {
        type: { type: 'string', enum: ['process', 'delay', 'output'] },
        delay_ms: int(0, limits.sessionReadinessMsMax),
        output: { type: 'string', minLength: 1, maxLength: limits.sessionReadinessOutputCharsMax },
        timeout_ms: int(1, limits.sessionReadinessMsMax),
      },
    },
    event_retention: {
      type: 'object',
      additionalProperties: false,
      properties: {
        max_bytes: int(limits.sessionRetentionBytesMin, limits.sessionRetentionBytesMax),
        max_age_seconds: int(1, limits.sessionRetentionAgeSecMax),
      },
    },
  },
} as const

export const createSessionHeaders = {
  type: 'object',
  properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 256 } },
} as const

export const desiredStateBody = {
  type: 'object',
  required: ['state'],
  additionalProperties: false,
  properties: { state: { type: 'string', enum: ['running', 'stopped'] } },
} as const

export const attemptBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { replace_current: { type: 'boolean' } },
} as const

// base64 of at most sessionInputBytesMax bytes.
const BASE64_CHARS_MAX = Math.ceil(limits.sessionInputBytesMax / 3) * 4

export const inputBody = {
  type: 'object',
  required: ['input_id'],
  additionalProperties: false,
  properties: {
    input_id: { type: 'string', minLength: 1, maxLength: 256 },
    expected_attempt_id: { type: 'string', maxLength: ID_CHARS_MAX },
    data_base64: { type: 'string', maxLength: BASE64_CHARS_MAX, pattern: '^[A-Za-z0-9+/]*={0,2}$' },
    eof: { type: 'boolean' },
  },
} as const

export const signalBody = {
  type: 'object',
  required: ['signal'],
  additionalProperties: false,
  properties: {
    signal: { type: 'string', minLength: 1, maxLength: 16 },
    expected_attempt_id: { type: 'string', maxLength: ID_CHARS_MAX },
  },
} as const

export const terminalBody = {
  type: 'object',
  required: ['rows', 'cols'],
  additionalProperties: false,
  properties: {
    rows: int(1, 65535),
    cols: int(1, 65535),
    expected_attempt_id: { type: 'string', maxLength: ID_CHARS_MAX },
  },
} as const

export const eventsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    after: { type: 'integer', minimum: 0 },
    limit: int(1, limits.sessionEventPageMax),
  },
} as const

export const streamQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { after: { type: 'integer', minimum: 0 } },
} as const
