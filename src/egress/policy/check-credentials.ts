// The credential half of checkPolicy: bindings and their projections, credential rules (which
// projection each protocol needs), the SOCKS5 proxy, value templates and cache durations.
import {
  compact,
  object,
  oneOf,
  optionalList,
  optionalObject,
  optionalOneOf,
  optionalString,
  refuse,
  shown,
  string,
} from './fields.js'
import { checkDomain, checkHttpMatch, checkPort, TOKEN } from './check-common.js'
import { hostNameProblem } from './names.js'
import { isIpLiteral, parseIpv6 } from './ip.js'
import {
  AUTH_PROTOCOLS,
  PROJECTION_TYPES,
  TLS_MODES,
  type CredentialBinding,
  type EgressCredentialRule,
  type EgressProxyPolicy,
  type ProjectionSpec,
} from './types.js'

export function checkCredentialRule(
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

export function checkProxy(v: unknown, path: string): EgressProxyPolicy {
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

export function checkBinding(v: unknown, path: string): CredentialBinding {
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
