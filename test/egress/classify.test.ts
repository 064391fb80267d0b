// The classifier: real ClientHellos from Node's TLS client over loopback, ClientHellos built by a
// generator (SNI and ALPN round-trip, however the hello is cut into records and reads), every
// other protocol's opening and its prefixes, malformed openings, and random bytes.
import fc from 'fast-check'
import net from 'node:net'
import tls from 'node:tls'
import { describe, expect, it } from 'vitest'
import { limits } from '../../src/core/limits.js'
import { sniff, sniffDatagram, type Sniffed } from '../../src/egress/classify.js'
import { encodeMessage, FLAG, TYPE } from '../../src/egress/dns/message.js'
import { pbt } from './pbt.js'

/** The first bytes Node's TLS client sends to a loopback listener. */
async function nodeClientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      let got = Buffer.alloc(0)
      server.once('connection', (s) => {
        s.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d])
          // A whole first record is the whole hello for Node's client.
          if (got.length >= 5 && got.length >= 5 + got.readUInt16BE(3)) {
            s.destroy()
            resolve(got)
          }
        })
      })
      const c = tls.connect({ host: '127.0.0.1', port, ...opts })
      c.on('error', () => undefined) // the server hangs up: expected
      setTimeout(() => reject(new Error('no ClientHello')), 5_000).unref()
    })
  } finally {
    server.close()
  }
}

/** The handshake message of a record-framed hello, re-framed into records of the given sizes. */
function reframe(hello: Buffer, sizes: readonly number[]): Buffer {
  const hs = hello.subarray(5, 5 + hello.readUInt16BE(3))
  const out: Buffer[] = []
  let p = 0
  for (let i = 0; p < hs.length; i++) {
    const n = Math.min(Math.max(1, sizes[i % Math.max(1, sizes.length)] ?? hs.length), hs.length - p)
    out.push(Buffer.from([0x16, 0x03, 0x01, n >> 8, n & 0xff]), hs.subarray(p, p + n))
    p += n
  }
  return Buffer.concat(out)
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff])
}

function ext(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body])
}

function sniExt(names: readonly string[]): Buffer {
  const list = Buffer.concat(
    names.map((n) => Buffer.concat([Buffer.from([0]), u16(n.length), Buffer.from(n, 'latin1')])),
  )
  return ext(0, Buffer.concat([u16(list.length), list]))
}

function alpnExt(protos: readonly string[]): Buffer {
  const list = Buffer.concat(
    protos.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])),
  )
  return ext(16, Buffer.concat([u16(list.length), list]))
}

/** A ClientHello record built by hand. */
function buildHello(o: { sid: number; suites: number; exts: Buffer[] }): Buffer {
  const extensions = Buffer.concat(o.exts)
  const body = Buffer.concat([
    Buffer.from([0x03, 0x03]),
    Buffer.alloc(32, 7),
    Buffer.from([o.sid]),
    Buffer.alloc(o.sid, 1),
    u16(o.suites * 2),
    Buffer.alloc(o.suites * 2, 0x13),
    Buffer.from([1, 0]),
    u16(extensions.length),
    extensions,
  ])
  const hs = Buffer.concat([
    Buffer.from([1, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]),
    body,
  ])
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs])
}

/** Every strict prefix needs more (or is classified the same); the whole gives `want`. */
function expectPrefixes(whole: Buffer, want: Sniffed): void {
  expect(sniff(whole)).toEqual(want)
  for (let n = 1; n < whole.length; n++) {
    const s = sniff(whole.subarray(0, n))
    if (!s.needMore) expect(s.appProtocol, `${n} of ${whole.length} bytes`).toBe(want.appProtocol)
  }
}

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/)
const hostName = fc.array(label, { minLength: 1, maxLength: 5 }).map((l) => l.join('.'))

describe('TLS', () => {
  it("reads SNI and ALPN from Node's own ClientHello, whole, cut into reads, or split into records", async () => {
    const hello = await nodeClientHello({ servername: 'API.Example.com', ALPNProtocols: ['h2', 'http/1.1'] })
    const want: Sniffed = {
      appProtocol: 'tls',
      serverName: 'api.example.com',
      alpn: ['h2', 'http/1.1'],
      needMore: false,
    }
    expectPrefixes(hello, want)
    for (const sizes of [[1], [3, 100], [200], [17, 5]]) expectPrefixes(reframe(hello, sizes), want)
    // Bytes after the hello (early data, a second record) change nothing.
    expect(sniff(Buffer.concat([hello, Buffer.from([0x17, 3, 3, 0, 1, 0])]))).toEqual(want)
  })

  it('a hello without SNI is TLS without a server name', async () => {
    const hello = await nodeClientHello({ servername: '' })
    expect(sniff(hello)).toEqual({ appProtocol: 'tls', needMore: false })
  })

  it('generated ClientHellos round-trip their SNI and ALPN however they are framed', () => {
    fc.assert(
      fc.property(
        hostName,
        fc.array(fc.stringMatching(/^[a-z0-9/.]{1,12}$/), { maxLength: 4 }),
        fc.nat(32),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 4 }),
        fc.array(fc.uint8Array({ maxLength: 60 }), { maxLength: 5 }),
        (name, alpn, sid, suites, sizes, padding) => {
          const exts = [sniExt([name]), ...padding.map((p, i) => ext(0x4000 + i, Buffer.from(p)))]
          if (alpn.length > 0) exts.push(alpnExt(alpn))
          const hello = reframe(buildHello({ sid, suites, exts }), sizes)
          const want: Sniffed = { appProtocol: 'tls', serverName: name, needMore: false }
          if (alpn.length > 0) want.alpn = alpn
          expect(sniff(hello)).toEqual(want)
          const cut = Math.max(1, hello.length - 1 - (sizes[0] ?? 0))
          expect(sniff(hello.subarray(0, cut)).needMore).toBe(true)
        },
      ),
      pbt(300),
    )
  })

  it('refuses hellos that servers would read differently, reporting no protocol', () => {
    const base = { sid: 0, suites: 1 }
    const cases: Array<[string, Buffer]> = [
      ['two host names', buildHello({ ...base, exts: [sniExt(['a.com', 'b.com'])] })],
      ['server_name twice', buildHello({ ...base, exts: [sniExt(['a.com']), sniExt(['b.com'])] })],
      ['a NUL in the name', buildHello({ ...base, exts: [sniExt(['a.com\0.evil'])] })],
      ['a slash in the name', buildHello({ ...base, exts: [sniExt(['a.com/x'])] })],
      ['an empty ALPN entry', buildHello({ ...base, exts: [alpnExt([''])] })],
      ['a session id over 32', buildHello({ ...base, sid: 33, exts: [] })],
    ]
    for (const [what, hello] of cases) {
      const s = sniff(hello)
      expect(s.appProtocol, what).toBeUndefined()
      expect(s.needMore, what).toBe(false)
      expect(s.malformed, what).toMatch(/^TLS: /)
    }
    // A record that is not a handshake inside the hello.
    const hello = reframe(buildHello({ ...base, exts: [sniExt(['a.com'])] }), [10])
    hello[15] = 0x17
    expect(sniff(hello).malformed).toBe('TLS: a record other than handshake inside the ClientHello')
  })

  it('stops at the sniff bound', () => {
    const big = buildHello({
      sid: 0,
      suites: 1,
      exts: [sniExt(['a.com']), ext(0x4444, Buffer.alloc(limits.sniffBytesMax))],
    })
    const huge = reframe(big, [16_000])
    expect(sniff(huge)).toEqual({
      needMore: false,
      malformed: 'TLS: ClientHello larger than the sniff bound',
    })
    expect(sniff(huge.subarray(0, 100))).toEqual({
      needMore: false,
      malformed: 'TLS: ClientHello larger than the sniff bound',
    })
  })
})

describe('HTTP', () => {
  const http = (s: string) => sniff(Buffer.from(s, 'latin1'))

  it('reads the Host, the absolute-form target and CONNECT', () => {
    expectPrefixes(Buffer.from('GET /x HTTP/1.1\r\nHost: Example.COM:8080\r\nAccept: */*\r\n\r\n'), {
      appProtocol: 'http',
      serverName: 'example.com',
      needMore: false,
    })
    expect(http('GET / HTTP/1.1\r\nhost: [2001:db8::1]:80\r\n\r\n').serverName).toBe('2001:db8::1')
    expect(http('POST http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n').serverName).toBe('a.example')
    expect(http('GET http://user@a.example:81/ HTTP/1.1\r\n\r\n').serverName).toBe('a.example')
    expect(http('CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n')).toEqual({
      appProtocol: 'http',
      serverName: 'b.example',
      needMore: false,
    })
    expect(http('GET / HTTP/1.0\r\n\r\n')).toEqual({ appProtocol: 'http', needMore: false })
  })

  it('refuses what servers disagree on', () => {
    const cases: Array<[string, string]> = [
      ['GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n', 'HTTP: two Host headers'],
      ['GET http://b.com/ HTTP/1.1\r\nHost: a.com\r\n\r\n', 'HTTP: the target and Host name different hosts'],
      ['GET / HTTP/1.1\r\nHost: a.com\r\n X: folded\r\n\r\n', 'HTTP: a folded header line'],
      ['GET / HTTP/1.1\r\nHost: a.com\nX: y\r\n\r\n', 'HTTP: a line ends in LF without CR'],
      ['GET / HTTP/1.1\r\nHost: a com\r\n\r\n', 'HTTP: Host "a com" is not a host'],
      ['GET / HTTP/1.1\r\nBad Header: x\r\n\r\n', 'HTTP: a malformed header'],
    ]
    for (const [req, why] of cases) expect(http(req), req).toEqual({ needMore: false, malformed: why })
    const long = Buffer.alloc(limits.sniffBytesMax, 'a')
    Buffer.from('GET / HTTP/1.1\r\nX: ').copy(long)
    expect(sniff(long)).toEqual({ needMore: false, malformed: 'HTTP: headers longer than the sniff bound' })
  })

  it('is not fooled by lookalikes', () => {
    expect(http('GET key\r\n').appProtocol).toBe('redis')
    expect(http('GETX / HTTP/1.1\r\n\r\n').appProtocol).toBeUndefined()
    expect(http('GET / HTTP/2.0\r\n\r\n').appProtocol).not.toBe('http')
  })
})

describe('other protocols', () => {
  const dnsQuery = encodeMessage({
    id: 0x1234,
    flags: FLAG.RD,
    questions: [{ name: 'example.com', type: TYPE.A, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  })
  const mongo = Buffer.alloc(40)
  mongo.writeInt32LE(40, 0)
  mongo.writeInt32LE(7, 4)
  mongo.writeInt32LE(2013, 12)
  const cases: Array<[string, Buffer]> = [
    ['ssh', Buffer.from('SSH-2.0-OpenSSH_9.6p1 Ubuntu\r\n')],
    ['ssh', Buffer.from('SSH-1.99-old\r\n')],
    ['socks5', Buffer.from([5, 2, 0, 2])],
    ['mqtt', Buffer.from('\x10\x1a\x00\x04MQTT\x05\x02\x00\x3c', 'latin1')],
    ['mqtt', Buffer.from('\x10\x80\x01\x00\x06MQIsdp\x03\x02', 'latin1')],
    ['redis', Buffer.from('*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n')],
    ['redis', Buffer.from('ping\r\n')],
    ['amqp', Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')],
    ['amqp', Buffer.from('AMQP\x03\x01\x00\x00', 'latin1')],
    ['mongodb', mongo],
    ['http', Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')],
    ['dns', Buffer.concat([u16(dnsQuery.length), dnsQuery])],
  ]
  for (const [proto, bytes] of cases) {
    it(`${proto}: ${JSON.stringify(bytes.toString('latin1').slice(0, 12))}`, () => {
      expectPrefixes(bytes, { appProtocol: proto as Sniffed['appProtocol'], needMore: false } as Sniffed)
    })
  }

  it('unknown openings are no protocol (short ones may yet become MongoDB or DNS)', () => {
    for (const s of [
      '\x05\x00',
      'SSH-1.5-x\r\n',
      'HELO x\r\n',
      '\x10\x05\x00\x04MQTX\x04',
      'AMQP\x01\x01\x01\x01',
      '\x00\x00\x00\x00',
    ]) {
      const b = Buffer.from(`${s}${'x'.repeat(16)}`, 'latin1')
      expect(sniff(b), JSON.stringify(s)).toEqual({ needMore: false })
    }
    expect(sniff(Buffer.from([5, 0]))).toEqual({ needMore: true })
    expect(sniff(Buffer.alloc(0))).toEqual({ needMore: true })
  })

  it('tells DNS datagrams from other UDP', () => {
    expect(sniffDatagram(dnsQuery)).toBe('dns')
    expect(sniffDatagram(Buffer.from('hello there, this is not dns'))).toBe('udp')
    expect(sniffDatagram(Buffer.alloc(5))).toBe('udp')
  })
})

describe('any input', () => {
  it('gets a verdict without throwing, and never waits past the bound', () => {
    const openings = ['\x16\x03\x01', 'GET / HTTP/1.1\r\n', 'SSH-2.0-', '\x05', '\x10', '*', 'AMQP', 'PRI ']
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      fc
        .tuple(fc.constantFrom(...openings), fc.uint8Array({ maxLength: 300 }))
        .map(([o, a]) => Buffer.concat([Buffer.from(o, 'latin1'), Buffer.from(a)])),
    )
    fc.assert(
      fc.property(input, (b) => {
        const s = sniff(b)
        expect(typeof s.needMore).toBe('boolean')
        if (s.needMore) expect(s.appProtocol).toBeUndefined()
        const capped = Buffer.concat([b, Buffer.alloc(limits.sniffBytesMax)])
        expect(sniff(capped).needMore).toBe(false)
      }),
      pbt(2_000),
    )
  })
})
