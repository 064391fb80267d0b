// Timestamps on the wire: RFC 3339 in UTC. A required timestamp that is not set carries the zero
// value (Go's zero time, which the upstream contract defines as "not set"), never null: strict
// clients (the Python SDK) refuse null there.
export const ZERO_TIME = '0001-01-01T00:00:00Z'

export function iso(d: Date): string {
  return d.toISOString()
}

/** A required timestamp that may be unset. */
export function isoOrZero(d: Date | null): string {
  return d ? d.toISOString() : ZERO_TIME
}

/** An optional timestamp: the key is omitted when unset. */
export function isoIfSet<K extends string>(key: K, d: Date | null | undefined): { [P in K]?: string } {
  return (d ? { [key]: d.toISOString() } : {}) as { [P in K]?: string }
}
