// A sandbox's app services (Sandbox0's `SandboxAppService`), as the wire sends them and as they
// are stored in the sandbox's config: what runs (`manual`: the user's own server; `cmd`: a
// command we supervise; `function`: an inline python handler served by our runner), on which
// port, and how the ingress proxy exposes it (routes with auth, CORS, rate limits, wake-up).
// The JSON schema (api/schemas/services.ts) checks shapes; checkServices checks what a schema
// cannot (unique ids, a port where one is needed, hashes, prefixes) and fills defaults.
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { isHopByHop } from '../../egress/http/headers.js'

export type ServiceRuntimeType = 'manual' | 'cmd' | 'function'
export type RouteAuthMode = 'none' | 'bearer' | 'header'

export interface RouteAuth {
  mode: RouteAuthMode
  bearer_token_sha256?: string
  header_name?: string
  header_value_sha256?: string
}

export interface RouteCors {
  allowed_origins?: string[]
  allowed_methods?: string[]
  allowed_headers?: string[]
  expose_headers?: string[]
  allow_credentials?: boolean
  max_age_seconds?: number
}

export interface ServiceRoute {
  id: string
  path_prefix?: string
  methods?: string[]
  rewrite_prefix?: string
  auth?: RouteAuth
  cors?: RouteCors
  rate_limit?: { rps: number; burst: number }
  timeout_seconds?: number
  resume: boolean
}

export interface ServiceFunction {
  runtime: 'python'
  handler?: string
  max_concurrency?: number
  source: { type: 'inline'; code: string }
}

export interface ServiceRuntime {
  type: ServiceRuntimeType
  command?: string[]
  cwd?: string
  env_vars?: Record<string, string>
  function?: ServiceFunction
}

export interface AppService {
  id: string
  display_name?: string
  port?: number
  runtime?: ServiceRuntime
  ingress: { public: boolean; routes?: ServiceRoute[] }
  health_check?: { path?: string }
}

/** A service id: a DNS label without `--` (the public host name splits service and sandbox there). */
const SERVICE_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const SHA256_HEX = /^[0-9a-f]{64}$/
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/

function bad(message: string): never {
  throw new S0Error('invalid_request', message)
}

/** A path prefix: absolute, normalised, no `..`, no query. */
function checkPrefix(p: string, what: string): string {
  if (!p.startsWith('/') || p.includes('?') || p.includes('#') || p.split('/').includes('..'))
    bad(`${what}: ${JSON.stringify(p)} must be an absolute path without '..', '?' or '#'`)
  return p
}

/** The port a `function` service listens on when its spec names none. */
export function functionPort(index: number): number {
  return limits.serviceFunctionPortBase + index
}

/**
 * Checks a whole service list (a PUT replaces it) and returns it with defaults filled in
 * (a function's port, a route's id-less prefix). Throws `invalid_request` naming the field.
 */
export function checkServices(list: readonly AppService[]): AppService[] {
  if (list.length > limits.servicesPerSandboxMax)
    bad(`services: at most ${limits.servicesPerSandboxMax} per sandbox`)
  const ids = new Set<string>()
  const ports = new Map<number, string>()
  return list.map((s, i) => {
    const at = `services[${i}]`
    if (!SERVICE_ID.test(s.id) || s.id.includes('--'))
      bad(`${at}.id: ${JSON.stringify(s.id)} must be a DNS label (a-z, 0-9, '-'; no '--'; up to 63)`)
    if (ids.has(s.id)) bad(`${at}.id: ${s.id} appears twice`)
    ids.add(s.id)
    const type = s.runtime?.type ?? 'manual'
    const out: AppService = structuredClone(s)
    if (type === 'cmd' && !s.runtime?.command?.length)
      bad(`${at}.runtime.command: a cmd service needs a command`)
    if (type !== 'cmd' && s.runtime?.command) bad(`${at}.runtime.command: only a cmd service has a command`)
    if (type === 'function') {
      const fn = s.runtime?.function
      if (!fn) bad(`${at}.runtime.function: a function service needs one`)
      if (Buffer.byteLength(fn.source.code) > limits.serviceFunctionCodeBytesMax)
        bad(`${at}.runtime.function.source.code: over ${limits.serviceFunctionCodeBytesMax / 1024} KiB`)
      if (fn.handler !== undefined && !/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(fn.handler))
        bad(`${at}.runtime.function.handler: ${JSON.stringify(fn.handler)} is not a python name`)
      out.port ??= functionPort(i)
    } else if (s.runtime?.function) bad(`${at}.runtime.function: only a function service has one`)
    if (out.port === undefined) bad(`${at}.port: a ${type} service needs the port it listens on`)
    const other = ports.get(out.port)
    if (other !== undefined) bad(`${at}.port: ${out.port} is also the port of service ${other}`)
    ports.set(out.port, s.id)
    if (s.runtime?.cwd !== undefined) checkPrefix(s.runtime.cwd, `${at}.runtime.cwd`)
    if (s.health_check?.path !== undefined) checkPrefix(s.health_check.path, `${at}.health_check.path`)
    const routeIds = new Set<string>()
    for (const [j, r] of (s.ingress.routes ?? []).entries()) {
      const rat = `${at}.ingress.routes[${j}]`
      if (routeIds.has(r.id)) bad(`${rat}.id: ${r.id} appears twice`)
      routeIds.add(r.id)
      if (r.path_prefix !== undefined) checkPrefix(r.path_prefix, `${rat}.path_prefix`)
      if (r.rewrite_prefix !== undefined) checkPrefix(r.rewrite_prefix, `${rat}.rewrite_prefix`)
      const a = r.auth
      if (a?.mode === 'bearer' && !SHA256_HEX.test(a.bearer_token_sha256 ?? ''))
        bad(
          `${rat}.auth.bearer_token_sha256: bearer auth needs the token's SHA-256 as 64 lowercase hex digits`,
        )
      if (a?.mode === 'header') {
        const name = (a.header_name ?? '').toLowerCase()
        // `host` routes the request to this service: it cannot also be its secret.
        if (!HEADER_NAME.test(name) || isHopByHop(name) || name === 'host')
          bad(`${rat}.auth.header_name: a header name (not host nor a hop-by-hop one) is needed`)
        if (!SHA256_HEX.test(a.header_value_sha256 ?? ''))
          bad(
            `${rat}.auth.header_value_sha256: header auth needs the value's SHA-256 as 64 lowercase hex digits`,
          )
      }
      if (r.rate_limit && r.rate_limit.burst < 1) bad(`${rat}.rate_limit.burst: at least 1`)
    }
    return out
  })
}

/** The route of a service that takes a request (longest prefix first; no routes: everything). */
export function matchRoute(service: AppService, path: string): ServiceRoute | undefined {
  const routes = service.ingress.routes ?? []
  if (routes.length === 0) return { id: 'default', resume: true }
  let best: ServiceRoute | undefined
  let bestLen = -1
  for (const r of routes) {
    const p = r.path_prefix ?? '/'
    if (!prefixMatches(path, p)) continue
    if (p.length > bestLen) {
      best = r
      bestLen = p.length
    }
  }
  return best
}

/** `/api` matches `/api`, `/api/x` and `/api?q`, not `/apix`. */
export function prefixMatches(path: string, prefix: string): boolean {
  if (prefix === '/' || prefix === '') return true
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix
  return path === p || path.startsWith(p + '/') || path.startsWith(p + '?')
}

/** The path the service sees: the route's prefix replaced by its rewrite_prefix. */
export function rewritePath(route: ServiceRoute, path: string): string {
  if (route.rewrite_prefix === undefined) return path
  const prefix = (route.path_prefix ?? '/').replace(/\/$/, '')
  const rest = path.slice(prefix.length)
  const target = route.rewrite_prefix.replace(/\/$/, '')
  const joined = target + (rest.startsWith('/') || rest.startsWith('?') || rest === '' ? rest : '/' + rest)
  return joined === '' || joined.startsWith('?') ? '/' + joined : joined
}
