// decide, nameVerdict and alwaysDenied: the documented semantics by example, then the compiled
// matcher against a plain reference over random policies and flows, and nameVerdict's promise
// (a denied name has no allowed flow) checked the same way.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compilePolicy } from '../../src/egress/policy/compile.js'
import { alwaysDenied, decide, nameDecision, nameVerdict, type Flow } from '../../src/egress/policy/match.js'
import {
  APP_PROTOCOLS,
  type NetworkEgressPolicy,
  type SandboxNetworkPolicy,
  type TrafficRule,
} from '../../src/egress/policy/types.js'
import { pbt } from './pbt.js'
import { referenceDecide } from './reference.js'

const tcp = (ip: string, port: number, names: string[] = [], appProtocol?: Flow['appProtocol']): Flow => ({
  transport: 'tcp',
  ip,
  port,
  names,
  ...(appProtocol ? { appProtocol } : {}),
})

describe('decide: trafficRules', () => {
  const p = compilePolicy({
    mode: 'block-all',
    egress: {
      trafficRules: [
        { name: 'no-gist', action: 'deny', domains: ['gist.github.com'] },
        { name: 'github', action: 'allow', domains: ['*.github.com'], ports: [{ port: 443 }, { port: 22 }] },
        { action: 'allow', cidrs: ['10.1.0.0/16'], ports: [{ port: 5000, endPort: 5010 }] },
        { name: 'dns', action: 'allow', cidrs: ['10.9.9.9/32'], ports: [{ port: 53, protocol: 'udp' }] },
        { name: 'ssh-anywhere', action: 'allow', appProtocols: ['ssh'] },
        { name: 'no-udp', action: 'deny', appProtocols: ['udp'] },
      ],
    },
  })

  it('takes the first rule that matches in every field it gives', () => {
    expect(decide(p, tcp('1.1.1.1', 443, ['gist.github.com']))).toEqual({
      action: 'deny',
      reason: 'egress.trafficRules[0] "no-gist"',
    })
    expect(decide(p, tcp('1.1.1.1', 443, ['API.GitHub.com.']))).toEqual({
      action: 'allow',
      reason: 'egress.trafficRules[1] "github"',
    })
    // *.suffix covers the suffix itself, as upstream does.
    expect(decide(p, tcp('1.1.1.1', 22, ['github.com'])).action).toBe('allow')
    expect(decide(p, tcp('1.1.1.1', 80, ['api.github.com']))).toEqual({
      action: 'deny',
      reason: 'mode block-all',
    })
    expect(decide(p, tcp('1.1.1.1', 443, ['notgithub.com'])).action).toBe('deny')
    expect(decide(p, tcp('10.1.2.3', 5005))).toEqual({ action: 'allow', reason: 'egress.trafficRules[2]' })
    expect(decide(p, tcp('10.1.2.3', 5011)).action).toBe('deny')
    expect(decide(p, tcp('::ffff:10.1.2.3', 5000)).action).toBe('allow')
  })

  it('matches any of the names a flow is known by', () => {
    expect(decide(p, tcp('1.1.1.1', 443, ['x.example', 'api.github.com'])).action).toBe('allow')
    expect(decide(p, tcp('1.1.1.1', 443, ['api.github.com', 'gist.github.com'])).reason).toBe(
      'egress.trafficRules[0] "no-gist"',
    )
  })

  it('tells transports apart: a PortSpec is tcp unless it says udp', () => {
    expect(decide(p, { transport: 'udp', ip: '10.9.9.9', port: 53, names: [] }).reason).toBe(
      'egress.trafficRules[3] "dns"',
    )
    expect(decide(p, tcp('10.9.9.9', 53)).action).toBe('deny')
    // `udp` in appProtocols catches every UDP flow, whatever it carries.
    expect(
      decide(p, { transport: 'udp', ip: '8.8.8.8', port: 53, names: [], appProtocol: 'dns' }).reason,
    ).toBe('egress.trafficRules[5] "no-udp"')
  })

  it('needs the classified protocol for an appProtocols rule', () => {
    expect(decide(p, tcp('8.8.8.8', 2222, [], 'ssh')).reason).toBe('egress.trafficRules[4] "ssh-anywhere"')
    expect(decide(p, tcp('8.8.8.8', 2222)).action).toBe('deny')
  })

  it('falls back to the mode', () => {
    const open = compilePolicy({
      mode: 'allow-all',
      egress: { trafficRules: [{ action: 'deny', ports: [{ port: 25 }] }] },
    })
    expect(decide(open, tcp('8.8.8.8', 443))).toEqual({ action: 'allow', reason: 'mode allow-all' })
    expect(decide(open, tcp('8.8.8.8', 25))).toEqual({ action: 'deny', reason: 'egress.trafficRules[0]' })
    expect(decide(compilePolicy({ mode: 'block-all' }), tcp('8.8.8.8', 443)).reason).toBe('mode block-all')
  })
})

describe('decide: legacy lists', () => {
  const block = (e: NetworkEgressPolicy) => compilePolicy({ mode: 'block-all', egress: e })

  it('block-all: a domain OR a cidr, and the port when ports are given', () => {
    const p = block({
      allowedDomains: ['*.pypi.org'],
      allowedCidrs: ['10.0.0.0/8'],
      allowedPorts: [{ port: 443 }],
    })
    expect(decide(p, tcp('1.2.3.4', 443, ['files.pypi.org']))).toEqual({
      action: 'allow',
      reason: 'egress.allowedDomains',
    })
    expect(decide(p, tcp('10.2.3.4', 443))).toEqual({ action: 'allow', reason: 'egress.allowedCidrs' })
    expect(decide(p, tcp('10.2.3.4', 80)).action).toBe('deny')
    expect(decide(p, tcp('1.2.3.4', 443, ['evil.org']))).toEqual({ action: 'deny', reason: 'mode block-all' })
  })

  it('block-all: ports alone open those ports everywhere; nothing listed opens nothing', () => {
    const p = block({ allowedPorts: [{ port: 53, protocol: 'udp' }] })
    expect(decide(p, { transport: 'udp', ip: '8.8.8.8', port: 53, names: [] })).toEqual({
      action: 'allow',
      reason: 'egress.allowedPorts',
    })
    expect(decide(p, tcp('8.8.8.8', 53)).action).toBe('deny')
    expect(decide(block({ deniedDomains: ['x.com'] }), tcp('8.8.8.8', 53)).reason).toBe('mode block-all')
  })

  it('denied lists deny in either mode, before any allowed list', () => {
    const open = compilePolicy({
      mode: 'allow-all',
      egress: {
        deniedDomains: ['*.tracker.io'],
        deniedCidrs: ['192.168.0.0/16'],
        deniedPorts: [{ port: 25 }],
      },
    })
    expect(decide(open, tcp('1.1.1.1', 443, ['a.tracker.io'])).reason).toBe('egress.deniedDomains')
    expect(decide(open, tcp('192.168.1.1', 443)).reason).toBe('egress.deniedCidrs')
    expect(decide(open, tcp('1.1.1.1', 25)).reason).toBe('egress.deniedPorts')
    expect(decide(open, tcp('1.1.1.1', 443, ['ok.io'])).reason).toBe('mode allow-all')
    const p = block({ allowedDomains: ['*.github.com'], deniedDomains: ['gist.github.com'] })
    expect(decide(p, tcp('1.1.1.1', 443, ['gist.github.com'])).reason).toBe('egress.deniedDomains')
  })
})

describe('nameVerdict', () => {
  it('denies only names no flow could be allowed to', () => {
    const p = compilePolicy({
      mode: 'block-all',
      egress: {
        trafficRules: [
          { action: 'deny', domains: ['bad.example.com'] },
          { action: 'allow', domains: ['*.example.com'], ports: [{ port: 443 }] },
          {
            action: 'deny',
            domains: ['*.corp'],
            ports: [
              { port: 1, endPort: 65_535 },
              { port: 1, endPort: 65_535, protocol: 'udp' },
            ],
          },
        ],
      },
    })
    expect(nameDecision(p, 'bad.example.com')).toEqual({ action: 'deny', reason: 'egress.trafficRules[0]' })
    expect(nameVerdict(p, 'API.example.com.')).toBe('maybe')
    expect(nameDecision(p, 'x.corp')).toEqual({ action: 'deny', reason: 'egress.trafficRules[2]' })
    expect(nameDecision(p, 'other.org')).toEqual({ action: 'deny', reason: 'mode block-all' })
    // An address rule (or a port-only or protocol-only rule) may let any name through.
    const cidr = compilePolicy({
      mode: 'block-all',
      egress: { trafficRules: [{ action: 'allow', cidrs: ['10.0.0.0/8'] }] },
    })
    expect(nameVerdict(cidr, 'anything.org')).toBe('maybe')
    const allowAll = compilePolicy({
      mode: 'allow-all',
      egress: { trafficRules: [{ action: 'deny', domains: ['x.org'] }] },
    })
    expect(nameVerdict(allowAll, 'x.org')).toBe('deny')
    expect(nameVerdict(allowAll, 'y.org')).toBe('maybe')
  })

  it('legacy lists', () => {
    const p = compilePolicy({
      mode: 'block-all',
      egress: { allowedDomains: ['*.pypi.org'], deniedDomains: ['evil.pypi.org'] },
    })
    expect(nameVerdict(p, 'files.pypi.org')).toBe('maybe')
    expect(nameDecision(p, 'evil.pypi.org').reason).toBe('egress.deniedDomains')
    expect(nameVerdict(p, 'github.com')).toBe('deny')
    expect(
      nameVerdict(compilePolicy({ mode: 'block-all', egress: { allowedCidrs: ['1.0.0.0/8'] } }), 'a.b'),
    ).toBe('maybe')
    expect(
      nameVerdict(compilePolicy({ mode: 'block-all', egress: { allowedPorts: [{ port: 443 }] } }), 'a.b'),
    ).toBe('maybe')
    expect(nameVerdict(compilePolicy({ mode: 'block-all' }), 'a.b')).toBe('deny')
    expect(nameVerdict(compilePolicy({ mode: 'allow-all' }), 'a.b')).toBe('maybe')
  })
})

describe('alwaysDenied', () => {
  it('refuses loopback, link-local, metadata, unspecified, multicast, broadcast and IPv6', () => {
    const denied = [
      '127.0.0.1',
      '127.255.0.9',
      '169.254.169.254',
      '169.254.1.1',
      '0.0.0.0',
      '0.1.2.3',
      '224.0.0.1',
    ]
    for (const ip of [
      ...denied,
      '239.255.255.250',
      '255.255.255.255',
      '240.0.0.1',
      '::1',
      '::',
      'fe80::1',
      'ff02::1',
    ]) {
      expect(alwaysDenied(ip), ip).toBeTypeOf('string')
    }
    expect(alwaysDenied('169.254.169.254')).toBe('the cloud metadata address 169.254.169.254')
    expect(alwaysDenied('::ffff:127.0.0.1')).toBe('a loopback address (127.0.0.0/8)')
    expect(alwaysDenied('2606:4700::1111')).toBe('an IPv6 address (IPv6 is not routed for sandboxes)')
    expect(alwaysDenied('localhost')).toBe('"localhost" is not an IP address')
    for (const ip of [
      '1.1.1.1',
      '10.0.0.1',
      '192.168.1.1',
      '100.64.0.1',
      '223.255.255.255',
      '::ffff:8.8.8.8',
    ]) {
      expect(alwaysDenied(ip), ip).toBeUndefined()
    }
  })
})

// ---- random policies against the reference ----

const NAMES = ['a.com', 'b.a.com', 'c.b.a.com', 'x.org', 'y.x.org', 'com', 'org', 'z.net']
const domain = fc.constantFrom(...NAMES, ...NAMES.map((n) => `*.${n}`), 'A.COM', 'x.org.')
const ip = fc.constantFrom(
  '10.0.0.1',
  '10.1.2.3',
  '192.168.1.1',
  '8.8.8.8',
  '::ffff:10.0.0.1',
  'fd00::1',
  '2001:db8::5',
)
const cidr = fc.constantFrom(
  '10.0.0.0/8',
  '10.1.0.0/16',
  '10.0.0.1/32',
  '0.0.0.0/0',
  'fd00::/8',
  '::/0',
  '192.168.0.0/24',
)
const port = fc
  .tuple(fc.integer({ min: 1, max: 100 }), fc.nat(20), fc.constantFrom(undefined, 'tcp', 'udp', 'UDP'))
  .map(([p, span, protocol]) => ({
    port: p,
    ...(span > 10 ? { endPort: p + span } : {}),
    ...(protocol ? { protocol } : {}),
  }))
const list = <T>(a: fc.Arbitrary<T>) => fc.array(a, { maxLength: 3 })

const rule: fc.Arbitrary<TrafficRule> = fc
  .record({
    name: fc.constantFrom(undefined, 'r'),
    action: fc.constantFrom('allow' as const, 'deny' as const),
    domains: list(domain),
    cidrs: list(cidr),
    ports: list(port),
    appProtocols: list(fc.constantFrom(...APP_PROTOCOLS)),
  })
  .filter((r) => r.domains.length + r.cidrs.length + r.ports.length + r.appProtocols.length > 0)
  .map((r) => {
    const out: TrafficRule = { action: r.action }
    if (r.name) out.name = r.name
    for (const k of ['domains', 'cidrs', 'ports', 'appProtocols'] as const)
      if (r[k].length) Object.assign(out, { [k]: r[k] })
    return out
  })

const mode = fc.constantFrom('allow-all' as const, 'block-all' as const)
const policy: fc.Arbitrary<SandboxNetworkPolicy> = fc.oneof(
  fc.record({ mode, rules: fc.array(rule, { maxLength: 8 }) }).map(({ mode, rules }) => ({
    mode,
    egress: { trafficRules: rules.map((r, i) => (r.name ? { ...r, name: `r${i}` } : r)) },
  })),
  fc
    .record({
      mode,
      allowedDomains: list(domain),
      allowedCidrs: list(cidr),
      allowedPorts: list(port),
      deniedDomains: list(domain),
      deniedCidrs: list(cidr),
      deniedPorts: list(port),
    })
    .map(({ mode, ...lists }) => ({ mode, egress: lists })),
)
const flow: fc.Arbitrary<Flow> = fc
  .record({
    transport: fc.constantFrom('tcp' as const, 'udp' as const),
    ip,
    port: fc.integer({ min: 1, max: 130 }),
    names: fc.array(fc.constantFrom(...NAMES, 'B.A.COM', 'a.com.', 'other.io'), { maxLength: 2 }),
    appProtocol: fc.constantFrom(undefined, ...APP_PROTOCOLS),
  })
  .map((f) => {
    const { appProtocol, ...rest } = f
    return appProtocol === undefined ? rest : { ...rest, appProtocol }
  })

describe('the compiled matcher', () => {
  it('decides as the reference does, reason included', () => {
    fc.assert(
      fc.property(policy, fc.array(flow, { minLength: 1, maxLength: 12 }), (p, flows) => {
        const c = compilePolicy(p)
        for (const f of flows) expect(decide(c, f), JSON.stringify(f)).toEqual(referenceDecide(c.policy, f))
      }),
      pbt(600),
    )
  })

  it('denies a name only when every flow known by that name alone is denied', () => {
    // Every transport, address, protocol, and a port on each side of every range edge used above.
    const ports = [1, 2, 10, 11, 50, 99, 100, 101, 110, 111, 119, 120, 121, 200, 65_535]
    const ips = ['10.0.0.1', '10.1.2.3', '192.168.1.1', '8.8.8.8', 'fd00::1', '2001:db8::5']
    fc.assert(
      fc.property(policy, fc.constantFrom(...NAMES, 'other.io'), (p, n) => {
        const c = compilePolicy(p)
        if (nameVerdict(c, n) !== 'deny') return
        for (const transport of ['tcp', 'udp'] as const)
          for (const ip of ips)
            for (const port of ports)
              for (const appProtocol of [undefined, ...APP_PROTOCOLS]) {
                const f: Flow = { transport, ip, port, names: [n], ...(appProtocol ? { appProtocol } : {}) }
                expect(decide(c, f).action, JSON.stringify(f)).toBe('deny')
              }
      }),
      pbt(300),
    )
  })
})
