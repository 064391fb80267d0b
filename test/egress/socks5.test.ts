// The SOCKS5 client against a real SOCKS5 server on loopback (test/support/socks5-server.ts):
// CONNECT by IPv4, IPv6 and name, username/password, refusals, and the typed failures.
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error, type ErrorCode } from '../../src/core/errors.js'
import { socks5Connect } from '../../src/egress/socks5.js'
import { startSocks5Server, type Socks5TestServer } from '../support/socks5-server.js'

interface Listening {
  server: net.Server
  port: number
}

async function listen(host: string, onConn: (s: net.Socket) => void): Promise<Listening> {
  const server = net.createServer(onConn)
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()))
  return { server, port: (server.address() as net.AddressInfo).port }
}

/** Says `hello <port>` first, then echoes. */
const greetAndEcho = (port: () => number) => (s: net.Socket) => {
  s.on('error', () => undefined)
  s.write(`hello ${port()}\n`)
  s.pipe(s)
}

let echo4: Listening
let echo6: Listening
let open: Socks5TestServer
let locked: Socks5TestServer
const sockets: net.Socket[] = []

beforeAll(async () => {
  echo4 = await listen(
    '127.0.0.1',
    greetAndEcho(() => echo4.port),
  )
  echo6 = await listen(
    '::1',
    greetAndEcho(() => echo6.port),
  )
  open = await startSocks5Server({ resolve: (name) => (name === 'echo.test' ? '127.0.0.1' : name) })
  locked = await startSocks5Server({
    auth: { username: 'agent', password: 'hunter2' },
    refuse: ({ port }) => (port === 1 ? 2 : undefined),
  })
})

afterAll(async () => {
  for (const s of sockets) s.destroy()
  await open?.close()
  await locked?.close()
  echo4?.server.close()
  echo6?.server.close()
})

/** Reads until `want` bytes arrived (the caller's side of the handed-over socket). */
function readText(s: net.Socket, want: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    s.on('data', (d: Buffer) => {
      got += d.toString()
      if (got.length >= want) resolve(got)
    })
    s.once('error', reject)
  })
}

async function roundTrip(s: net.Socket, port: number): Promise<void> {
  sockets.push(s)
  const greeting = `hello ${port}\n`
  const reply = readText(s, greeting.length + 4)
  s.write('ping')
  expect(await reply).toBe(`${greeting}ping`)
}

async function failure(p: Promise<unknown>): Promise<{ code: ErrorCode; details: unknown; message: string }> {
  const err = await p.then(
    (s) => {
      ;(s as net.Socket).destroy()
      return new Error('expected a failure')
    },
    (e: unknown) => e,
  )
  if (!isS0Error(err)) throw err
  return { code: err.code, details: err.details, message: err.message }
}

describe('socks5Connect', () => {
  it('connects through a proxy without authentication, by IPv4, IPv6 and name', async () => {
    const proxy = { proxyHost: open.host, proxyPort: open.port }
    await roundTrip(await socks5Connect(proxy, { ip: '127.0.0.1', port: echo4.port }), echo4.port)
    await roundTrip(await socks5Connect(proxy, { host: '::1', port: echo6.port }), echo6.port)
    await roundTrip(await socks5Connect(proxy, { host: 'echo.test', port: echo4.port }), echo4.port)
    expect(open.requests.slice(-3).map((r) => [r.offered, r.method, r.dest])).toEqual([
      [[0], 0, { host: '127.0.0.1', port: echo4.port, type: 'ipv4' }],
      [[0], 0, { host: '0:0:0:0:0:0:0:1', port: echo6.port, type: 'ipv6' }],
      [[0], 0, { host: 'echo.test', port: echo4.port, type: 'domain' }],
    ])
  })

  it('logs in with username and password (RFC 1929), offering only that method', async () => {
    const s = await socks5Connect(
      { proxyHost: locked.host, proxyPort: locked.port, auth: { username: 'agent', password: 'hunter2' } },
      { ip: '127.0.0.1', port: echo4.port },
    )
    await roundTrip(s, echo4.port)
    expect(locked.requests.at(-1)).toMatchObject({ offered: [2], method: 2, username: 'agent', reply: 0 })
  })

  it('a wrong password, or no login where one is needed, is socks5_auth_failed', async () => {
    const dest = { ip: '127.0.0.1', port: echo4.port }
    const wrong = await failure(
      socks5Connect(
        {
          proxyHost: locked.host,
          proxyPort: locked.port,
          auth: { username: 'agent', password: 'wrong-pass-xyz' },
        },
        dest,
      ),
    )
    expect(wrong.code).toBe('socks5_auth_failed')
    expect(wrong.message).not.toContain('wrong-pass-xyz')
    expect(
      (await failure(socks5Connect({ proxyHost: locked.host, proxyPort: locked.port }, dest))).code,
    ).toBe('socks5_auth_failed')
  })

  it("the proxy's refusals are socks5_connect_failed with its reply code", async () => {
    const auth = { username: 'agent', password: 'hunter2' }
    const ruleset = await failure(
      socks5Connect(
        { proxyHost: locked.host, proxyPort: locked.port, auth },
        { host: 'blocked.test', port: 1 },
      ),
    )
    expect(ruleset).toMatchObject({ code: 'socks5_connect_failed', details: { reply: 2 } })
    expect(ruleset.message).toMatch(/not allowed by ruleset/)
    const closed = await listen('127.0.0.1', () => undefined)
    const closedPort = closed.port
    await new Promise<void>((resolve) => closed.server.close(() => resolve()))
    const refused = await failure(
      socks5Connect({ proxyHost: open.host, proxyPort: open.port }, { ip: '127.0.0.1', port: closedPort }),
    )
    expect(refused).toMatchObject({ code: 'socks5_connect_failed', details: { reply: 5 } })
  })

  it('an unreachable proxy, a silent one, an abort and a garbled answer are typed failures', async () => {
    const dest = { ip: '127.0.0.1', port: echo4.port }
    const gone = await listen('127.0.0.1', () => undefined)
    const gonePort = gone.port
    await new Promise<void>((resolve) => gone.server.close(() => resolve()))
    expect((await failure(socks5Connect({ proxyHost: '127.0.0.1', proxyPort: gonePort }, dest))).code).toBe(
      'socks5_unreachable',
    )

    const held: net.Socket[] = []
    const silent = await listen('127.0.0.1', (s) => void held.push(s))
    const silentProxy = { proxyHost: '127.0.0.1', proxyPort: silent.port }
    expect((await failure(socks5Connect(silentProxy, dest, { timeoutMs: 100 }))).code).toBe('timeout')
    const ctl = new AbortController()
    const pending = socks5Connect(silentProxy, dest, { signal: ctl.signal })
    setImmediate(() => ctl.abort())
    expect((await failure(pending)).code).toBe('aborted')

    const garbled = await listen('127.0.0.1', (s) => {
      s.on('error', () => undefined)
      s.once('data', () => s.end(Buffer.from([4, 0])))
    })
    expect(
      (await failure(socks5Connect({ proxyHost: '127.0.0.1', proxyPort: garbled.port }, dest))).code,
    ).toBe('socks5_protocol_error')
    const hangsUp = await listen('127.0.0.1', (s) => {
      s.on('error', () => undefined)
      s.once('data', () => s.end(Buffer.from([5])))
    })
    expect(
      (await failure(socks5Connect({ proxyHost: '127.0.0.1', proxyPort: hangsUp.port }, dest))).code,
    ).toBe('socks5_protocol_error')
    for (const s of held) s.destroy()
    for (const l of [silent, garbled, hangsUp]) l.server.close()
  })

  it('bytes that arrive with the CONNECT reply stay in the socket for the caller', async () => {
    // A proxy that answers the whole handshake and the destination's first bytes in one write.
    const eager = await listen('127.0.0.1', (s) => {
      s.on('error', () => undefined)
      let seen = 0
      s.on('data', (d: Buffer) => {
        seen += d.length
        if (seen === 3) s.write(Buffer.from([5, 0]))
        else if (seen > 3)
          s.write(
            Buffer.concat([
              Buffer.from([5, 0, 0, 3, 4]),
              Buffer.from('name'),
              Buffer.from([0, 80, 0x41, 0x42]),
            ]),
          )
      })
    })
    const s = await socks5Connect(
      { proxyHost: '127.0.0.1', proxyPort: eager.port },
      { host: 'x.test', port: 80 },
    )
    sockets.push(s)
    expect(await readText(s, 2)).toBe('AB')
    eager.server.close()
  })

  it('refuses bad input before connecting', async () => {
    const proxy = { proxyHost: open.host, proxyPort: open.port }
    const before = open.requests.length
    for (const p of [
      () => socks5Connect(proxy, { ip: 'not-an-ip', port: 80 }),
      () => socks5Connect(proxy, { host: 'a.test', port: 0 }),
      () => socks5Connect(proxy, { host: 'x'.repeat(256), port: 80 }),
      () =>
        socks5Connect(
          { ...proxy, auth: { username: 'u'.repeat(256), password: 'p' } },
          { host: 'a.test', port: 80 },
        ),
      () => socks5Connect({ ...proxy, auth: { username: 'u', password: '' } }, { host: 'a.test', port: 80 }),
    ])
      expect((await failure(p())).code).toBe('invalid_request')
    expect(open.requests.length).toBe(before)
  })
})
