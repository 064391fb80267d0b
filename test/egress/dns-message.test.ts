// DNS wire format: round trips, compression read back (RDATA names included), and every way a
// packet can lie about itself refused as dns_message_invalid, never a crash or a hang.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import {
  addressRecord,
  encodeMessage,
  FLAG,
  nameLabels,
  parseMessage,
  readName,
  recordAddress,
  recordTarget,
  TYPE,
  type DnsMessage,
} from '../../src/egress/dns/message.js'
import { pbt } from './pbt.js'

function invalid(b: Buffer): string {
  try {
    parseMessage(b)
  } catch (err) {
    expect(isS0Error(err, 'dns_message_invalid'), String(err)).toBe(true)
    return (err as Error).message
  }
  throw new Error('parsed')
}

const header = (qd: number, an = 0, ns = 0, ar = 0, flags = 0): Buffer => {
  const h = Buffer.alloc(12)
  h.writeUInt16BE(0xbeef, 0)
  h.writeUInt16BE(flags, 2)
  h.writeUInt16BE(qd, 4)
  h.writeUInt16BE(an, 6)
  h.writeUInt16BE(ns, 8)
  h.writeUInt16BE(ar, 10)
  return h
}
const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff])
const ptr = (to: number) => Buffer.from([0xc0 | (to >> 8), to & 0xff])
const wire = (name: string) =>
  Buffer.concat([
    ...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ])

describe('DNS messages', () => {
  it('round-trip every section, OPT and opaque RDATA included', () => {
    const m: DnsMessage = {
      id: 7,
      flags: FLAG.QR | FLAG.RD | FLAG.RA,
      questions: [{ name: 'Www.Example.com', type: TYPE.A, class: 1 }],
      answers: [
        { name: 'Www.Example.com', type: TYPE.CNAME, class: 1, ttl: 300, data: wire('cdn.example.net') },
        addressRecord('cdn.example.net', Buffer.from([192, 0, 2, 7]), 60),
        addressRecord('cdn.example.net', Buffer.from('20010db8000000000000000000000001', 'hex'), 60),
        { name: 'example.com', type: TYPE.TXT, class: 1, ttl: 5, data: Buffer.from('\x05hello', 'latin1') },
      ],
      authorities: [],
      additionals: [
        { name: '', type: TYPE.OPT, class: 1232, ttl: 0x8000, data: Buffer.from([0, 10, 0, 2, 1, 2]) },
      ],
    }
    const back = parseMessage(encodeMessage(m))
    expect(back).toEqual(m)
    expect(back.answers.map(recordAddress)).toEqual([undefined, '192.0.2.7', '2001:db8::1', undefined])
    expect(recordTarget(back.answers[0]!)).toBe('cdn.example.net')
  })

  it('reads compressed names, in owners and inside RDATA, and writes them back whole', () => {
    // Question at 12; answer owner points to it; CNAME RDATA = "cdn" + pointer to "example.com".
    const q = Buffer.concat([wire('www.example.com'), u16(TYPE.A), u16(1)])
    const cname = Buffer.concat([Buffer.from([3]), Buffer.from('cdn'), ptr(12 + 4)])
    const ans = Buffer.concat([
      ptr(12),
      u16(TYPE.CNAME),
      u16(1),
      Buffer.from([0, 0, 0, 60]),
      u16(cname.length),
      cname,
    ])
    const mxData = Buffer.concat([u16(10), Buffer.from([4]), Buffer.from('mail'), ptr(12 + 4)])
    const mx = Buffer.concat([
      ptr(12 + 4),
      u16(TYPE.MX),
      u16(1),
      Buffer.from([0, 0, 0, 60]),
      u16(mxData.length),
      mxData,
    ])
    const m = parseMessage(Buffer.concat([header(1, 2, 0, 0, FLAG.QR), q, ans, mx]))
    expect(m.answers[0]!.name).toBe('www.example.com')
    expect(recordTarget(m.answers[0]!)).toBe('cdn.example.com')
    expect(m.answers[1]!.data).toEqual(Buffer.concat([u16(10), wire('mail.example.com')]))
    expect(parseMessage(encodeMessage(m))).toEqual(m)
  })

  it('refuses compression loops and forward pointers', () => {
    const loopSelf = Buffer.concat([header(1), ptr(12), u16(1), u16(1)])
    expect(invalid(loopSelf)).toBe('DNS message: a compression pointer does not point backwards')
    // "a" then a pointer back to the start of the same name.
    const loopBack = Buffer.concat([header(1), Buffer.from([1, 0x61]), ptr(12), u16(1), u16(1)])
    expect(invalid(loopBack)).toMatch(/does not point backwards/)
    // Two names pointing at each other: the second's target is the first, whose pointer goes forward.
    const mutual = Buffer.concat([header(2), ptr(18), u16(1), u16(1), ptr(12), u16(1), u16(1)])
    expect(invalid(mutual)).toMatch(/does not point backwards/)
  })

  it('refuses every other lie', () => {
    const q = Buffer.concat([wire('a.com'), u16(1), u16(1)])
    expect(invalid(Buffer.alloc(11))).toBe('DNS message: shorter than a header')
    expect(invalid(Buffer.concat([header(2), q]))).toMatch(/runs past the end/)
    expect(invalid(Buffer.concat([header(1), q.subarray(0, q.length - 1)]))).toMatch(
      /question runs past the end/,
    )
    expect(invalid(Buffer.concat([header(1), Buffer.from([0x40, 0]), u16(1), u16(1)]))).toBe(
      'DNS message: an unknown label type',
    )
    const long = Buffer.concat([
      ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 0x61)])),
      Buffer.from([0]),
    ])
    expect(invalid(Buffer.concat([header(1), long, u16(1), u16(1)]))).toBe(
      'DNS message: a name longer than 255 octets',
    )
    const rr = Buffer.concat([
      wire('a.com'),
      u16(TYPE.A),
      u16(1),
      Buffer.from([0, 0, 0, 1]),
      u16(10),
      Buffer.alloc(4),
    ])
    expect(invalid(Buffer.concat([header(0, 1), rr]))).toBe('DNS message: RDATA runs past the end')
    const badCname = Buffer.concat([
      wire('a.com'),
      u16(TYPE.CNAME),
      u16(1),
      Buffer.from([0, 0, 0, 1]),
      u16(9),
      wire('b.com'),
      Buffer.alloc(2),
    ])
    expect(invalid(Buffer.concat([header(0, 1), badCname]))).toBe(
      'DNS message: RDATA longer than its contents',
    )
    expect(invalid(Buffer.concat([header(65_535), q]))).toMatch(/runs past the end/)
  })

  it('escapes label bytes that are not plain text, and reads the escapes back', () => {
    const b = Buffer.concat([Buffer.from([3, 0x61, 0x2e, 0x00, 2, 0x5c, 0x20, 0])])
    const { name, next } = readName(b, 0)
    expect(name).toBe('a\\.\\000.\\\\\\032')
    expect(next).toBe(b.length)
    expect(nameLabels(name)).toEqual([Buffer.from([0x61, 0x2e, 0]), Buffer.from([0x5c, 0x20])])
    expect(() => nameLabels('a..b')).toThrow(/a label of 0 octets/)
    expect(() => nameLabels(`${'a'.repeat(64)}.com`)).toThrow(/a label of 64 octets/)
  })

  it('any bytes parse or are refused as dns_message_invalid, never anything else', () => {
    const valid = encodeMessage({
      id: 1,
      flags: FLAG.QR,
      questions: [{ name: 'x.example.org', type: TYPE.AAAA, class: 1 }],
      answers: [{ name: 'x.example.org', type: TYPE.CNAME, class: 1, ttl: 1, data: wire('y.example.org') }],
      authorities: [],
      additionals: [],
    })
    const mutated = fc
      .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 })
      .map((edits) => {
        const b = Buffer.from(valid)
        for (const [at, v] of edits) b[at] = v
        return b
      })
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      mutated,
      fc.nat(valid.length).map((n) => valid.subarray(0, n)),
    )
    fc.assert(
      fc.property(input, (b) => {
        try {
          const m = parseMessage(b)
          expect(parseMessage(encodeMessage(m))).toEqual(m)
        } catch (err) {
          expect(isS0Error(err, 'dns_message_invalid'), String(err)).toBe(true)
        }
      }),
      pbt(3_000),
    )
  })
})
