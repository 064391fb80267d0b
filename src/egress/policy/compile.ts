// A checked policy compiled for matching: CIDRs parsed once into sorted numeric ranges, domains
// into exact-name and suffix sets, ports into ranges, and an index of the traffic rules by name,
// address, port and protocol (rule-index.ts), so a decision probes a few maps instead of
// scanning every rule.
// checkPolicy (check.ts) is the validation; compilePolicy runs it first, so a compiled policy
// always comes from a valid, normalized one.
import { assert } from '../../core/assert.js'
import { checkPolicy } from './check.js'
import {
  compileHttpMatch,
  pathList,
  pathListEmpty,
  type CompiledHttpMatch,
  type PathList,
} from './http-match.js'
import { IpRangeSet, parseCidr, type IpRange } from './ip.js'
import { DomainSet, parseDomainPattern, type DomainPattern } from './names.js'
import { PortSet } from './ports.js'
import { buildRuleIndex, type TrafficRuleIndex } from './rule-index.js'
import type {
  AppProtocol,
  AuthProtocol,
  CredentialBinding,
  EgressCredentialRule,
  NetworkMode,
  PortSpec,
  ProtocolRule,
  SandboxNetworkPolicy,
  TlsMode,
} from './types.js'

export { checkPolicy, goDurationMs, hostPortProblem } from './check.js'
export type { TrafficRuleIndex } from './rule-index.js'

export interface CompiledTrafficRule {
  readonly index: number
  /** How decisions name the rule: `egress.trafficRules[2] "github"`. */
  readonly label: string
  readonly action: 'allow' | 'deny'
  readonly domains: DomainSet | undefined
  readonly cidrs: IpRangeSet | undefined
  readonly ports: PortSet | undefined
  readonly appProtocols: ReadonlySet<AppProtocol> | undefined
}

/** The legacy lists; an empty list is absent. */
export interface LegacyLists {
  readonly allowedDomains: DomainSet | undefined
  readonly allowedCidrs: IpRangeSet | undefined
  readonly allowedPorts: PortSet | undefined
  readonly deniedDomains: DomainSet | undefined
  readonly deniedCidrs: IpRangeSet | undefined
  readonly deniedPorts: PortSet | undefined
}

export interface CompiledProtocolRule {
  readonly index: number
  readonly label: string
  readonly rule: ProtocolRule
  readonly protocol: 'http' | 'mcp'
  readonly tlsMode: TlsMode | undefined
  readonly domains: DomainSet | undefined
  readonly ports: PortSet | undefined
  readonly httpMatch: CompiledHttpMatch | undefined
  readonly http:
    | {
        readonly allowedMethods: ReadonlySet<string> | undefined
        readonly deniedMethods: ReadonlySet<string>
        readonly allowedPaths: PathList | undefined
        readonly deniedPaths: PathList
      }
    | undefined
  readonly mcp:
    | { readonly allowedTools: ReadonlySet<string> | undefined; readonly deniedTools: ReadonlySet<string> }
    | undefined
}

export interface CompiledCredentialRule {
  readonly index: number
  readonly label: string
  readonly rule: EgressCredentialRule
  /** The binding `rule.credentialRef` names. */
  readonly binding: CredentialBinding
  readonly enabled: boolean
  readonly protocol: AuthProtocol | undefined
  readonly tlsMode: TlsMode | undefined
  readonly failurePolicy: 'fail-closed' | 'fail-open'
  readonly domains: DomainSet | undefined
  readonly ports: PortSet | undefined
  readonly httpMatch: CompiledHttpMatch | undefined
}

export interface CompiledProxy {
  readonly type: 'socks5'
  readonly host: string
  readonly port: number
  readonly binding: CredentialBinding | undefined
}

export interface CompiledPolicy {
  /** The checked, normalized policy (what GET answers). */
  readonly policy: SandboxNetworkPolicy
  readonly mode: NetworkMode
  readonly trafficRules: readonly CompiledTrafficRule[]
  readonly index: TrafficRuleIndex
  /** Undefined when the policy has traffic rules or no legacy list. */
  readonly legacy: LegacyLists | undefined
  readonly protocolRules: readonly CompiledProtocolRule[]
  readonly credentialRules: readonly CompiledCredentialRule[]
  readonly bindings: ReadonlyMap<string, CredentialBinding>
  readonly proxy: CompiledProxy | undefined
}

export function ruleLabel(list: string, index: number, name: string | undefined): string {
  const base = `egress.${list}[${index}]`
  return name === undefined || name === '' ? base : `${base} ${JSON.stringify(name)}`
}

function patterns(domains: readonly string[] | undefined): DomainPattern[] {
  return (domains ?? []).map((d) => {
    const p = parseDomainPattern(d)
    assert(p.ok, `compile: checked domain ${d} does not parse`)
    return p.pattern
  })
}

function domainSet(domains: readonly string[] | undefined): DomainSet | undefined {
  return domains?.length ? new DomainSet(patterns(domains)) : undefined
}

function cidrSet(cidrs: readonly string[] | undefined): IpRangeSet | undefined {
  if (!cidrs?.length) return undefined
  return new IpRangeSet(
    cidrs.map((c): IpRange => {
      const r = parseCidr(c)
      assert(r !== undefined, `compile: checked CIDR ${c} does not parse`)
      return r
    }),
  )
}

function portSet(ports: readonly PortSpec[] | undefined): PortSet | undefined {
  return ports?.length ? new PortSet(ports) : undefined
}

function setOf<T>(list: readonly T[] | undefined): ReadonlySet<T> | undefined {
  return list?.length ? new Set(list) : undefined
}

function compileProtocolRule(r: ProtocolRule, index: number): CompiledProtocolRule {
  const m = r.http?.methods
  const p = r.http?.paths
  const allowedPaths = pathList(p?.allowed, p?.allowedPrefixes)
  const upper = (l: readonly string[] | undefined): string[] | undefined => l?.map((x) => x.toUpperCase())
  return {
    index,
    label: ruleLabel('protocolRules', index, r.name),
    rule: r,
    protocol: r.protocol,
    tlsMode: r.tlsMode,
    domains: domainSet(r.domains),
    ports: portSet(r.ports),
    httpMatch: r.httpMatch === undefined ? undefined : compileHttpMatch(r.httpMatch),
    http:
      r.http === undefined
        ? undefined
        : {
            allowedMethods: setOf(upper(m?.allowed)),
            deniedMethods: new Set(upper(m?.denied)),
            allowedPaths: pathListEmpty(allowedPaths) ? undefined : allowedPaths,
            deniedPaths: pathList(p?.denied, p?.deniedPrefixes),
          },
    mcp:
      r.mcp === undefined
        ? undefined
        : { allowedTools: setOf(r.mcp.tools?.allowed), deniedTools: new Set(r.mcp.tools?.denied) },
  }
}

function compileCredentialRule(
  r: EgressCredentialRule,
  index: number,
  bindings: ReadonlyMap<string, CredentialBinding>,
): CompiledCredentialRule {
  const binding = bindings.get(r.credentialRef)
  assert(binding !== undefined, `compile: checked credentialRef ${r.credentialRef} has no binding`)
  return {
    index,
    label: ruleLabel('credentialRules', index, r.name),
    rule: r,
    binding,
    enabled: r.rollout !== 'disabled',
    protocol: r.protocol,
    tlsMode: r.tlsMode,
    failurePolicy: r.failurePolicy ?? 'fail-closed',
    domains: domainSet(r.domains),
    ports: portSet(r.ports),
    httpMatch: r.httpMatch === undefined ? undefined : compileHttpMatch(r.httpMatch),
  }
}

/** Validates (checkPolicy; `bad_request` naming the field) and compiles a policy. */
export function compilePolicy(p: SandboxNetworkPolicy, at = 'network'): CompiledPolicy {
  const policy = checkPolicy(p, at)
  const e = policy.egress ?? {}
  const bindings = new Map((policy.credentialBindings ?? []).map((b) => [b.ref, b] as const))
  const trafficRules = (e.trafficRules ?? []).map((r, i): CompiledTrafficRule => ({
    index: i,
    label: ruleLabel('trafficRules', i, r.name),
    action: r.action,
    domains: domainSet(r.domains),
    cidrs: cidrSet(r.cidrs),
    ports: portSet(r.ports),
    appProtocols: setOf(r.appProtocols),
  }))
  const legacy: LegacyLists = {
    allowedDomains: domainSet(e.allowedDomains),
    allowedCidrs: cidrSet(e.allowedCidrs),
    allowedPorts: portSet(e.allowedPorts),
    deniedDomains: domainSet(e.deniedDomains),
    deniedCidrs: cidrSet(e.deniedCidrs),
    deniedPorts: portSet(e.deniedPorts),
  }
  const hasLegacy = Object.values(legacy).some((v) => v !== undefined)
  assert(
    !(hasLegacy && trafficRules.length > 0),
    'compile: checked policy mixes legacy lists and trafficRules',
  )
  let proxy: CompiledProxy | undefined
  if (e.proxy !== undefined) {
    const colon = e.proxy.address.lastIndexOf(':')
    proxy = {
      type: e.proxy.type,
      host: e.proxy.address
        .slice(0, colon)
        .replace(/^\[|\]$/g, '')
        .toLowerCase(),
      port: Number(e.proxy.address.slice(colon + 1)),
      binding: e.proxy.credentialRef === undefined ? undefined : bindings.get(e.proxy.credentialRef),
    }
  }
  return {
    policy,
    mode: policy.mode,
    trafficRules,
    index: buildRuleIndex(e.trafficRules ?? []),
    legacy: hasLegacy ? legacy : undefined,
    protocolRules: (e.protocolRules ?? []).map(compileProtocolRule),
    credentialRules: (e.credentialRules ?? []).map((r, i) => compileCredentialRule(r, i, bindings)),
    bindings,
    proxy,
  }
}
