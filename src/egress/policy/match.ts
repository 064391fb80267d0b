// The decision for one connection or datagram, the DNS verdict for one name, and the
// destinations no policy can open. Pure and synchronous: the proxy and the resolver call these
// on every flow, so they allocate little and probe hash sets rather than scan rules.
//
// Semantics (docs/EGRESS-POLICY.md says the same):
// - trafficRules: in order, the first rule whose every given field matches decides; none → mode.
//   domains: any of the flow's names equals a name, or is a `*.suffix` suffix or below it.
//   cidrs: the IP is in one. ports: the transport and port are in one (a PortSpec without a
//   protocol is tcp). appProtocols: the classified protocol is listed; `udp` also matches every
//   UDP flow whatever it carries.
// - legacy lists (never with trafficRules): a denied* list that matches denies, in either mode
//   (upstream ignores denied* under block-all; denying is the safe reading). Then allow-all
//   allows. block-all allows only when an allowed* list is given and: (allowedDomains matches a
//   name OR allowedCidrs holds the IP, when either list is given) AND (allowedPorts holds the
//   port, when given). allowedPorts alone allows those ports to any destination.
// - nameVerdict: 'deny' only when no flow known by that name alone could be allowed, whatever its
//   IP, port or protocol; 'maybe' otherwise (the proxy decides each connection).
import { type CompiledPolicy, type CompiledTrafficRule, type LegacyLists } from './compile.js'
import { parseIp, type Ip } from './ip.js'
import { normalizeName } from './names.js'
import type { Transport } from './ports.js'
import type { AppProtocol } from './types.js'

export interface Flow {
  transport: Transport
  /** The destination as the kernel has it (SO_ORIGINAL_DST); IPv4-mapped IPv6 counts as IPv4. */
  ip: string
  port: number
  /**
   * The names the flow is known by: its TLS SNI or HTTP Host when it has one, and the names the
   * sandbox's own DNS answers mapped to this IP. A domain rule matches if any name matches, so a
   * flow with a verified SNI/Host should carry that name alone (a shared CDN address must not
   * borrow an allowed name the sandbox resolved to the same IP).
   */
  names: readonly string[]
  appProtocol?: AppProtocol
}

export interface Decision {
  action: 'allow' | 'deny'
  /** The rule: `egress.trafficRules[2] "github"`, `egress.deniedDomains`, `mode block-all`. */
  reason: string
}

export type NameVerdict = 'deny' | 'maybe'

const MODE_ALLOW: Decision = Object.freeze({ action: 'allow', reason: 'mode allow-all' })
const MODE_DENY: Decision = Object.freeze({ action: 'deny', reason: 'mode block-all' })

function modeDecision(p: CompiledPolicy): Decision {
  return p.mode === 'allow-all' ? MODE_ALLOW : MODE_DENY
}

// Scratch for candidate rule indices: decide() is synchronous and never re-entered.
const hits: number[] = []

function normalizedNames(names: readonly string[]): readonly string[] {
  for (const n of names) {
    if (n.endsWith('.') || /[A-Z]/.test(n)) return names.map(normalizeName)
  }
  return names
}

/** Rule indices whose domains name `name` (normalized), appended to `hits`. */
function collectHits(p: CompiledPolicy, name: string): void {
  const exact = p.index.exact.get(name)
  if (exact !== undefined) for (const i of exact) hits.push(i)
  const suffix = p.index.suffix
  if (suffix.size === 0 || name.length === 0) return
  let at = 0
  while (at !== -1) {
    const list = suffix.get(at === 0 ? name : name.slice(at))
    if (list !== undefined) for (const i of list) hits.push(i)
    const dot = name.indexOf('.', at)
    at = dot === -1 ? -1 : dot + 1
  }
}

/**
 * Visits, in rule order, the rules that can match some flow named `names`: those whose domains
 * match a name, and every rule without domains. Stops at the first for which `test` is true.
 */
function firstCandidate(
  p: CompiledPolicy,
  names: readonly string[],
  test: (r: CompiledTrafficRule) => boolean,
): CompiledTrafficRule | undefined {
  hits.length = 0
  for (const n of names) collectHits(p, n)
  if (hits.length > 1) hits.sort(ascending)
  const free = p.index.domainless
  let a = 0
  let b = 0
  while (a < free.length || b < hits.length) {
    const fa = a < free.length ? (free[a] as number) : Infinity
    const hb = b < hits.length ? (hits[b] as number) : Infinity
    const i = fa < hb ? fa : hb
    if (fa < hb) a++
    else b++
    const r = p.trafficRules[i] as CompiledTrafficRule
    if (test(r)) return r
  }
  return undefined
}

function appMatches(set: ReadonlySet<AppProtocol>, f: Flow): boolean {
  if (f.appProtocol !== undefined && set.has(f.appProtocol)) return true
  return f.transport === 'udp' && set.has('udp')
}

// Per-call state for the rule test, so the hot path builds no closure.
let flow: Flow
let flowIp: Ip | undefined

function restMatches(r: CompiledTrafficRule): boolean {
  if (r.cidrs !== undefined && (flowIp === undefined || !r.cidrs.has(flowIp))) return false
  if (r.ports !== undefined && !r.ports.has(flow.transport, flow.port)) return false
  if (r.appProtocols !== undefined && !appMatches(r.appProtocols, flow)) return false
  return true
}

export function decide(p: CompiledPolicy, f: Flow): Decision {
  const names = normalizedNames(f.names)
  const ip = parseIp(f.ip)
  if (p.legacy !== undefined) return decideLegacy(p, p.legacy, f, names, ip)
  if (p.trafficRules.length === 0) return modeDecision(p)
  collectFlowHits(p, names, f, ip)
  flow = f
  flowIp = ip
  for (const i of hits) {
    const r = p.trafficRules[i] as CompiledTrafficRule
    if (restMatches(r)) return { action: r.action, reason: r.label }
  }
  return modeDecision(p)
}

function pushAll(list: readonly number[] | undefined): void {
  if (list !== undefined) for (const i of list) hits.push(i)
}

/**
 * Into `hits`, ascending: the rules that can match this flow. Rules with domains come from the
 * name lookups (their domains then match); the others from the address, port and protocol
 * indexes, each of which holds only rules without domains. restMatches checks the rest.
 */
function collectFlowHits(p: CompiledPolicy, names: readonly string[], f: Flow, ip: Ip | undefined): void {
  hits.length = 0
  for (const n of names) collectHits(p, n)
  const ix = p.index
  if (ip !== undefined) {
    if (ip.v === 4) pushAll(ix.v4?.get(ip.n))
    else pushAll(ix.v6)
  }
  pushAll((f.transport === 'tcp' ? ix.tcpPorts : ix.udpPorts)?.get(f.port))
  if (f.appProtocol !== undefined) pushAll(ix.app.get(f.appProtocol))
  if (f.transport === 'udp' && f.appProtocol !== 'udp') pushAll(ix.app.get('udp'))
  pushAll(ix.always)
  if (hits.length > 1) hits.sort(ascending)
}

function ascending(a: number, b: number): number {
  return a - b
}

function decideLegacy(
  p: CompiledPolicy,
  l: LegacyLists,
  f: Flow,
  names: readonly string[],
  ip: Ip | undefined,
): Decision {
  if (l.deniedDomains?.hasAny(names)) return { action: 'deny', reason: 'egress.deniedDomains' }
  if (ip !== undefined && l.deniedCidrs?.has(ip)) return { action: 'deny', reason: 'egress.deniedCidrs' }
  if (l.deniedPorts?.has(f.transport, f.port)) return { action: 'deny', reason: 'egress.deniedPorts' }
  if (p.mode === 'allow-all') return MODE_ALLOW
  const { allowedDomains, allowedCidrs, allowedPorts } = l
  let reason: string | undefined
  if (allowedDomains !== undefined || allowedCidrs !== undefined) {
    if (allowedDomains?.hasAny(names)) reason = 'egress.allowedDomains'
    else if (ip !== undefined && allowedCidrs?.has(ip)) reason = 'egress.allowedCidrs'
    else return MODE_DENY
  }
  if (allowedPorts !== undefined) {
    if (!allowedPorts.has(f.transport, f.port)) return MODE_DENY
    reason ??= 'egress.allowedPorts'
  }
  return reason === undefined ? MODE_DENY : { action: 'allow', reason }
}

/** Whether a rule that matches a flow's name matches the flow whatever its IP, port, protocol. */
function definite(r: CompiledTrafficRule): boolean {
  return r.cidrs === undefined && r.appProtocols === undefined && (r.ports === undefined || r.ports.coversAll)
}

function settlesOrMayAllow(r: CompiledTrafficRule): boolean {
  return r.action === 'allow' || definite(r)
}

/**
 * For the resolver: 'deny' when no flow known by `name` alone could be allowed, whatever its IP,
 * port or protocol (then the name gets NXDOMAIN and is never sent upstream); else 'maybe'.
 * Sound, not exact: 'maybe' may be said of a name every flow to which will be denied.
 */
export function nameVerdict(p: CompiledPolicy, name: string): NameVerdict {
  return nameDecision(p, name).action === 'deny' ? 'deny' : 'maybe'
}

/** nameVerdict with the rule that settles it: 'allow' here means only "may be allowed". */
export function nameDecision(p: CompiledPolicy, name: string): Decision {
  const n = normalizeName(name)
  const l = p.legacy
  if (l !== undefined) {
    if (l.deniedDomains?.has(n)) return { action: 'deny', reason: 'egress.deniedDomains' }
    if (p.mode === 'allow-all') return MODE_ALLOW
    if (l.allowedDomains?.has(n)) return { action: 'allow', reason: 'egress.allowedDomains' }
    if (l.allowedCidrs !== undefined) return { action: 'allow', reason: 'egress.allowedCidrs' }
    if (l.allowedDomains === undefined && l.allowedPorts !== undefined) {
      return { action: 'allow', reason: 'egress.allowedPorts' }
    }
    return MODE_DENY
  }
  // The first rule that settles every flow named n, unless an allow rule that may match some
  // of them comes first.
  const r = firstCandidate(p, [n], settlesOrMayAllow)
  return r === undefined ? modeDecision(p) : { action: r.action, reason: r.label }
}

const V4_SPECIAL: ReadonlyArray<readonly [lo: number, hi: number, why: string]> = [
  [0xa9fea9fe, 0xa9fea9fe, 'the cloud metadata address 169.254.169.254'],
  [0x00000000, 0x00ffffff, 'an unspecified address (0.0.0.0/8)'],
  [0x7f000000, 0x7fffffff, 'a loopback address (127.0.0.0/8)'],
  [0xa9fe0000, 0xa9feffff, 'a link-local address (169.254.0.0/16)'],
  [0xe0000000, 0xefffffff, 'a multicast address (224.0.0.0/4)'],
  [0xffffffff, 0xffffffff, 'the broadcast address'],
  [0xf0000000, 0xfffffffe, 'a reserved address (240.0.0.0/4)'],
]

/**
 * Why no policy may open `ip`, or undefined: loopback, link-local (the cloud metadata address
 * among them), unspecified, multicast, broadcast and reserved IPv4, and all of IPv6 (not routed
 * for sandboxes until it is policed like IPv4). Addresses of this host and of other sandboxes
 * depend on the configuration: the proxy adds those.
 */
export function alwaysDenied(ip: string): string | undefined {
  const a = parseIp(ip)
  if (a === undefined) return `${JSON.stringify(ip)} is not an IP address`
  if (a.v === 6) {
    if (a.n === 1n) return 'a loopback address (::1)'
    if (a.n === 0n) return 'the unspecified address (::)'
    if (a.n >> 118n === 0x3fan) return 'a link-local address (fe80::/10)'
    if (a.n >> 120n === 0xffn) return 'a multicast address (ff00::/8)'
    return 'an IPv6 address (IPv6 is not routed for sandboxes)'
  }
  for (const [lo, hi, why] of V4_SPECIAL) if (a.n >= lo && a.n <= hi) return why
  return undefined
}
