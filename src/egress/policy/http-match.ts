// HTTP request matching shared by protocolRules and credentialRules: request paths made
// comparable, and the `httpMatch` predicate. A path is matched in every form a server might act
// on (percent-encoding, dot segments, doubled slashes, encoded slashes, `;` parameters), so
// `/admin` cannot be reached as `/x/../admin`, `//admin`, `/%61dmin` or `/admin;x`: a deny holds
// if any form is denied, and a positive match holds only if every form matches.
import type { HTTPMatch, HTTPValueMatch } from './types.js'

const UNRESERVED = /[A-Za-z0-9\-._~]/

/** Percent-escapes of unreserved characters decoded, other escapes' hex uppercased (RFC 3986 6.2.2). */
function normalizeEscapes(p: string): string {
  if (!p.includes('%')) return p
  return p.replace(/%([0-9A-Fa-f]{2})/g, (all, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16))
    return UNRESERVED.test(c) ? c : `%${hex.toUpperCase()}`
  })
}

/** RFC 3986 5.2.4: `.` and `..` segments resolved; never above the root. */
export function removeDotSegments(p: string): string {
  if (!p.includes('.')) return p
  const out: string[] = []
  const segments = p.split('/')
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as string
    const last = i === segments.length - 1
    if (s === '.' || s === '..') {
      if (s === '..' && out.length > 1) out.pop()
      if (last) out.push('')
      continue
    }
    out.push(s)
  }
  const joined = out.join('/')
  return joined.startsWith('/') ? joined : `/${joined}`
}

/** The path of a request target: origin-form, absolute-form (`http://host/p`) or `*`. */
export function targetPath(target: string): string {
  let t = target
  const cut = t.search(/[?#]/)
  if (cut !== -1) t = t.slice(0, cut)
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(t)
  if (scheme) t = t.slice(scheme[0].length)
  if (t === '*') return '*'
  if (t === '') return '/'
  return t.startsWith('/') ? t : `/${t}`
}

/** The canonical form a policy's own paths are written in (escapes normalized, dots resolved). */
export function canonicalPath(path: string): string {
  if (path === '*') return path
  return removeDotSegments(normalizeEscapes(path))
}

/** Every form of a request target's path a server may act on; the first is the canonical one. */
export function pathForms(target: string): string[] {
  const path = targetPath(target)
  if (path === '*') return [path]
  const canonical = canonicalPath(path)
  const merged = canonical.replace(/\/{2,}/g, '/')
  const slashes = removeDotSegments(
    merged
      .replace(/%2F/g, '/')
      .replace(/%5C/g, '/')
      .replace(/\\/g, '/')
      .replace(/\/{2,}/g, '/'),
  )
  const noParams = slashes.replace(/;[^/]*/g, '')
  const forms = [canonical]
  for (const f of [merged, slashes, noParams]) if (!forms.includes(f)) forms.push(f)
  return forms
}

export interface PathList {
  exact: ReadonlySet<string>
  prefixes: readonly string[]
}

export function pathList(exact: readonly string[] = [], prefixes: readonly string[] = []): PathList {
  return { exact: new Set(exact.map(canonicalPath)), prefixes: prefixes.map(canonicalPath) }
}

export function pathListEmpty(l: PathList): boolean {
  return l.exact.size === 0 && l.prefixes.length === 0
}

/** One form against one list: an exact path or a plain string prefix (`/api/` for a segment). */
export function pathInList(form: string, l: PathList): boolean {
  if (l.exact.has(form)) return true
  for (const p of l.prefixes) if (form.startsWith(p)) return true
  return false
}

export interface ValueMatch {
  /** Header names lowercased; query names as given (they are case-sensitive). */
  readonly name: string
  readonly values: readonly string[]
  /** true: must be there (with one of `values` when given); false: must be absent. */
  readonly present: boolean
}

export interface CompiledHttpMatch {
  readonly methods: ReadonlySet<string> | undefined
  readonly paths: PathList | undefined
  readonly query: readonly ValueMatch[]
  readonly headers: readonly ValueMatch[]
}

function valueMatch(m: HTTPValueMatch, lowerName: boolean): ValueMatch {
  const values = m.values ?? []
  return {
    name: lowerName ? m.name.toLowerCase() : m.name,
    values,
    present: values.length > 0 ? true : (m.present ?? true),
  }
}

/** `httpMatch` of a checked policy, compiled. */
export function compileHttpMatch(m: HTTPMatch): CompiledHttpMatch {
  const methods = m.methods ?? []
  const paths = pathList(m.paths, m.pathPrefixes)
  return {
    methods: methods.length > 0 ? new Set(methods.map((x) => x.toUpperCase())) : undefined,
    paths: pathListEmpty(paths) ? undefined : paths,
    query: (m.query ?? []).map((q) => valueMatch(q, false)),
    headers: (m.headers ?? []).map((h) => valueMatch(h, true)),
  }
}

/** A request as the proxy sees it. `path` is the request target (it may carry `?query`). */
export interface HttpRequestView {
  method: string
  path: string
  /** The raw query string without `?`; taken from `path` when absent. */
  query?: string
  /** Node's IncomingHttpHeaders shape: names lowercase. */
  headers?: Readonly<Record<string, string | readonly string[] | undefined>>
}

/**
 * Whether a request matches `httpMatch` (undefined matches every request). Methods: any of them
 * (case-insensitive). Paths: any of `paths` (exact) or `pathPrefixes`, in every form of the path.
 * Query and headers: every entry must hold; an entry with values wants one of them among the
 * request's values, one without values wants the name there (`present: false`: absent).
 */
export function matchesHttp(m: CompiledHttpMatch | undefined, req: HttpRequestView): boolean {
  if (m === undefined) return true
  if (m.methods !== undefined && !m.methods.has(req.method.toUpperCase())) return false
  if (m.paths !== undefined) {
    const paths = m.paths
    if (!pathForms(req.path).every((f) => pathInList(f, paths))) return false
  }
  if (m.query.length > 0) {
    const q = new URLSearchParams(req.query ?? queryOf(req.path))
    for (const vm of m.query) if (!valueHolds(vm, q.getAll(vm.name))) return false
  }
  for (const vm of m.headers) if (!valueHolds(vm, headerValues(req.headers, vm.name))) return false
  return true
}

function queryOf(target: string): string {
  const q = target.indexOf('?')
  if (q === -1) return ''
  const hash = target.indexOf('#', q)
  return target.slice(q + 1, hash === -1 ? undefined : hash)
}

function headerValues(headers: HttpRequestView['headers'], name: string): readonly string[] {
  const v = headers?.[name]
  if (v === undefined) return []
  return typeof v === 'string' ? [v] : v
}

function valueHolds(vm: ValueMatch, actual: readonly string[]): boolean {
  if (!vm.present) return actual.length === 0
  if (actual.length === 0) return false
  if (vm.values.length === 0) return true
  for (const a of actual) if (vm.values.includes(a.trim())) return true
  return false
}
