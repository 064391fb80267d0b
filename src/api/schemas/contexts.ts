// Schemas of the contexts routes (create, exec, input, signal, resize).
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { envVars, ID_CHARS_MAX } from './common.js'

export const ctxParams = {
  type: 'object',
  required: ['id', 'ctx_id'],
  properties: {
    id: { type: 'string', maxLength: ID_CHARS_MAX },
    ctx_id: { type: 'string', maxLength: ID_CHARS_MAX },
  },
} as const

export interface CtxParams {
  id: string
  ctx_id: string
}

export const ptySize = {
  type: 'object',
  required: ['rows', 'cols'],
  additionalProperties: false,
  properties: {
    rows: { type: 'integer', minimum: 1, maximum: 65535 },
    cols: { type: 'integer', minimum: 1, maximum: 65535 },
  },
} as const

export const inputBody = {
  type: 'object',
  required: ['data'],
  additionalProperties: false,
  properties: { data: { type: 'string', maxLength: limits.contextInputCharsMax } },
} as const

export const signalBody = {
  type: 'object',
  required: ['signal'],
  additionalProperties: false,
  properties: { signal: { type: 'string', maxLength: 16 } },
} as const

export const createContextBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: ['repl', 'cmd'] },
    repl: {
      type: 'object',
      additionalProperties: false,
      properties: {
        alias: { type: 'string', maxLength: 64 },
        input: { type: 'string', maxLength: limits.contextInputCharsMax },
        repl_config: { type: 'object' },
      },
    },
    cmd: {
      type: 'object',
      required: ['command'],
      additionalProperties: false,
      properties: {
        command: { type: 'array', minItems: 1, maxItems: 4096, items: { type: 'string', maxLength: 131072 } },
      },
    },
    wait_until_done: { type: 'boolean' },
    cwd: { type: 'string', maxLength: 4096 },
    env_vars: envVars,
    pty_size: ptySize,
    idle_timeout_sec: { type: 'integer', minimum: 0, maximum: 86400 },
    ttl_sec: { type: 'integer', minimum: 0, maximum: 86400 },
  },
} as const

export interface CreateContextBody {
  type?: 'repl' | 'cmd'
  repl?: { alias?: string; input?: string }
  cmd?: { command: string[] }
  wait_until_done?: boolean
  cwd?: string
  env_vars?: Record<string, string> | null
  pty_size?: { rows: number; cols: number }
  idle_timeout_sec?: number
  ttl_sec?: number
}

const SIGNALS: Record<string, NodeJS.Signals> = {
  INT: 'SIGINT',
  TERM: 'SIGTERM',
  KILL: 'SIGKILL',
  HUP: 'SIGHUP',
  QUIT: 'SIGQUIT',
  USR1: 'SIGUSR1',
  USR2: 'SIGUSR2',
  STOP: 'SIGSTOP',
  CONT: 'SIGCONT',
  WINCH: 'SIGWINCH',
}

/** `INT`, `SIGINT`, `int` → SIGINT; `invalid_request` for anything else. */
export function parseSignal(name: string): NodeJS.Signals {
  const sig = SIGNALS[name.toUpperCase().replace(/^SIG/, '')]
  if (!sig)
    throw new S0Error(
      'invalid_request',
      `unknown signal ${JSON.stringify(name)}: use ${Object.keys(SIGNALS).join(', ')}`,
    )
  return sig
}
