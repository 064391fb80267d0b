// checkPolicy: the authority on what a SandboxNetworkPolicy may say (the API's JSON schema only
// shapes it; templates have none). Everything is checked before anything is used, so a refused
// policy changes nothing. Refusals are `bad_request` naming the field; the result is a normalized
// copy (unknown fields refused, null dropped, domains lowercased, port protocols lowercased).
// The rules follow upstream Sandbox0's validation (manager/.../network_policy_validation.go),
// stricter where it leaves a hole: malformed domains, sshProxy without knownHosts.
import { limits } from '../../core/limits.js'
import { checkBinding, checkCredentialRule, checkProxy } from './check-credentials.js'
import {
  checkCidr,
  checkDomain,
  checkHttpMatch,
  checkMethod,
  checkPath,
  checkPort,
  checkTcpPort,
  uniqueList,
} from './check-common.js'
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
import {
  APP_PROTOCOLS,
  NETWORK_MODES,
  TLS_MODES,
  type NetworkEgressPolicy,
  type ProjectionSpec,
  type ProtocolRule,
  type SandboxNetworkPolicy,
  type TrafficRule,
} from './types.js'

export { goDurationMs, hostPortProblem } from './check-credentials.js'
export { HTTP_METHODS } from './check-common.js'

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
