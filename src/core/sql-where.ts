// A WHERE clause built from optional filters, with numbered parameters (`?` in each condition
// becomes the next `$n`): the list queries of events and logs share it.
export class SqlWhere {
  readonly params: unknown[]
  private readonly parts: string[]

  /** `parts` use `$1`… for `params`, which they number. */
  constructor(parts: string[], params: unknown[]) {
    this.parts = [...parts]
    this.params = [...params]
  }

  /** Adds `condition` (one `?`, for `value`) when `value` is defined. */
  add(condition: string, value: unknown): this {
    if (value === undefined) return this
    this.params.push(value)
    this.parts.push(condition.replace('?', `$${this.params.length}`))
    return this
  }

  /** The placeholder of one more parameter (a LIMIT). */
  param(value: unknown): string {
    this.params.push(value)
    return `$${this.params.length}`
  }

  get text(): string {
    return this.parts.join(' AND ')
  }
}
