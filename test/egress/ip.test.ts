// IP and CIDR parsing against Node's own parser (net.isIP, net.SocketAddress), and the sorted
// range set against a plain scan.
import fc from 'fast-check'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import {
  formatIp,
  ipBytes,
  IpRangeSet,
  parseCidr,
  parseIp,
  type Ip,
  type IpRange,
} from '../../src/egress/policy/ip.js'
import { pbt } from './pbt.js'

const octet = fc.integer({ min: 0, max: 255 })
const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'))
const group = fc.integer({ min: 0, max: 0xffff }).map((g) => g.toString(16))
const v6full = fc.array(group, { minLength: 8, maxLength: 8 }).map((g) => g.join(':'))
/** Valid IPv6 text in its many spellings: full, `::` anywhere, an embedded IPv4 tail. */
const v6 = fc.oneof(
  v6full,
  fc.tuple(fc.array(group, { maxLength: 7 }), fc.nat(7)).map(([g, at]) => {
    const cut = Math.min(at, g.length)
    return `${g.slice(0, cut).join(':')}::${g.slice(cut).join(':')}`
  }),
  fc.tuple(fc.array(group, { minLength: 6, maxLength: 6 }), v4).map(([g, t]) => `${g.join(':')}:${t}`),
  v4.map((t) => `::ffff:${t}`),
)
/** Near misses: mutations of valid text. */
const mangled = fc
  .tuple(fc.oneof(v4, v6), fc.nat(40), fc.constantFrom('', '0', ':', '.', '::', 'g', '00', '%eth0', ' ', '/'))
  .map(([s, at, ins]) => s.slice(0, at % (s.length + 1)) + ins + s.slice(at % (s.length + 1)))

describe('IP parsing', () => {
  it('accepts exactly what Node accepts (no zone ids), with the same value, and prints it back', () => {
    fc.assert(
      fc.property(fc.oneof(v4, v6, mangled), (s) => {
        const ours = parseIp(s)
        expect(ours !== undefined, s).toBe(net.isIP(s) !== 0 && !s.includes('%'))
        if (ours === undefined) return
        const family = s.includes(':') ? 'ipv6' : 'ipv4'
        const canonical = new net.SocketAddress({ address: s, family }).address
        // The same address (Node prints ::/96 the deprecated IPv4-compatible way; we follow RFC 5952).
        expect(parseIp(canonical)).toEqual(ours)
        expect(parseIp(formatIp(ours))).toEqual(ours)
        expect(ipBytes(ours).length).toBe(ours.v === 4 ? 4 : 16)
      }),
      pbt(2_000),
    )
  })

  it('refuses the IPv4 spellings other parsers read differently', () => {
    for (const s of [
      '010.0.0.1',
      '1.2.3',
      '1.2.3.4.5',
      '0x7f.0.0.1',
      '256.0.0.1',
      '1.2.3.4 ',
      '',
      '::1%lo',
      '1::2::3',
    ]) {
      expect(parseIp(s), s).toBeUndefined()
    }
    expect(parseIp('::ffff:10.1.2.3')).toEqual({ v: 4, n: 0x0a010203 })
  })
})

describe('CIDRs', () => {
  it('parses both families, masks host bits, refuses bad prefixes', () => {
    expect(parseCidr('10.1.2.3/8')).toEqual({ v: 4, lo: 0x0a000000, hi: 0x0affffff })
    expect(parseCidr('0.0.0.0/0')).toEqual({ v: 4, lo: 0, hi: 0xffffffff })
    expect(parseCidr('2001:db8::/32')).toEqual({
      v: 6,
      lo: 0x20010db8n << 96n,
      hi: (0x20010db8n << 96n) | ((1n << 96n) - 1n),
    })
    // A range of IPv4-mapped addresses is that IPv4 range.
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual({ v: 4, lo: 0x0a000000, hi: 0x0affffff })
    for (const s of [
      '10.0.0.0/33',
      '10.0.0.0',
      '10.0.0.0/',
      '10.0.0.0/08',
      '::/129',
      '10.0.0.0/-1',
      'x/8',
      '10.0.0.0/8/8',
    ]) {
      expect(parseCidr(s), s).toBeUndefined()
    }
  })

  it('a range set answers as a scan of its ranges does', () => {
    const range = fc.oneof(
      fc
        .tuple(fc.nat(0xffffffff), fc.integer({ min: 0, max: 32 }))
        .map(([n, len]) => `${formatIp({ v: 4, n })}/${len}`),
      fc
        .tuple(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.integer({ min: 0, max: 128 }))
        .map(([n, len]) => `${formatIp({ v: 6, n })}/${len}`),
    )
    const probe = fc.oneof(
      fc.nat(0xffffffff).map((n) => ({ v: 4 as const, n })),
      fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((n) => ({ v: 6 as const, n })),
    )
    fc.assert(
      fc.property(fc.array(range, { maxLength: 12 }), fc.array(probe, { maxLength: 20 }), (cidrs, probes) => {
        const ranges = cidrs.map((c) => parseCidr(c) as IpRange)
        const set = new IpRangeSet(ranges)
        const edges = ranges.flatMap((r): Ip[] =>
          r.v === 4
            ? [
                { v: 4, n: r.lo },
                { v: 4, n: r.hi },
                { v: 4, n: r.hi + 1 },
              ]
            : [
                { v: 6, n: r.lo },
                { v: 6, n: r.hi },
                { v: 6, n: r.hi + 1n },
              ],
        )
        for (const p of [...probes, ...edges]) {
          const scan = ranges.some((r) => r.v === p.v && p.n >= r.lo && p.n <= r.hi)
          expect(set.has(p)).toBe(scan)
        }
      }),
      pbt(500),
    )
  })
})
