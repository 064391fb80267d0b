// A reference decision written straight from the documented semantics, with no index and no
// compiled sets: a linear scan with string compares. The property tests hold the compiled
// matcher to it.
import { parseCidr, parseIp } from '../../src/egress/policy/ip.js'
import type { Flow, Decision } from '../../src/egress/policy/match.js'
import type { PortSpec, SandboxNetworkPolicy } from '../../src/egress/policy/types.js'

const norm = (n: string): string => n.toLowerCase().replace(/\.$/, '')

function domainMatches(pattern: string, name: string): boolean {
  const p = norm(pattern)
  const n = norm(name)
  if (p.startsWith('*.')) return n === p.slice(2) || n.endsWith(p.slice(1))
  return n === p
}

function cidrMatches(cidr: string, ip: string): boolean {
  const r = parseCidr(cidr)
  const a = parseIp(ip)
  if (r === undefined || a === undefined || r.v !== a.v) return false
  return a.n >= r.lo && a.n <= r.hi
}

function portMatches(s: PortSpec, transport: string, port: number): boolean {
  return (s.protocol?.toLowerCase() ?? 'tcp') === transport && port >= s.port && port <= (s.endPort ?? s.port)
}

export function referenceDecide(p: SandboxNetworkPolicy, f: Flow): Decision {
  const e = p.egress ?? {}
  const anyName = (domains: readonly string[]): boolean =>
    f.names.some((n) => domains.some((d) => domainMatches(d, n)))
  const rules = e.trafficRules ?? []
  if (rules.length > 0) {
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i]!
      if (r.domains?.length && !anyName(r.domains)) continue
      if (r.cidrs?.length && !r.cidrs.some((c) => cidrMatches(c, f.ip))) continue
      if (r.ports?.length && !r.ports.some((s) => portMatches(s, f.transport, f.port))) continue
      if (r.appProtocols?.length) {
        const ok =
          (f.appProtocol !== undefined && r.appProtocols.includes(f.appProtocol)) ||
          (f.transport === 'udp' && r.appProtocols.includes('udp'))
        if (!ok) continue
      }
      const label = `egress.trafficRules[${i}]${r.name ? ` ${JSON.stringify(r.name)}` : ''}`
      return { action: r.action, reason: label }
    }
    return p.mode === 'allow-all'
      ? { action: 'allow', reason: 'mode allow-all' }
      : { action: 'deny', reason: 'mode block-all' }
  }
  if (e.deniedDomains?.length && anyName(e.deniedDomains))
    return { action: 'deny', reason: 'egress.deniedDomains' }
  if (e.deniedCidrs?.some((c) => cidrMatches(c, f.ip)))
    return { action: 'deny', reason: 'egress.deniedCidrs' }
  if (e.deniedPorts?.some((s) => portMatches(s, f.transport, f.port)))
    return { action: 'deny', reason: 'egress.deniedPorts' }
  if (p.mode === 'allow-all') return { action: 'allow', reason: 'mode allow-all' }
  const deny: Decision = { action: 'deny', reason: 'mode block-all' }
  const domains = e.allowedDomains ?? []
  const cidrs = e.allowedCidrs ?? []
  const ports = e.allowedPorts ?? []
  if (domains.length === 0 && cidrs.length === 0 && ports.length === 0) return deny
  let reason: string | undefined
  if (domains.length > 0 || cidrs.length > 0) {
    if (domains.length > 0 && anyName(domains)) reason = 'egress.allowedDomains'
    else if (cidrs.some((c) => cidrMatches(c, f.ip))) reason = 'egress.allowedCidrs'
    else return deny
  }
  if (ports.length > 0) {
    if (!ports.some((s) => portMatches(s, f.transport, f.port))) return deny
    reason ??= 'egress.allowedPorts'
  }
  if (reason === undefined) throw new Error('reference: an allow without a list')
  return { action: 'allow', reason }
}
