// checkPolicy: the authority on what a SandboxNetworkPolicy may say (the API's JSON schema only
// shapes it; templates have none). Everything is checked before anything is used, so a refused
// policy changes nothing. Refusals are `bad_request` naming the field; the result is a normalized
// copy (unknown fields refused, null dropped, domains lowercased, port protocols lowercased).
// The rules follow upstream Sandbox0's validation (manager/.../network_policy_validation.go),
// stricter where it leaves a hole: malformed domains, sshProxy without knownHosts.
import { limits } from '../../core/limits.js'
import {
  compact,
  integer,
  object,
  oneOf,
  optionalBoolean,
  optionalList,
  optionalObject,
  optionalOneOf,
  optionalString,
  refuse,
  shown,
  string,
  type Json,
} from './fields.js'
import { hostNameProblem, parseDomainPattern } from './names.js'
import { isIpLiteral, parseCidr, parseIpv6 } from './ip.js'
import {
  APP_PROTOCOLS,
  AUTH_PROTOCOLS,
  NETWORK_MODES,
  PROJECTION_TYPES,
  TLS_MODES,
  type CredentialBinding,
  type EgressCredentialRule,
  type EgressProxyPolicy,
  type HTTPMatch,
  type HTTPValueMatch,
  type NetworkEgressPolicy,
  type PortSpec,
  type ProjectionSpec,
  type ProtocolRule,
  type SandboxNetworkPolicy,
  type TrafficRule,
} from './types.js'

/** The methods upstream accepts in rules (RFC 9110 plus PATCH). */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE']
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const LEGACY_LISTS = [
  'allowedCidrs',
  'allowedDomains',
  'allowedPorts',
  'deniedDomains',
  'deniedCidrs',
  'deniedPorts',
] as const

export function checkPolicy(value: unknown, at = 'network'): SandboxNetworkPolicy {
  const o = object(value, at, ['mode', 'egress', 'credentialBindings'])
  if (o['mode'] === undefined || o['mode'] === null)
    refuse(`${at}.mode`, 'is required (allow-all or block-all)')
  const mode = oneOf(o['mode'], `${at}.mode`, NETWORK_MODES)
  const bindings = optionalList(o, 'credentialBindings', at, checkBinding, limits.egressCredentialBindingsMax)
  const projections = new Map<string, ProjectionSpec['type']>()
  bindings?.forEach((b, i) => {
    if (projections.has(b.ref)) refuse(`${at}.credentialBindings[${i}].ref`, `${shown(b.ref)} is used twice`)
    projections.set(b.ref, b.projection.type)
  })
  const egress =
    o['egress'] === undefined || o['egress'] === null
      ? undefined
      : checkEgress(o['egress'], `${at}.egress`, projections)
  return compact({ mode, egress, credentialBindings: bindings })
}

function checkEgress(v: unknown, path: string, projections: Map<string, string>): NetworkEgressPolicy {
  const o = object(v, path, [...LEGACY_LISTS, 'trafficRules', 'protocolRules', 'credentialRules', 'proxy'])
  const e: NetworkEgressPolicy = {
    allowedCidrs: optionalList(o, 'allowedCidrs', path, checkCidr),
    allowedDomains: optionalList(o, 'allowedDomains', path, checkDomain),
    allowedPorts: optionalList(o, 'allowedPorts', path, checkPort),
    deniedDomains: optionalList(o, 'deniedDomains', path, checkDomain),
    deniedCidrs: optionalList(o, 'deniedCidrs', path, checkCidr),
    deniedPorts: optionalList(o, 'deniedPorts', path, checkPort),
    trafficRules: optionalList(o, 'trafficRules', path, checkTrafficRule, limits.egressRulesMax),
    protocolRules: optionalList(o, 'protocolRules', path, checkProtocolRule, limits.egressRulesMax),
    credentialRules: optionalList(
      o,
      'credentialRules',
      path,
      (x, p) => checkCredentialRule(x, p, projections),
      limits.egressRulesMax,
    ),
    proxy:
      o['proxy'] === undefined || o['proxy'] === null ? undefined : checkProxy(o['proxy'], `${path}.proxy`),
  }
  const legacy = LEGACY_LISTS.filter((k) => (e[k]?.length ?? 0) > 0)
  if ((e.trafficRules?.length ?? 0) > 0 && legacy.length > 0) {
    refuse(
      path,
      `egress.trafficRules may not be combined with the legacy allowed*/denied* lists (this policy also has ${legacy.join(', ')})`,
    )
  }
  uniqueNames(e.trafficRules, `${path}.trafficRules`)
  uniqueNames(e.protocolRules, `${path}.protocolRules`)
  uniqueNames(e.credentialRules, `${path}.credentialRules`)
  const ref = e.proxy?.credentialRef
  if (ref !== undefined) {
    const type = projections.get(ref)
    if (type === undefined)
      refuse(`${path}.proxy.credentialRef`, `${shown(ref)} names no credentialBindings[].ref`)
    if (type !== 'username_password') {
      refuse(
        `${path}.proxy.credentialRef`,
        `${shown(ref)} must have a username_password projection, not ${type}`,
      )
    }
  }
  return compact(e)
}

function uniqueNames(rules: ReadonlyArray<{ name?: string }> | undefined, path: string): void {
  const seen = new Set<string>()
  rules?.forEach((r, i) => {
    if (r.name === undefined || r.name === '') return
    if (seen.has(r.name)) refuse(`${path}[${i}].name`, `${shown(r.name)} is used by an earlier rule`)
    seen.add(r.name)
  })
}

function checkCidr(v: unknown, path: string): string {
  const s = string(v, path)
  if (parseCidr(s) === undefined) {
    const hint = isIpLiteral(s) ? `; for one address write ${s}/${s.includes(':') ? 128 : 32}` : ''
    refuse(path, `${shown(v)} is not a CIDR (address/prefix-length, IPv4 or IPv6)${hint}`)
  }
  return s
}

function checkDomain(v: unknown, path: string): string {
  const s = string(v, path)
  const d = parseDomainPattern(s)
  if (!d.ok) refuse(path, `${shown(v)} is not a domain name or *.suffix: it ${d.why}`)
  return d.normalized
}

function checkPort(v: unknown, path: string, tcpOnly = false): PortSpec {
  const o = object(v, path, ['port', 'protocol', 'endPort'])
  if (o['port'] === undefined || o['port'] === null) refuse(`${path}.port`, 'is required')
  const port = integer(o['port'], `${path}.port`, 1, 65_535)
  const end = o['endPort']
  const endPort = end === undefined || end === null ? undefined : integer(end, `${path}.endPort`, 1, 65_535)
  if (endPort !== undefined && endPort < port) refuse(`${path}.endPort`, `${endPort} is below port ${port}`)
  const raw = optionalString(o, 'protocol', path)
  const protocol = raw === undefined || raw === '' ? undefined : raw.toLowerCase()
  if (protocol !== undefined && protocol !== 'tcp' && (tcpOnly || protocol !== 'udp')) {
    refuse(`${path}.protocol`, `${shown(raw)} is not ${tcpOnly ? 'tcp' : 'tcp or udp'}`)
  }
  return compact({ port, protocol, endPort })
}

function checkTcpPort(v: unknown, path: string): PortSpec {
  return checkPort(v, path, true)
}

function checkTrafficRule(v: unknown, path: string): TrafficRule {
  const o = object(v, path, ['name', 'action', 'cidrs', 'domains', 'ports', 'appProtocols'])
  const r: TrafficRule = {
    name: optionalString(o, 'name', path),
    action: oneOf(o['action'], `${path}.action`, ['allow', 'deny'] as const),
    cidrs: optionalList(o, 'cidrs', path, checkCidr),
    domains: optionalList(o, 'domains', path, checkDomain),
    ports: optionalList(o, 'ports', path, checkPort),
    appProtocols: optionalList(o, 'appProtocols', path, (x, p) => oneOf(x, p, APP_PROTOCOLS)),
  }
  if (!r.cidrs?.length && !r.domains?.length && !r.ports?.length && !r.appProtocols?.length) {
    refuse(path, 'matches nothing: give cidrs, domains, ports or appProtocols')
  }
  return compact(r)
}

function checkMethod(v: unknown, path: string): string {
  const s = string(v, path)
  if (!HTTP_METHODS.includes(s.toUpperCase()))
    refuse(path, `${shown(v)} is not one of ${HTTP_METHODS.join(', ')}`)
  return s
}

function checkPath(v: unknown, path: string): string {
  const s = string(v, path)
  if (!s.startsWith('/')) refuse(path, `${shown(v)} must start with /`)
  return s
}

/** An optional list whose entries are unique (compared as `key` makes them). */
function uniqueList(
  o: Json,
  key: string,
  path: string,
  item: (v: unknown, p: string) => string,
  norm: (s: string) => string = (s) => s,
): string[] | undefined {
  const list = optionalList(o, key, path, item)
  const seen = new Set<string>()
  list?.forEach((s, i) => {
    if (seen.has(norm(s))) refuse(`${path}.${key}[${i}]`, `${shown(s)} is listed twice`)
    seen.add(norm(s))
  })
  return list
}

function checkValueMatch(v: unknown, path: string, header: boolean): HTTPValueMatch {
  const o = object(v, path, ['name', 'values', 'present'])
  const name = string(o['name'], `${path}.name`, { nonEmpty: true })
  if (header && !TOKEN.test(name)) refuse(`${path}.name`, `${shown(name)} is not a header name`)
  return compact({
    name,
    values: optionalList(o, 'values', path, (x, p) => string(x, p)),
    present: optionalBoolean(o, 'present', path),
  })
}

function checkHttpMatch(o: Json, path: string): HTTPMatch | undefined {
  const m = optionalObject(o, 'httpMatch', path, ['methods', 'paths', 'pathPrefixes', 'query', 'headers'])
  if (m === undefined) return undefined
  const p = `${path}.httpMatch`
  return compact({
    methods: uniqueList(m, 'methods', p, checkMethod, (s) => s.toUpperCase()),
    paths: uniqueList(m, 'paths', p, checkPath),
    pathPrefixes: uniqueList(m, 'pathPrefixes', p, checkPath),
    query: optionalList(m, 'query', p, (x, q) => checkValueMatch(x, q, false)),
    headers: optionalList(m, 'headers', p, (x, q) => checkValueMatch(x, q, true)),
  })
}

function checkProtocolRule(v: unknown, path: string): ProtocolRule {
  const o = object(v, path, ['name', 'protocol', 'domains', 'ports', 'tlsMode', 'httpMatch', 'http', 'mcp'])
  const protocol = oneOf(o['protocol'], `${path}.protocol`, ['http', 'mcp'] as const)
  const tlsMode = optionalOneOf(o, 'tlsMode', path, TLS_MODES)
  if (tlsMode === 'passthrough') {
    refuse(
      `${path}.tlsMode`,
      'must be terminate-reoriginate (or absent for plain HTTP): passthrough cannot be inspected',
    )
  }
  const h = optionalObject(o, 'http', path, ['methods', 'paths'])
  const m = optionalObject(o, 'mcp', path, ['tools'])
  if (protocol === 'http' && h === undefined) refuse(`${path}.http`, 'is required for protocol http')
  if (protocol === 'mcp' && m === undefined) refuse(`${path}.mcp`, 'is required for protocol mcp')
  if (protocol === 'http' && m !== undefined) refuse(`${path}.mcp`, 'does not belong to protocol http')
  if (protocol === 'mcp' && h !== undefined) refuse(`${path}.http`, 'does not belong to protocol mcp')
  let http: ProtocolRule['http']
  if (h !== undefined) {
    const hp = `${path}.http`
    const methods = optionalObject(h, 'methods', hp, ['allowed', 'denied'])
    const paths = optionalObject(h, 'paths', hp, ['allowed', 'denied', 'allowedPrefixes', 'deniedPrefixes'])
    const upper = (s: string): string => s.toUpperCase()
    http = compact({
      methods:
        methods &&
        compact({
          allowed: uniqueList(methods, 'allowed', `${hp}.methods`, checkMethod, upper),
          denied: uniqueList(methods, 'denied', `${hp}.methods`, checkMethod, upper),
        }),
      paths:
        paths &&
        compact({
          allowed: uniqueList(paths, 'allowed', `${hp}.paths`, checkPath),
          denied: uniqueList(paths, 'denied', `${hp}.paths`, checkPath),
          allowedPrefixes: uniqueList(paths, 'allowedPrefixes', `${hp}.paths`, checkPath),
          deniedPrefixes: uniqueList(paths, 'deniedPrefixes', `${hp}.paths`, checkPath),
        }),
    })
  }
  let mcp: ProtocolRule['mcp']
  if (m !== undefined) {
    const tools = optionalObject(m, 'tools', `${path}.mcp`, ['allowed', 'denied'])
    const tool = (x: unknown, p: string): string => string(x, p, { nonEmpty: true })
    mcp = compact({
      tools:
        tools &&
        compact({
          allowed: uniqueList(tools, 'allowed', `${path}.mcp.tools`, tool),
          denied: uniqueList(tools, 'denied', `${path}.mcp.tools`, tool),
        }),
    })
  }
  return compact({
    name: optionalString(o, 'name', path),
    protocol,
    domains: optionalList(o, 'domains', path, checkDomain),
    ports: optionalList(o, 'ports', path, checkTcpPort),
    tlsMode,
    httpMatch: checkHttpMatch(o, path),
    http,
    mcp,
  })
}

function checkCredentialRule(
  v: unknown,
  path: string,
  projections: Map<string, string>,
): EgressCredentialRule {
  const o = object(v, path, [
    'name',
    'credentialRef',
    'rollout',
    'protocol',
    'tlsMode',
    'failurePolicy',
    'domains',
    'ports',
    'httpMatch',
  ])
  const r: EgressCredentialRule = compact({
    name: optionalString(o, 'name', path),
    credentialRef: string(o['credentialRef'], `${path}.credentialRef`, { nonEmpty: true }),
    rollout: optionalOneOf(o, 'rollout', path, ['enabled', 'disabled'] as const),
    protocol: optionalOneOf(o, 'protocol', path, AUTH_PROTOCOLS),
    tlsMode: optionalOneOf(o, 'tlsMode', path, TLS_MODES),
    failurePolicy: optionalOneOf(o, 'failurePolicy', path, ['fail-closed', 'fail-open'] as const),
    domains: optionalList(o, 'domains', path, checkDomain),
    ports: optionalList(o, 'ports', path, checkPort),
    httpMatch: checkHttpMatch(o, path),
  })
  const type = projections.get(r.credentialRef)
  if (type === undefined) {
    refuse(`${path}.credentialRef`, `${shown(r.credentialRef)} names no credentialBindings[].ref`)
  }
  const terminated = r.tlsMode === 'terminate-reoriginate'
  const httpFamily = r.protocol === 'http' || r.protocol === 'https' || r.protocol === 'grpc'
  const needs = (what: string): never => refuse(path, `protocol ${r.protocol ?? '(any)'} ${what}`)
  if (r.protocol === 'tls' && (!terminated || type !== 'tls_client_certificate')) {
    needs('needs tlsMode terminate-reoriginate and a tls_client_certificate projection')
  }
  if (
    (r.protocol === 'socks5' || r.protocol === 'mqtt' || r.protocol === 'redis') &&
    type !== 'username_password'
  ) {
    needs(`needs a username_password projection, not ${type}`)
  }
  if (r.protocol === 'ssh' && type !== 'ssh_proxy') needs(`needs an ssh_proxy projection, not ${type}`)
  // Rewriting a request needs to read it: plain HTTP, or TLS terminated by the proxy. Header
  // injection without a protocol applies wherever the traffic turns out to be HTTP.
  const rewrites = type === 'placeholder_substitution' || r.httpMatch !== undefined
  if (rewrites || (type === 'http_headers' && r.protocol !== undefined)) {
    const what = r.httpMatch !== undefined ? 'httpMatch' : `a ${type} projection`
    if (!httpFamily) refuse(path, `${what} needs protocol http, https or grpc`)
    if (r.protocol !== 'http' && !terminated) {
      refuse(path, `${what} with protocol ${r.protocol} needs tlsMode terminate-reoriginate`)
    }
  }
  return r
}

function checkProxy(v: unknown, path: string): EgressProxyPolicy {
  const o = object(v, path, ['type', 'address', 'credentialRef'])
  const type = oneOf(o['type'], `${path}.type`, ['socks5'] as const)
  const address = string(o['address'], `${path}.address`, { nonEmpty: true })
  const why = hostPortProblem(address)
  if (why !== undefined) refuse(`${path}.address`, `${shown(address)} is not host:port: ${why}`)
  return compact({
    type,
    address,
    credentialRef: optionalString(o, 'credentialRef', path, { nonEmpty: true }),
  })
}

/** Why `s` is not `host:port` (host a name, an IPv4 address or a bracketed IPv6 address). */
export function hostPortProblem(s: string): string | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([0-9]{1,5})$/.exec(s)
  if (!m) return 'expected host:port, or [ipv6]:port'
  const port = Number(m[3])
  if (port < 1 || port > 65_535) return `port ${m[3]} is not from 1 to 65535`
  if (m[1] !== undefined) return parseIpv6(m[1]) === undefined ? `${m[1]} is not an IPv6 address` : undefined
  const host = (m[2] as string).toLowerCase()
  if (isIpLiteral(host) || /^[0-9.]+$/.test(host)) {
    return isIpLiteral(host) ? undefined : `${host} is not an IPv4 address`
  }
  const problem = hostNameProblem(host)
  return problem === undefined ? undefined : `the host name ${problem}`
}

const GO_DURATION = /^(?:[0-9]+(?:\.[0-9]+)?(?:ns|us|µs|ms|s|m|h))+$/
const GO_DURATION_PART = /([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)/g
const MS_PER_UNIT: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1e3,
  m: 60e3,
  h: 3600e3,
}

/** A Go duration (`cachePolicy.ttl`: `30s`, `1h30m`, `1.5s`) in milliseconds, or undefined. */
export function goDurationMs(s: string): number | undefined {
  if (!GO_DURATION.test(s)) return undefined
  let ms = 0
  for (const m of s.matchAll(GO_DURATION_PART)) ms += Number(m[1]) * (MS_PER_UNIT[m[2] as string] as number)
  return ms
}
/** `{{ .field }}` placeholders only; any other `{{` or `}}` is refused. */
const TEMPLATE_ACTION = /\{\{\s*\.[A-Za-z_][A-Za-z0-9_]*\s*\}\}/g

function checkTemplate(v: unknown, path: string): string {
  const s = string(v, path, { nonEmpty: true })
  const rest = s.replace(TEMPLATE_ACTION, '')
  if (rest.includes('{{') || rest.includes('}}')) {
    refuse(path, `${shown(s)} has a {{ }} that is not {{ .field }}`)
  }
  return s
}

function checkBinding(v: unknown, path: string): CredentialBinding {
  const o = object(v, path, ['ref', 'sourceRef', 'projection', 'cachePolicy'])
  const ref = string(o['ref'], `${path}.ref`, { nonEmpty: true, charsMax: 253 })
  const sourceRef = string(o['sourceRef'], `${path}.sourceRef`, { nonEmpty: true, charsMax: 253 })
  const cache = optionalObject(o, 'cachePolicy', path, ['ttl'])
  let cachePolicy: CredentialBinding['cachePolicy']
  if (cache !== undefined) {
    const ttl = optionalString(cache, 'ttl', `${path}.cachePolicy`)
    if (ttl !== undefined && ttl !== '' && !GO_DURATION.test(ttl)) {
      refuse(`${path}.cachePolicy.ttl`, `${shown(ttl)} is not a duration such as 30s, 5m or 1h30m`)
    }
    cachePolicy = compact({ ttl })
  }
  const projection = checkProjection(o['projection'], `${path}.projection`)
  return compact({ ref, sourceRef, projection, cachePolicy })
}

const MEMBER_OF_TYPE = {
  http_headers: 'httpHeaders',
  placeholder_substitution: 'placeholderSubstitution',
  tls_client_certificate: 'tlsClientCertificate',
  username_password: 'usernamePassword',
  ssh_proxy: 'sshProxy',
} as const

function checkProjection(v: unknown, path: string): ProjectionSpec {
  const members = Object.values(MEMBER_OF_TYPE)
  const o = object(v, path, ['type', ...members])
  const type = oneOf(o['type'], `${path}.type`, PROJECTION_TYPES)
  const own = MEMBER_OF_TYPE[type]
  for (const m of members) {
    if (m !== own && o[m] !== undefined && o[m] !== null)
      refuse(`${path}.${m}`, `does not belong to type ${type}`)
  }
  if (o[own] === undefined || o[own] === null) refuse(`${path}.${own}`, `is required for type ${type}`)
  const p = `${path}.${own}`
  switch (type) {
    case 'http_headers': {
      const h = object(o[own], p, ['headers'])
      const headers = optionalList(h, 'headers', p, (x, q) => {
        const e = object(x, q, ['name', 'valueTemplate'])
        const name = string(e['name'], `${q}.name`, { nonEmpty: true })
        if (!TOKEN.test(name)) refuse(`${q}.name`, `${shown(name)} is not a header name`)
        return { name, valueTemplate: checkTemplate(e['valueTemplate'], `${q}.valueTemplate`) }
      })
      if (!headers?.length) refuse(`${p}.headers`, 'must list at least one header')
      return { type, httpHeaders: { headers } }
    }
    case 'placeholder_substitution': {
      const s = object(o[own], p, ['replacements'])
      const seen = new Set<string>()
      const replacements = optionalList(s, 'replacements', p, (x, q) => {
        const e = object(x, q, ['placeholder', 'valueTemplate', 'locations'])
        const placeholder = string(e['placeholder'], `${q}.placeholder`, { nonEmpty: true })
        const valueTemplate = checkTemplate(e['valueTemplate'], `${q}.valueTemplate`)
        const locations = optionalList(e, 'locations', q, (y, r) => {
          const l = oneOf(y, r, ['header', 'query', 'body'] as const)
          if (seen.has(`${placeholder}\0${l}`))
            refuse(r, `${shown(placeholder)} is already replaced in the ${l}`)
          seen.add(`${placeholder}\0${l}`)
          return l
        })
        if (!locations?.length) refuse(`${q}.locations`, 'must list at least one of header, query, body')
        return { placeholder, valueTemplate, locations }
      })
      if (!replacements?.length) refuse(`${p}.replacements`, 'must list at least one replacement')
      return { type, placeholderSubstitution: { replacements } }
    }
    case 'tls_client_certificate':
      object(o[own], p, [])
      return { type, tlsClientCertificate: {} }
    case 'username_password':
      object(o[own], p, [])
      return { type, usernamePassword: {} }
    case 'ssh_proxy': {
      const s = object(o[own], p, ['sandboxPublicKeys', 'upstreamUsername', 'knownHosts'])
      const key = (x: unknown, q: string): string => string(x, q, { nonEmpty: true, charsMax: 16_384 })
      const sandboxPublicKeys = optionalList(s, 'sandboxPublicKeys', p, key)
      const knownHosts = optionalList(s, 'knownHosts', p, key)
      const upstreamUsername = optionalString(s, 'upstreamUsername', p, { nonEmpty: true })
      if (upstreamUsername === undefined) refuse(`${p}.upstreamUsername`, 'is required')
      if (!sandboxPublicKeys?.length)
        refuse(`${p}.sandboxPublicKeys`, 'must list the keys the sandbox logs in with')
      // Without known host keys the re-originated connection could not tell the real server from
      // a man in the middle, and the real key would be offered to it.
      if (!knownHosts?.length) refuse(`${p}.knownHosts`, "must list the upstream server's host keys")
      return { type, sshProxy: { sandboxPublicKeys, upstreamUsername, knownHosts } }
    }
  }
}
