// Structured logging: one JSON object per line on stderr, levels filtered at the call site.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'
const LEVEL_ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  child(fields: Record<string, unknown>): Logger
  readonly level: LogLevel
}

export function isLogLevel(value: string): value is LogLevel {
  return value in LEVEL_ORDER
}

export function createLogger(
  level: LogLevel = 'info',
  bound: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const threshold = LEVEL_ORDER[level]
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (LEVEL_ORDER[lvl] < threshold) return
    const record: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, msg, ...bound }
    if (fields) {
      for (const [k, v] of Object.entries(fields)) record[k] = v instanceof Error ? serializeError(v) : v
    }
    write(JSON.stringify(record) + '\n')
  }
  return {
    level,
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(level, { ...bound, ...fields }, write),
  }
}

function serializeError(err: Error): Record<string, unknown> {
  const out: Record<string, unknown> = { name: err.name, message: err.message }
  const code = (err as { code?: unknown }).code
  if (code !== undefined) out['code'] = code
  if (err.stack) out['stack'] = err.stack
  return out
}

export const silentLogger: Logger = createLogger('silent')
