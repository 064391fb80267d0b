// Invariants: a failed assert is a bug, so it crashes loudly instead of returning a typed error.

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
 * For catch-alls (a request's error handler, a background loop that logs and goes on): a bug
 * must not be absorbed there. It is thrown again outside any promise chain, where it is an
 * uncaught exception: Node prints its stack and the process exits.
 */
export function crashOnBug(err: unknown): void {
  if (!isBug(err)) return
  process.nextTick(() => {
    throw err
  })
}
