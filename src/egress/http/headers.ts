// Header and request-target handling for the proxy's HTTP layer: hop-by-hop fields (RFC 9110
// §7.6.1), the request target a policy sees (RFC 3986 normalised, so `/a/../b` cannot slip past a
// path rule), placeholder substitution, and the bodies of the answers the proxy gives itself.

/** Header fields in order, names lower case; a name may repeat. */
export type HeaderList = Array<[name: string, value: string]>

/** Fields that describe one connection, never forwarded (RFC 9110 §7.6.1, RFC 9113 §8.2.2). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

/** Pairs from a flat raw list (`[name, value, name, value]`), names lower-cased, pseudo-fields dropped. */
export function fromRaw(raw: readonly string[]): HeaderList {
  const out: HeaderList = []
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase()
    if (name.charCodeAt(0) !== 58 /* ':' */) out.push([name, raw[i + 1] as string])
  }
  return out
}

/** Pairs from a Node header object (h2 responses), pseudo-fields dropped. */
export function fromObject(headers: Record<string, string | string[] | number | undefined>): HeaderList {
  const out: HeaderList = []
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.charCodeAt(0) === 58) continue
    if (Array.isArray(value)) for (const v of value) out.push([name, v])
    else out.push([name, String(value)])
  }
  return out
}

/** Whether a field describes one connection (never forwarded, nor usable as an end-to-end credential). */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name.toLowerCase())
}

/** The end-to-end fields of a message: hop-by-hop ones, those its `Connection` names, and `host` go. */
export function endToEnd(headers: HeaderList): HeaderList {
  const named = new Set<string>()
  for (const [name, value] of headers) {
    if (name !== 'connection' && name !== 'proxy-connection') continue
    for (const token of value.split(',')) named.add(token.trim().toLowerCase())
  }
  return headers.filter(([name]) => !(HOP_BY_HOP.has(name) || named.has(name) || name === 'host'))
}

/** Whether the sandbox's `TE` asks for trailers (gRPC over h2 needs `te: trailers` kept). */
export function wantsTrailers(headers: HeaderList): boolean {
  return headers.some(
    ([n, v]) => n === 'te' && v.split(',').some((t) => t.trim().toLowerCase() === 'trailers'),
  )
}

/**
 * The fields forwarded for a sandbox's request: end-to-end only, framing left to the sender
 * (`content-length` is set again for the body actually sent; `expect` was answered here),
 * placeholders swapped, then the verdict's fields replacing the sandbox's own.
 */
export function requestHeaders(
  raw: HeaderList,
  verdict: { setHeaders?: Record<string, string>; substitutions?: readonly Substitution[] },
): HeaderList {
  const fields = endToEnd(raw).filter(([n]) => n !== 'content-length' && n !== 'expect')
  return withSet(substituteHeaders(fields, verdict.substitutions ?? []), verdict.setHeaders)
}

export function first(headers: HeaderList, name: string): string | undefined {
  for (const [n, v] of headers) if (n === name) return v
  return undefined
}

/** The header record a policy hook sees (repeated fields as arrays, `cookie` joined). */
export function toRecord(headers: HeaderList): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of headers) {
    const had = out[name]
    if (had === undefined) out[name] = value
    else if (name === 'cookie') out[name] = `${had as string}; ${value}`
    else out[name] = Array.isArray(had) ? [...had, value] : [had, value]
  }
  return out
}

/** Replaces every field named in `set` (any case) by the one value given. */
export function withSet(headers: HeaderList, set: Record<string, string> | undefined): HeaderList {
  if (set === undefined) return headers
  const names = new Map(Object.entries(set).map(([n, v]) => [n.toLowerCase(), v]))
  const out = headers.filter(([name]) => !names.has(name))
  for (const [name, value] of names) out.push([name, value])
  return out
}

/** Flat `[name, value, ...]` for Node's HTTP/1.1 APIs. */
export function toFlat(headers: HeaderList): string[] {
  const out: string[] = []
  for (const [name, value] of headers) out.push(name, value)
  return out
}

/** A Node h2 header object; `cookie` joined per RFC 9113 §8.2.3 is left split (h2 allows it). */
export function toH2Object(headers: HeaderList): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of headers) {
    const had = out[name]
    if (had === undefined) out[name] = value
    else out[name] = Array.isArray(had) ? [...had, value] : [had, value]
  }
  return out
}

/** HTTP/1.1 carries one `cookie` field: h2's split crumbs are joined (RFC 9113 §8.2.3). */
export function joinCookies(headers: HeaderList): HeaderList {
  const crumbs = headers.filter(([n]) => n === 'cookie').map(([, v]) => v)
  if (crumbs.length <= 1) return headers
  const out = headers.filter(([n]) => n !== 'cookie')
  out.push(['cookie', crumbs.join('; ')])
  return out
}

// ---- request target -----------------------------------------------------------------------------

export interface Target {
  /** Host and port as the request named them (absolute-form URI, else `Host` / `:authority`). */
  authority: string
  /** Normalised path: unreserved escapes decoded, other escapes upper-cased, dot segments removed. */
  path: string
  /** The query without its `?` (empty when there is none). */
  query: string
}

/** `undefined` for a target the proxy refuses (400): no authority, or a path not starting `/`. */
export function parseTarget(url: string, hostHeader: string | undefined, method: string): Target | undefined {
  let authority = hostHeader
  let rest = url
  const scheme = /^https?:\/\//i.exec(url)
  if (scheme !== null) {
    // absolute-form (a client that believes it talks to a forward proxy): its authority wins.
    const afterScheme = url.slice(scheme[0].length)
    const slash = afterScheme.search(/[/?]/)
    authority = slash < 0 ? afterScheme : afterScheme.slice(0, slash)
    rest = slash < 0 ? '/' : afterScheme.slice(slash)
    if (rest.startsWith('?')) rest = '/' + rest
  }
  if (authority === undefined || authority === '' || /[\s@/\\]/.test(authority)) return undefined
  const q = rest.indexOf('?')
  const rawPath = q < 0 ? rest : rest.slice(0, q)
  const query = q < 0 ? '' : rest.slice(q + 1)
  if (rawPath === '*' && method === 'OPTIONS') return { authority: authority.toLowerCase(), path: '*', query }
  if (!rawPath.startsWith('/')) return undefined
  return { authority: authority.toLowerCase(), path: normalisePath(rawPath), query }
}

/** RFC 3986 §6.2.2: percent-encoding normalisation, then §5.2.4 remove_dot_segments. */
export function normalisePath(path: string): string {
  const decoded = path.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16))
    return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${hex.toUpperCase()}`
  })
  const out: string[] = []
  const segments = decoded.split('/')
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string
    const last = i === segments.length - 1
    if (s === '.') {
      if (last) out.push('')
    } else if (s === '..') {
      out.pop()
      if (last) out.push('')
    } else {
      out.push(s)
    }
  }
  return '/' + out.join('/')
}

export function withQuery(path: string, query: string): string {
  return query === '' ? path : `${path}?${query}`
}

// ---- placeholder substitution -------------------------------------------------------------------

export interface Substitution {
  placeholder: string
  value: string
  locations: ReadonlyArray<'header' | 'query' | 'body'>
}

export function substituteHeaders(headers: HeaderList, subs: readonly Substitution[]): HeaderList {
  const active = subs.filter((s) => s.locations.includes('header') && s.placeholder !== '')
  if (active.length === 0) return headers
  return headers.map(([name, value]) => {
    let v = value
    for (const s of active) if (v.includes(s.placeholder)) v = v.replaceAll(s.placeholder, s.value)
    return [name, v]
  })
}

/** In a query the secret is percent-encoded, so it arrives as the value the sandbox meant. */
export function substituteQuery(query: string, subs: readonly Substitution[]): string {
  let q = query
  for (const s of subs) {
    if (s.locations.includes('query') && s.placeholder !== '' && q.includes(s.placeholder))
      q = q.replaceAll(s.placeholder, encodeURIComponent(s.value))
  }
  return q
}

export function needsBodySubstitution(subs: readonly Substitution[] | undefined): boolean {
  return subs?.some((s) => s.locations.includes('body') && s.placeholder !== '') ?? false
}

/** Every occurrence of each placeholder in a buffered body, byte for byte. */
export function substituteBody(body: Buffer, subs: readonly Substitution[]): Buffer {
  let out = body
  for (const s of subs) {
    if (!s.locations.includes('body') || s.placeholder === '') continue
    const needle = Buffer.from(s.placeholder, 'utf8')
    if (out.indexOf(needle) < 0) continue
    const value = Buffer.from(s.value, 'utf8')
    const parts: Buffer[] = []
    let from = 0
    for (let i = out.indexOf(needle); i >= 0; i = out.indexOf(needle, from)) {
      parts.push(out.subarray(from, i), value)
      from = i + needle.length
    }
    parts.push(out.subarray(from))
    out = Buffer.concat(parts)
  }
  return out
}

// ---- the proxy's own answers ----------------------------------------------------------------------

export function jsonBody(fields: Record<string, unknown>): Buffer {
  return Buffer.from(JSON.stringify(fields) + '\n', 'utf8')
}
