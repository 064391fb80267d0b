// An execution session's spec (api-contract §12) as stored and answered: the wire's shape, with
// every default filled in at create so what a client reads back is what runs. The API's schema
// checks types and bounds; this checks what a schema cannot say (relations between fields).
import { createHash } from 'node:crypto'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'

export type DesiredState = 'running' | 'stopped'
export type RestartPolicy = 'never' | 'on_failure' | 'always'
export type RuntimeRecovery = 'restart' | 'stop'
export type ReadinessType = 'process' | 'delay' | 'output'
export type IoMode = 'pipes' | 'pty'
export type SessionPhase =
  | 'pending'
  | 'starting'
  | 'running'
  | 'paused'
  | 'stopping'
  | 'stopped'
  | 'exited'
  | 'backoff'
  | 'failed'
  | 'suspended'

export interface SessionSpec {
  name?: string
  command: string[]
  cwd?: string
  env?: Record<string, string>
  io: { mode: IoMode; terminal?: { rows: number; cols: number; term: string } }
  lifecycle: {
    desired_state: DesiredState
    restart: {
      policy: RestartPolicy
      max_restarts: number
      window_seconds: number
      initial_backoff_ms: number
      max_backoff_ms: number
    }
    runtime_recovery: RuntimeRecovery
    /** 0: none. */
    idle_timeout_seconds: number
    /** 0: none. */
    max_lifetime_seconds: number
    stop_grace_period_seconds: number
  }
  readiness: { type: ReadinessType; delay_ms?: number; output?: string; timeout_ms?: number }
  event_retention: { max_bytes: number; max_age_seconds: number }
}

/** The spec as a client may send it (everything but `command` optional). */
export interface SessionSpecInput {
  name?: string
  command: string[]
  cwd?: string
  env?: Record<string, string> | null
  io?: { mode?: IoMode; terminal?: { rows?: number; cols?: number; term?: string } }
  lifecycle?: {
    desired_state?: DesiredState
    restart?: {
      policy?: RestartPolicy
      max_restarts?: number
      window_seconds?: number
      initial_backoff_ms?: number
      max_backoff_ms?: number
    }
    runtime_recovery?: RuntimeRecovery
    idle_timeout_seconds?: number
    max_lifetime_seconds?: number
    stop_grace_period_seconds?: number
  }
  readiness?: { type?: ReadinessType; delay_ms?: number; output?: string; timeout_ms?: number }
  event_retention?: { max_bytes?: number; max_age_seconds?: number }
}

function bad(message: string): S0Error {
  return new S0Error('invalid_request', message)
}

/** Fills the defaults in and checks what the schema cannot. */
export function normalizeSpec(s: SessionSpecInput): SessionSpec {
  if (s.command.length === 0 || s.command[0] === '')
    throw bad('command must name a program: a non-empty array whose first item is not empty')
  const io = s.io ?? {}
  const mode = io.mode ?? 'pipes'
  if (mode === 'pipes' && io.terminal !== undefined) throw bad('io.terminal applies to io.mode "pty" only')
  const lc = s.lifecycle ?? {}
  const r = lc.restart ?? {}
  const initial = r.initial_backoff_ms ?? limits.sessionBackoffInitialMsDefault
  const max = r.max_backoff_ms ?? Math.max(initial, limits.sessionBackoffMaxMsDefault)
  if (max < initial)
    throw bad(`lifecycle.restart.max_backoff_ms (${max}) must be >= initial_backoff_ms (${initial})`)
  const rd = s.readiness ?? {}
  const type = rd.type ?? 'process'
  if (type === 'output' && !rd.output)
    throw bad('readiness.output (the text that marks the session ready) is required for type "output"')
  if (type !== 'output' && rd.output !== undefined)
    throw bad('readiness.output applies to type "output" only')
  if (type !== 'delay' && rd.delay_ms !== undefined)
    throw bad('readiness.delay_ms applies to type "delay" only')
  const er = s.event_retention ?? {}
  return {
    ...(s.name !== undefined ? { name: s.name } : {}),
    command: [...s.command],
    ...(s.cwd !== undefined ? { cwd: s.cwd } : {}),
    ...(s.env ? { env: { ...s.env } } : {}),
    io: {
      mode,
      ...(mode === 'pty'
        ? {
            terminal: {
              rows: io.terminal?.rows ?? 24,
              cols: io.terminal?.cols ?? 80,
              term: io.terminal?.term ?? 'xterm-256color',
            },
          }
        : {}),
    },
    lifecycle: {
      desired_state: lc.desired_state ?? 'running',
      restart: {
        policy: r.policy ?? 'never',
        max_restarts: r.max_restarts ?? limits.sessionMaxRestartsDefault,
        window_seconds: r.window_seconds ?? limits.sessionRestartWindowSecDefault,
        initial_backoff_ms: initial,
        max_backoff_ms: max,
      },
      runtime_recovery: lc.runtime_recovery ?? 'restart',
      idle_timeout_seconds: lc.idle_timeout_seconds ?? 0,
      max_lifetime_seconds: lc.max_lifetime_seconds ?? 0,
      stop_grace_period_seconds: lc.stop_grace_period_seconds ?? limits.sessionStopGraceSecDefault,
    },
    readiness: {
      type,
      ...(type === 'delay' ? { delay_ms: rd.delay_ms ?? 0 } : {}),
      ...(type === 'output' && rd.output !== undefined ? { output: rd.output } : {}),
      ...(type !== 'process' && rd.timeout_ms !== undefined ? { timeout_ms: rd.timeout_ms } : {}),
    },
    event_retention: {
      max_bytes: er.max_bytes ?? limits.sessionRetentionBytesDefault,
      max_age_seconds: er.max_age_seconds ?? limits.sessionRetentionAgeSecDefault,
    },
  }
}

/** What an Idempotency-Key is bound to: the spec as sent (key order aside). */
export function specHash(s: SessionSpecInput): string {
  const canon = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
        )
      : v
  return createHash('sha256')
    .update(JSON.stringify(canon(s)))
    .digest('hex')
}

/** The parts of a spec that the running process is made of (a change restarts it). */
export function processKey(s: SessionSpec): string {
  return JSON.stringify([s.command, s.cwd, s.env, s.io])
}

const SIGNALS: Record<string, NodeJS.Signals> = {
  HUP: 'SIGHUP',
  INT: 'SIGINT',
  QUIT: 'SIGQUIT',
  KILL: 'SIGKILL',
  USR1: 'SIGUSR1',
  USR2: 'SIGUSR2',
  TERM: 'SIGTERM',
  CONT: 'SIGCONT',
  STOP: 'SIGSTOP',
  TSTP: 'SIGTSTP',
  WINCH: 'SIGWINCH',
}

/** `TERM`, `SIGTERM`, `sigterm` or `15`, as the process gets it. */
export function parseSessionSignal(raw: string): NodeJS.Signals {
  const up = raw.trim().toUpperCase()
  const name = up.startsWith('SIG') ? up.slice(3) : up
  const byName = SIGNALS[name]
  if (byName) return byName
  const numbers: Record<string, string> = {
    '1': 'HUP',
    '2': 'INT',
    '3': 'QUIT',
    '9': 'KILL',
    '10': 'USR1',
    '12': 'USR2',
    '15': 'TERM',
    '18': 'CONT',
    '19': 'STOP',
    '20': 'TSTP',
    '28': 'WINCH',
  }
  const n = numbers[name]
  if (n) return SIGNALS[n] as NodeJS.Signals
  throw bad(`unknown signal ${JSON.stringify(raw)}: use one of ${Object.keys(SIGNALS).join(', ')}`)
}
