// Where the traffic rules that can match a flow are found without scanning them all: rules with
// domains by name (exact names and `*.suffix` suffixes in hash maps), the rest by IPv4 address
// (CIDR ranges cut into elementary intervals), by port, or by app protocol. A flow's candidates
// are the union of its lookups, tried in rule order; each index lists rule numbers ascending.
import { limits } from '../../core/limits.js'
import { parseCidr } from './ip.js'
import { parseDomainPattern } from './names.js'
import { portTransport } from './ports.js'
import type { AppProtocol, TrafficRule } from './types.js'

/** Number ranges → the rules covering each point, as sorted elementary intervals. */
export class IntervalIndex {
  private constructor(
    private readonly starts: readonly number[],
    private readonly lists: ReadonlyArray<readonly number[]>,
  ) {}

  /** Undefined when the lists would hold more than `entriesMax` entries (heavily nested ranges). */
  static build(
    ranges: ReadonlyArray<{ lo: number; hi: number; rule: number }>,
    entriesMax: number,
  ): IntervalIndex | undefined {
    const cuts = new Set<number>()
    for (const r of ranges) cuts.add(r.lo).add(r.hi + 1)
    const starts = [...cuts].sort((a, b) => a - b)
    const lists: number[][] = starts.map(() => [])
    let entries = 0
    // By rule number, so every list comes out ascending.
    for (const r of [...ranges].sort((a, b) => a.rule - b.rule)) {
      for (let k = lowerBound(starts, r.lo); k < starts.length && (starts[k] as number) <= r.hi; k++) {
        const list = lists[k] as number[]
        if (list[list.length - 1] === r.rule) continue
        list.push(r.rule)
        if (++entries > entriesMax) return undefined
      }
    }
    return new IntervalIndex(starts, lists)
  }

  /** The rules whose ranges hold `x`. */
  get(x: number): readonly number[] {
    let lo = 0
    let hi = this.starts.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if ((this.starts[mid] as number) <= x) lo = mid + 1
      else hi = mid - 1
    }
    return hi >= 0 ? (this.lists[hi] as readonly number[]) : EMPTY
  }
}

const EMPTY: readonly number[] = Object.freeze([])

function lowerBound(sorted: readonly number[], x: number): number {
  let lo = 0
  let hi = sorted.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if ((sorted[mid] as number) < x) lo = mid + 1
    else hi = mid
  }
  return lo
}

export interface TrafficRuleIndex {
  /** Rules with domains, by exact name and by `*.suffix` suffix. */
  readonly exact: ReadonlyMap<string, readonly number[]>
  readonly suffix: ReadonlyMap<string, readonly number[]>
  /** Every rule without domains (nameVerdict walks these). */
  readonly domainless: readonly number[]
  /** Rules without domains, with cidrs: by IPv4 address; those with IPv6 ranges, listed. */
  readonly v4: IntervalIndex | undefined
  readonly v6: readonly number[]
  /** Rules without domains or cidrs, with ports: by port, per transport. */
  readonly tcpPorts: IntervalIndex | undefined
  readonly udpPorts: IntervalIndex | undefined
  /** Rules with appProtocols only, by protocol (`udp` also stands for every UDP flow). */
  readonly app: ReadonlyMap<AppProtocol, readonly number[]>
  /** Rules an index above would have grown too large for: always candidates. */
  readonly always: readonly number[]
}

function append<K>(m: Map<K, number[]>, key: K, rule: number): void {
  const list = m.get(key)
  if (list === undefined) m.set(key, [rule])
  else if (list[list.length - 1] !== rule) list.push(rule)
}

export function buildRuleIndex(rules: readonly TrafficRule[]): TrafficRuleIndex {
  const exact = new Map<string, number[]>()
  const suffix = new Map<string, number[]>()
  const app = new Map<AppProtocol, number[]>()
  const domainless: number[] = []
  const v4: Array<{ lo: number; hi: number; rule: number }> = []
  const v6: number[] = []
  const ports = { tcp: [] as Array<{ lo: number; hi: number; rule: number }>, udp: [] as typeof v4 }
  rules.forEach((r, i) => {
    if (r.domains?.length) {
      for (const d of r.domains) {
        const p = parseDomainPattern(d)
        if (!p.ok) continue // checked policies only: cannot happen
        if (p.pattern.kind === 'exact') append(exact, p.pattern.name, i)
        else append(suffix, p.pattern.suffix, i)
      }
      return
    }
    domainless.push(i)
    if (r.cidrs?.length) {
      let six = false
      for (const c of r.cidrs) {
        const range = parseCidr(c)
        if (range?.v === 4) v4.push({ lo: range.lo, hi: range.hi, rule: i })
        else six = true
      }
      if (six) v6.push(i)
    } else if (r.ports?.length) {
      for (const s of r.ports) ports[portTransport(s)].push({ lo: s.port, hi: s.endPort ?? s.port, rule: i })
    } else {
      for (const a of r.appProtocols ?? []) append(app, a, i)
    }
  })
  const max = limits.egressRuleIndexEntriesMax
  const always: number[] = []
  const index = (ranges: typeof v4): IntervalIndex | undefined => {
    if (ranges.length === 0) return undefined
    const built = IntervalIndex.build(ranges, max)
    if (built === undefined)
      for (const r of ranges) if (always[always.length - 1] !== r.rule) always.push(r.rule)
    return built
  }
  const result = {
    exact,
    suffix,
    domainless,
    v4: index(v4),
    v6,
    tcpPorts: index(ports.tcp),
    udpPorts: index(ports.udp),
    app,
    always: [...new Set(always)].sort((a, b) => a - b),
  }
  return result
}
