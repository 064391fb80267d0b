// Test stand-ins for the egress proxy and resolver: a TCP "proxy" that answers each redirected
// connection with the original destination it read through originalDst (or, for addresses a
// test names, connects there and pipes), and a DNS server that answers every A query with one
// address. Both listen on 0.0.0.0 and record what they got. Plus a SandboxNetwork on a locked
// test pool with a random tag.
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import net from 'node:net'
import { native, socketFd } from '../../src/core/native.js'
import type { Logger } from '../../src/core/log.js'
import { runCli } from '../../src/runtime/cli.js'
import { SandboxNetwork } from '../../src/runtime/network.js'
import { testSandboxCidr } from '../support/upstream.js'

export interface ProxiedConnection {
  /** Where the client connected (SO_ORIGINAL_DST), or the error's errno. */
  original: { address: string; port: number } | { errno: number }
  remoteAddress: string
  localAddress: string
}

export interface TestProxy {
  port: number
  connections: ProxiedConnection[]
  /** Client connections not yet closed on both sides. */
  readonly open: number
  close(): Promise<void>
}

/**
 * Answers `ORIG <address>:<port> FROM <remote>\n` and closes; when `forward(original)` says so,
 * connects to the original destination instead and pipes both ways (a proxy that allows).
 */
export async function startTestProxy(
  forward: (o: { address: string; port: number }) => boolean = () => false,
): Promise<TestProxy> {
  const addon = native
  if (!addon) throw new Error('the native addon is not built (npm install / node-gyp rebuild)')
  const connections: ProxiedConnection[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => undefined)
    let original: ProxiedConnection['original']
    try {
      original = addon.originalDst(socketFd(s))
    } catch (err) {
      original = { errno: (err as { errno?: number }).errno ?? -1 }
    }
    connections.push({ original, remoteAddress: s.remoteAddress ?? '', localAddress: s.localAddress ?? '' })
    if ('address' in original && forward(original)) {
      const up = net.connect(original.port, original.address)
      up.on('error', () => s.destroy())
      s.pipe(up).pipe(s)
      return
    }
    const o = 'address' in original ? `${original.address}:${original.port}` : `errno ${original.errno}`
    s.end(`ORIG ${o} FROM ${s.remoteAddress}\n`)
  })
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    get open() {
      return sockets.size
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export interface DnsQuery {
  from: string
  name: string
  type: number
}

export interface TestDns {
  port: number
  /** Every A query for a name not in `hosts` is answered with this address. */
  answer: string
  /** name → address: A queries for these names get their own address. */
  hosts: Map<string, string>
  queries: DnsQuery[]
  /** Datagrams that were not a DNS query (replies to what was sent through `socket`). */
  others: { from: string; data: string }[]
  /** The server's socket (bound to `port`), to send from it. */
  socket: dgram.Socket
  close(): Promise<void>
}

/**
 * A DNS server good enough for busybox nslookup and wget: A → the name's address in `hosts`,
 * else `answer`; any other type → no records.
 */
export async function startTestDns(answer = '198.51.100.7'): Promise<TestDns> {
  const queries: DnsQuery[] = []
  const hosts = new Map<string, string>()
  const others: { from: string; data: string }[] = []
  const sock = dgram.createSocket('udp4')
  sock.on('message', (msg, rinfo) => {
    const q = parseQuestion(msg)
    if (!q) {
      others.push({ from: rinfo.address, data: msg.toString('latin1') })
      return
    }
    queries.push({ from: rinfo.address, name: q.name, type: q.type })
    sock.send(dnsReply(msg, q, hosts.get(q.name.toLowerCase()) ?? answer), rinfo.port, rinfo.address)
  })
  await new Promise<void>((resolve) => sock.bind(0, '0.0.0.0', resolve))
  return {
    port: sock.address().port,
    answer,
    hosts,
    queries,
    others,
    socket: sock,
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  }
}

function parseQuestion(msg: Buffer): { name: string; type: number; end: number } | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return undefined
  const labels: string[] = []
  let at = 12
  while (at < msg.length) {
    const len = msg[at] as number
    if (len === 0) break
    if (len > 63 || at + 1 + len > msg.length) return undefined
    labels.push(msg.subarray(at + 1, at + 1 + len).toString('latin1'))
    at += 1 + len
  }
  if (at + 5 > msg.length) return undefined
  return { name: labels.join('.'), type: msg.readUInt16BE(at + 1), end: at + 5 }
}

function dnsReply(query: Buffer, q: { type: number; end: number }, answer: string): Buffer {
  const header = Buffer.alloc(12)
  query.copy(header, 0, 0, 2) // id
  header.writeUInt16BE(0x8180, 2) // response, recursion desired + available, no error
  header.writeUInt16BE(1, 4)
  const a = q.type === 1
  header.writeUInt16BE(a ? 1 : 0, 6)
  const question = query.subarray(12, q.end)
  if (!a) return Buffer.concat([header, question])
  const rr = Buffer.alloc(16)
  rr.writeUInt16BE(0xc00c, 0) // the name: a pointer to the question's
  rr.writeUInt16BE(1, 2) // A
  rr.writeUInt16BE(1, 4) // IN
  rr.writeUInt32BE(60, 6)
  rr.writeUInt16BE(4, 10)
  answer.split('.').forEach((o, i) => rr.writeUInt8(Number(o), 12 + i))
  return Buffer.concat([header, question, rr])
}

export interface NetworkFixture {
  network: SandboxNetwork
  proxy: TestProxy
  dns: TestDns
  cidr: string
  tag: string
  cleanup(): Promise<void>
}

/** A proxy, a resolver and a SandboxNetwork (random tag, a locked test pool) pointing at them. */
export async function networkFixture(
  opts: { forward?: (o: { address: string; port: number }) => boolean; log?: Logger } = {},
): Promise<NetworkFixture> {
  // A table left by a server that died (a crashed run) drops new connections to its old ports
  // from every interface: ports it names are not taken.
  const ruleset = (await runCli('nft', ['list', 'ruleset'])).stdout
  const named = (p: number): boolean => new RegExp(`dport ${p}\\b`).test(ruleset)
  let proxy = await startTestProxy(opts.forward)
  for (let i = 0; i < 5 && named(proxy.port); i++) {
    await proxy.close()
    proxy = await startTestProxy(opts.forward)
  }
  let dns = await startTestDns()
  for (let i = 0; i < 5 && named(dns.port); i++) {
    await dns.close()
    dns = await startTestDns()
  }
  const pool = await testSandboxCidr()
  const tag = `t${randomBytes(3).toString('hex').slice(0, 5)}`
  try {
    const network = await SandboxNetwork.open({
      tag,
      cidr: pool.cidr,
      proxyPort: proxy.port,
      dnsPort: dns.port,
      ...(opts.log ? { log: opts.log } : {}),
    })
    return {
      network,
      proxy,
      dns,
      cidr: pool.cidr,
      tag,
      async cleanup() {
        await network.close({ removeAll: true })
        await pool.release()
        await proxy.close()
        await dns.close()
      },
    }
  } catch (err) {
    await pool.release()
    await proxy.close()
    await dns.close()
    throw err
  }
}
