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
