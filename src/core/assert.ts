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

/** Whether `err` is a bug (a failed assertion) rather than an expected failure. */
export function isBug(err: unknown): err is AssertionError {
  return err instanceof AssertionError
}

/**
 * For the places that would otherwise answer a bug as an error or absorb it (a request's error
 * handler, a FUSE handler's callback, a background loop that logs and goes on): anything but a
 * bug is left to the caller; a bug is logged with its stack (when a logger is given), then thrown
 * from a fresh tick, where no promise chain can catch it and `--unhandled-rejections=warn` cannot
 * soften it. Node prints it and exits with status 1.
 */
export function crashOnBug(err: unknown, log?: Logger, fields: Record<string, unknown> = {}): void {
  if (!isBug(err)) return
  log?.error('bug: assertion failed; crashing', { ...fields, err })
  process.nextTick(() => {
    throw err
  })
}
