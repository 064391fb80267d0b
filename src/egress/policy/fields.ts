// Reading untrusted JSON with field paths: every refusal is `bad_request` naming the field, as
// `network.egress.trafficRules[2].cidrs[0]: "10.0.0.0/33" is not a CIDR`. null counts as absent.
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'

export function refuse(path: string, why: string): never {
  throw new S0Error('bad_request', `${path}: ${why}`)
}

/** A value quoted for a message: JSON, cut short. */
export function shown(v: unknown): string {
  let s: string
  try {
    s = JSON.stringify(v) ?? String(v)
  } catch {
    s = String(v)
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

export type Json = Record<string, unknown>

/** An object with only the given keys (an unknown key is refused: a typo must not be ignored). */
export function object(v: unknown, path: string, keys: readonly string[]): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    refuse(path, `must be an object, not ${shown(v)}`)
  for (const k of Object.keys(v)) {
    if (!keys.includes(k)) refuse(`${path}.${k}`, `is not a field (known: ${keys.join(', ')})`)
  }
  return v as Json
}

export function optionalObject(
  o: Json,
  key: string,
  path: string,
  keys: readonly string[],
): Json | undefined {
  const v = o[key]
  return v === undefined || v === null ? undefined : object(v, `${path}.${key}`, keys)
}

export function string(
  v: unknown,
  path: string,
  opts: { nonEmpty?: boolean; charsMax?: number } = {},
): string {
  if (typeof v !== 'string') refuse(path, `must be a string, not ${shown(v)}`)
  if (opts.nonEmpty && v.trim().length === 0) refuse(path, 'must not be empty')
  const max: number = opts.charsMax ?? limits.egressPolicyStringCharsMax
  if (v.length > max) refuse(path, `is longer than ${max} characters`)
  // Control characters have no place in a policy and would forge lines in logs and audits.
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(v)) refuse(path, `has a control character: ${shown(v)}`)
  return v
}

export function optionalString(
  o: Json,
  key: string,
  path: string,
  opts: { nonEmpty?: boolean; charsMax?: number } = {},
): string | undefined {
  const v = o[key]
  return v === undefined || v === null ? undefined : string(v, `${path}.${key}`, opts)
}

export function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    refuse(path, `${shown(v)} is not one of ${allowed.join(', ')}`)
  }
  return v as T
}

export function optionalOneOf<T extends string>(
  o: Json,
  key: string,
  path: string,
  allowed: readonly T[],
): T | undefined {
  const v = o[key]
  return v === undefined || v === null ? undefined : oneOf(v, `${path}.${key}`, allowed)
}

export function optionalBoolean(o: Json, key: string, path: string): boolean | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') refuse(`${path}.${key}`, `must be true or false, not ${shown(v)}`)
  return v
}

export function integer(v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    refuse(path, `${shown(v)} is not an integer from ${min} to ${max}`)
  }
  return v
}

/** An optional list, each item read by `item` with its own path; bounded. */
export function optionalList<T>(
  o: Json,
  key: string,
  path: string,
  item: (v: unknown, path: string) => T,
  entriesMax: number = limits.egressListEntriesMax,
): T[] | undefined {
  const v = o[key]
  if (v === undefined || v === null) return undefined
  const p = `${path}.${key}`
  if (!Array.isArray(v)) refuse(p, `must be a list, not ${shown(v)}`)
  if (v.length > entriesMax) refuse(p, `has ${v.length} entries; at most ${entriesMax}`)
  return v.map((x, i) => item(x, `${p}[${i}]`))
}

/** Keys of `o` whose value is undefined dropped (null was already treated as absent). */
export function compact<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k]
  return o
}
