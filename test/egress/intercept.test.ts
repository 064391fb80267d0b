// The two TLS legs: terminateTls replays the ClientHello the core read and negotiates ALPN;
// originate verifies the destination fully and fails with a typed error otherwise.
import net from 'node:net'
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S0Error } from '../../src/core/errors.js'
import { originate, terminateTls, type Alpn } from '../../src/egress/tls/intercept.js'
import { createCa, issueLeaf } from '../../src/egress/tls/x509.js'
import { makePki, startHttpsUpstream, UPSTREAM_NAME, type Pki, type Upstream } from './tls-support.js'

let pki: Pki
let upstream: Upstream

beforeAll(async () => {
  pki = makePki()
  upstream = await startHttpsUpstream(pki.upstreamLeaf)
})
afterAll(async () => {
  await upstream.close()
})

/** A TCP server that reads the first bytes (as the core classifies) and terminates TLS. */
async function terminator(alpn: Alpn[]): Promise<{
  port: number
  results: Array<tls.TLSSocket | S0Error>
  next(): Promise<tls.TLSSocket | S0Error>
  close(): Promise<void>
}> {
  const results: Array<tls.TLSSocket | S0Error> = []
  const waiting: Array<(r: tls.TLSSocket | S0Error) => void> = []
  const push = (r: tls.TLSSocket | S0Error): void => {
    const w = waiting.shift()
    if (w) w(r)
    else results.push(r)
  }
  const server = net.createServer((client) => {
    client.on('error', () => {})
    client.once('data', (firstBytes: Buffer) => {
      client.pause()
      terminateTls(client, { ca: pki.leaves, serverName: UPSTREAM_NAME, alpn, firstBytes }).then(
        (s) => {
          s.on('data', (d: Buffer) => s.write(Buffer.concat([Buffer.from('echo:'), d])))
          s.on('error', () => {})
          push(s)
        },
        (err: S0Error) => push(err),
      )
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    results,
    next: () =>
      new Promise((resolve) => (results.length > 0 ? resolve(results.shift()!) : waiting.push(resolve))),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

function sandboxConnect(port: number, opts: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: UPSTREAM_NAME, ...opts })
    s.once('secureConnect', () => resolve(s))
    s.once('error', reject)
  })
}

describe('terminateTls', () => {
  it('replays the ClientHello the core read, presents a leaf for the SNI and negotiates ALPN', async () => {
    const t = await terminator(['h2', 'http/1.1'])
    try {
      const c = await sandboxConnect(t.port, { ca: pki.sandboxCa.certPem, ALPNProtocols: ['http/1.1', 'h2'] })
      const server = await t.next()
      expect(server).toBeInstanceOf(tls.TLSSocket)
      expect((server as tls.TLSSocket).alpnProtocol).toBe('h2') // the server's preference
      expect(c.alpnProtocol).toBe('h2')
      expect(c.getPeerX509Certificate()?.checkHost(UPSTREAM_NAME)).toBe(UPSTREAM_NAME)
      const reply = new Promise<string>((resolve) => c.once('data', (d: Buffer) => resolve(d.toString())))
      c.write('ping')
      expect(await reply).toBe('echo:ping')
      c.destroy()

      const h1 = await sandboxConnect(t.port, { ca: pki.sandboxCa.certPem, ALPNProtocols: ['http/1.1'] })
      expect(((await t.next()) as tls.TLSSocket).alpnProtocol).toBe('http/1.1')
      h1.destroy()
      const none = await sandboxConnect(t.port, { ca: pki.sandboxCa.certPem })
      expect(((await t.next()) as tls.TLSSocket).alpnProtocol).toBe(false)
      none.destroy()
    } finally {
      await t.close()
    }
  })

  it('fails, typed, when the sandbox does not trust its CA', async () => {
    const t = await terminator(['http/1.1'])
    try {
      await expect(sandboxConnect(t.port, {})).rejects.toMatchObject({
        code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      })
      const err = await t.next()
      expect(err).toBeInstanceOf(S0Error)
      expect((err as S0Error).code).toBe('egress_tls_client_failed')
    } finally {
      await t.close()
    }
  })

  it('fails, typed, when the sandbox speaks no TLS', async () => {
    const t = await terminator(['http/1.1'])
    try {
      const c = net.connect(t.port, '127.0.0.1')
      c.on('error', () => {})
      c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
      const err = await t.next()
      expect((err as S0Error).code).toBe('egress_tls_client_failed')
      c.destroy()
    } finally {
      await t.close()
    }
  })
})

describe('originate', () => {
  const base = { ip: '127.0.0.1', alpn: ['http/1.1'] as Alpn[] }

  it('verifies the destination against the trust bundle and the name', async () => {
    const s = await originate({
      ...base,
      port: upstream.port,
      serverName: UPSTREAM_NAME,
      ca: pki.upstreamCa.certPem,
    })
    expect(s.authorized).toBe(true)
    expect(s.alpnProtocol).toBe('http/1.1')
    s.destroy()
    // An IP the certificate names works too (and is not sent as SNI).
    const byIp = await originate({
      ...base,
      port: upstream.port,
      serverName: '127.0.0.1',
      ca: pki.upstreamCa.certPem,
    })
    expect(byIp.authorized).toBe(true)
    byIp.destroy()
  })

  it('refuses a certificate for another name, an untrusted chain, and the system store for a test CA', async () => {
    await expect(
      originate({ ...base, port: upstream.port, serverName: 'other.test', ca: pki.upstreamCa.certPem }),
    ).rejects.toMatchObject({
      code: 'egress_tls_upstream_unverified',
      details: { tlsError: 'ERR_TLS_CERT_ALTNAME_INVALID' },
    })
    await expect(
      originate({
        ...base,
        port: upstream.port,
        serverName: UPSTREAM_NAME,
        ca: createCa('unrelated').certPem,
      }),
    ).rejects.toMatchObject({ code: 'egress_tls_upstream_unverified' })
    await expect(
      originate({ ...base, port: upstream.port, serverName: UPSTREAM_NAME }),
    ).rejects.toMatchObject({
      code: 'egress_tls_upstream_unverified',
    })
  })

  it('reports an unreachable destination and a handshake that never finishes', async () => {
    const closed = net.createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as net.AddressInfo).port
    await new Promise((resolve) => closed.close(resolve))
    await expect(originate({ ...base, port, serverName: UPSTREAM_NAME })).rejects.toMatchObject({
      code: 'egress_tls_upstream_unreachable',
    })
    const silent = net.createServer(() => {})
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    try {
      const port2 = (silent.address() as net.AddressInfo).port
      await expect(
        originate({
          ...base,
          port: port2,
          serverName: UPSTREAM_NAME,
          ca: pki.upstreamCa.certPem,
          handshakeTimeoutMs: 200,
        }),
      ).rejects.toMatchObject({ code: 'egress_tls_upstream_failed' })
    } finally {
      silent.close()
    }
  })

  it('presents a client certificate when the destination asks for one', async () => {
    const clientCa = createCa('client CA')
    const clientCert = issueLeaf(clientCa, ['client.test'])
    const server = tls.createServer(
      {
        cert: pki.upstreamLeaf.certPem,
        key: pki.upstreamLeaf.keyPem,
        requestCert: true,
        rejectUnauthorized: false, // our leaves carry serverAuth only; the peer cert is checked below
        ca: clientCa.certPem,
      },
      (s) => s.end(s.getPeerX509Certificate()?.subject ?? 'none'),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const port = (server.address() as net.AddressInfo).port
      const s = await originate({
        ...base,
        port,
        serverName: UPSTREAM_NAME,
        ca: pki.upstreamCa.certPem,
        clientCert,
      })
      const text = await new Promise<string>((resolve) => {
        let t = ''
        s.on('data', (d: Buffer) => (t += d.toString()))
        s.on('end', () => resolve(t))
      })
      expect(text).toContain('CN=client.test')
    } finally {
      server.close()
    }
  })

  it('runs over a given stream (a tunnel) instead of connecting itself', async () => {
    const raw = net.connect(upstream.port, '127.0.0.1')
    await new Promise((resolve) => raw.once('connect', resolve))
    const s = await originate({
      ...base,
      ip: '192.0.2.1',
      port: 1,
      serverName: UPSTREAM_NAME,
      ca: pki.upstreamCa.certPem,
      socket: raw,
    })
    expect(s.authorized).toBe(true)
    s.destroy()
  })
})
