// Domain names and the patterns a policy matches them with: an exact name, or `*.suffix`, which
// (as upstream Sandbox0 does) matches the suffix itself and every name below it at any depth.
// Names are compared lowercased and without a trailing dot.
import { isIpLiteral } from './ip.js'

/** RFC 1035: 253 characters in text form (255 octets on the wire). */
export const DOMAIN_NAME_CHARS_MAX = 253
const LABEL_CHARS_MAX = 63
// Letters, digits, hyphen; underscore too, as service names (_acme-challenge) have them.
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/

/** A name as flows and DNS carry it, made comparable: lowercased, without one trailing dot. */
export function normalizeName(name: string): string {
  let n = name
  if (n.endsWith('.')) n = n.slice(0, -1)
  // Most names are already lowercase; skip the copy then.
  return /[A-Z]/.test(n) ? n.toLowerCase() : n
}

/** Why `name` (already lowercase, no trailing dot) is not a host name, or undefined. */
export function hostNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty'
  if (name.length > DOMAIN_NAME_CHARS_MAX) return `is longer than ${DOMAIN_NAME_CHARS_MAX} characters`
  for (const label of name.split('.')) {
    if (label.length === 0) return 'has an empty label'
    if (label.length > LABEL_CHARS_MAX) return `has a label longer than ${LABEL_CHARS_MAX} characters`
    if (!LABEL.test(label)) return 'has a label with characters other than letters, digits, - and _'
  }
  return undefined
}

export type DomainPattern = { kind: 'exact'; name: string } | { kind: 'suffix'; suffix: string }

/**
 * A policy's domain entry, normalized (lowercase, no trailing dot), or why it is not one. The
 * text is refused rather than guessed at when it carries a scheme, port, path or address.
 */
export function parseDomainPattern(
  text: string,
): { ok: true; normalized: string; pattern: DomainPattern } | { ok: false; why: string } {
  const t = normalizeName(text)
  if (/[\s]/.test(t)) return { ok: false, why: 'has white space' }
  if (t.includes('://')) return { ok: false, why: 'has a scheme (write the host name only)' }
  if (t.includes('/')) return { ok: false, why: 'has a path (write the host name only)' }
  if (isIpLiteral(t) || isIpLiteral(t.replace(/^\[|\]$/g, ''))) {
    return { ok: false, why: 'is an IP address (use cidrs)' }
  }
  if (t.includes(':')) return { ok: false, why: 'has a port (use ports)' }
  if (t === '*')
    return { ok: false, why: 'is a bare wildcard (use mode allow-all or a rule without domains)' }
  const wildcard = t.startsWith('*.')
  const name = wildcard ? t.slice(2) : t
  if (name.includes('*'))
    return { ok: false, why: 'may hold a wildcard only as its first label, as *.suffix' }
  const problem = hostNameProblem(name)
  if (problem !== undefined) return { ok: false, why: problem }
  return wildcard
    ? { ok: true, normalized: t, pattern: { kind: 'suffix', suffix: name } }
    : { ok: true, normalized: t, pattern: { kind: 'exact', name } }
}

/** Exact names in one set, suffixes in another: a lookup costs one probe per label of the name. */
export class DomainSet {
  private readonly exact = new Set<string>()
  private readonly suffixes = new Set<string>()

  constructor(patterns: readonly DomainPattern[]) {
    for (const p of patterns) {
      if (p.kind === 'exact') this.exact.add(p.name)
      else this.suffixes.add(p.suffix)
    }
  }

  get size(): number {
    return this.exact.size + this.suffixes.size
  }

  /** `name` must be normalized (normalizeName). */
  has(name: string): boolean {
    if (name.length === 0) return false
    if (this.exact.has(name)) return true
    if (this.suffixes.size === 0) return false
    let at = 0
    while (at !== -1) {
      if (this.suffixes.has(at === 0 ? name : name.slice(at))) return true
      const dot = name.indexOf('.', at)
      at = dot === -1 ? -1 : dot + 1
    }
    return false
  }

  /** Any of `names` (normalized). */
  hasAny(names: readonly string[]): boolean {
    for (const n of names) if (this.has(n)) return true
    return false
  }
}

/** Each suffix of `name` that a `*.suffix` pattern could name: the name itself, then each parent. */
export function nameSuffixes(name: string, visit: (suffix: string) => void): void {
  let at = 0
  while (at !== -1 && at < name.length) {
    visit(at === 0 ? name : name.slice(at))
    const dot = name.indexOf('.', at)
    at = dot === -1 ? -1 : dot + 1
  }
}
