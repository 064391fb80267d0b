// Invariants: a failed assert is a bug, so it crashes loudly instead of returning a typed error.
import type { Logger } from './log.js'

export class AssertionError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AssertionError'
  }
}

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionError(message)
}

export function unreachable(value: never): never {
  throw new AssertionError(`unreachable: ${String(value)}`)
}

/**
 * Crashes the process with a bug caught where it would otherwise be answered as an error (a FUSE
 * handler's callback, say): logs it with its stack, then throws it from a fresh tick, where no
 * promise chain can catch it and `--unhandled-rejections=warn` cannot soften it. Node prints it
 * and exits with status 1.
 */
export function crashOnBug(err: AssertionError, log: Logger, fields: Record<string, unknown> = {}): void {
  log.error('bug: assertion failed; crashing', { ...fields, err })
  process.nextTick(() => {
    throw err
  })
}
