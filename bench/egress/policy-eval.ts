// egress_policy_eval: one decision of the compiled matcher (src/egress/policy/match.ts) under a
// policy of 1,000 traffic rules, in µs, against a plain linear scan of the same rules in the same
// run (string compares for domains, CIDRs and ports parsed once, no index): what a first matcher
// would do. Both give the same decision for every flow, which the bench checks before timing.
import { compilePolicy } from '../../src/egress/policy/compile.js'
import { parseCidr, parseIp } from '../../src/egress/policy/ip.js'
import { decide, type Decision, type Flow } from '../../src/egress/policy/match.js'
import type { SandboxNetworkPolicy, TrafficRule } from '../../src/egress/policy/types.js'
import { figure, median, note, round, type Figure } from '../lib.js'

const RULES = 1_000
const FLOWS = 4_096
const ROUNDS = Number(process.env['S0_BENCH_POLICY_ROUNDS'] ?? 15)

/** 1,000 rules of every kind: exact names, suffixes, CIDRs with ports, protocol-only rules. */
export function thousandRulePolicy(): SandboxNetworkPolicy {
  const rules: TrafficRule[] = []
  for (let i = 0; i < RULES; i++) {
    const action = i % 7 === 0 ? 'deny' : 'allow'
    const name = `r${i}`
    if (i % 10 < 4)
      rules.push({ name, action, domains: [`svc${i}.team${i % 50}.example.com`], ports: [{ port: 443 }] })
    else if (i % 10 < 7) rules.push({ name, action, domains: [`*.zone${i}.example.net`] })
    else if (i % 10 < 9) {
      rules.push({
        name,
        action,
        cidrs: [`10.${(i >> 8) & 255}.${i & 255}.0/24`],
        ports: [{ port: 5000, endPort: 5100 }],
      })
    } else rules.push({ name, action, appProtocols: ['ssh'], ports: [{ port: 2200 + i }] })
  }
  return { mode: 'block-all', egress: { trafficRules: rules } }
}

/** Flows that hit rules all along the list, raw-IP flows, and flows no rule matches (a full scan). */
export function benchFlows(): Flow[] {
  const flows: Flow[] = []
  for (let k = 0; k < FLOWS; k++) {
    const i = (k * 7919) % RULES
    switch (k % 4) {
      case 0:
        flows.push({
          transport: 'tcp',
          ip: '93.184.216.34',
          port: 443,
          names: [`svc${i}.team${i % 50}.example.com`],
        })
        break
      case 1:
        flows.push({
          transport: 'tcp',
          ip: '151.101.1.1',
          port: 443,
          names: [`a.b.zone${i}.example.net`],
          appProtocol: 'tls',
        })
        break
      case 2:
        flows.push({ transport: 'tcp', ip: `10.${(i >> 8) & 255}.${i & 255}.9`, port: 5050, names: [] })
        break
      default:
        flows.push({
          transport: 'tcp',
          ip: '203.0.113.5',
          port: 443,
          names: [`unknown${k}.example.org`],
          appProtocol: 'http',
        })
    }
  }
  return flows
}

/** The linear scan: each rule in order, every field compared directly. */
export function linearMatcher(p: SandboxNetworkPolicy): (f: Flow) => Decision {
  const rules = (p.egress?.trafficRules ?? []).map((r, i) => ({
    label: `egress.trafficRules[${i}]${r.name ? ` ${JSON.stringify(r.name)}` : ''}`,
    action: r.action,
    domains: r.domains,
    cidrs: r.cidrs?.map((c) => parseCidr(c)!),
    ports: r.ports?.map((s) => ({ lo: s.port, hi: s.endPort ?? s.port, transport: s.protocol ?? 'tcp' })),
    appProtocols: r.appProtocols,
  }))
  const fallback: Decision =
    p.mode === 'allow-all'
      ? { action: 'allow', reason: 'mode allow-all' }
      : { action: 'deny', reason: 'mode block-all' }
  return (f) => {
    const ip = parseIp(f.ip)
    const names = f.names.map((n) => n.toLowerCase())
    for (const r of rules) {
      if (
        r.domains &&
        !names.some((n) =>
          r.domains!.some((d) => (d.startsWith('*.') ? n === d.slice(2) || n.endsWith(d.slice(1)) : n === d)),
        )
      )
        continue
      if (r.cidrs && !(ip && r.cidrs.some((c) => c.v === ip.v && ip.n >= c.lo && ip.n <= c.hi))) continue
      if (r.ports && !r.ports.some((s) => s.transport === f.transport && f.port >= s.lo && f.port <= s.hi))
        continue
      if (r.appProtocols && !(f.appProtocol && r.appProtocols.includes(f.appProtocol))) continue
      return { action: r.action, reason: r.label }
    }
    return fallback
  }
}

/** µs per decision over all flows, best of a few passes per round, median over rounds. */
function timePerDecisionUs(run: () => number): number {
  const t0 = process.hrtime.bigint()
  const n = run()
  return Number(process.hrtime.bigint() - t0) / 1e3 / n
}

export async function benchPolicyEval(): Promise<Figure> {
  const source = thousandRulePolicy()
  const compiled = compilePolicy(source)
  const linear = linearMatcher(compiled.policy)
  const flows = benchFlows()
  for (const f of flows) {
    const a = decide(compiled, f)
    const b = linear(f)
    if (a.action !== b.action || a.reason !== b.reason) {
      throw new Error(
        `egress_policy_eval: the matchers disagree on ${JSON.stringify(f)}: ${a.reason} vs ${b.reason}`,
      )
    }
  }
  let sink = 0
  const ours: number[] = []
  const scan: number[] = []
  note(`egress_policy_eval: ${RULES} rules, ${flows.length} flows, ${ROUNDS} rounds`)
  // Interleaved rounds after a warm-up, so JIT and host load fall on both sides alike.
  for (let round = -2; round < ROUNDS; round++) {
    const a = timePerDecisionUs(() => {
      for (const f of flows) sink += decide(compiled, f).action === 'allow' ? 1 : 0
      return flows.length
    })
    const b = timePerDecisionUs(() => {
      for (const f of flows) sink += linear(f).action === 'allow' ? 1 : 0
      return flows.length
    })
    if (round >= 0) {
      ours.push(a)
      scan.push(b)
    }
  }
  const allowed = sink / (ROUNDS + 2) / 2
  return figure({
    name: 'egress_policy_eval',
    value: median(ours),
    unit: 'µs',
    baseline: {
      name: `linear scan of the same ${RULES} rules (string compares, CIDRs parsed once) in the same run`,
      value: round(median(scan), 3),
      unit: 'µs',
    },
    higherIsBetter: false,
    // The index must pay for itself many times over at this size.
    target: { ratio: 0.1 },
    detail: {
      rules: RULES,
      flows: flows.length,
      allowedPerPass: allowed,
      ours: {
        median: round(median(ours), 3),
        min: round(Math.min(...ours), 3),
        max: round(Math.max(...ours), 3),
      },
      linear: {
        median: round(median(scan), 3),
        min: round(Math.min(...scan), 3),
        max: round(Math.max(...scan), 3),
      },
    },
  })
}
