// The sandbox network on bare network namespaces (no container: quick, and root inside, so the
// probes are the host's own tools): veth and addresses, the redirect to the proxy and the
// resolver with SO_ORIGINAL_DST, what is dropped (the host's services, other sandboxes, the
// upstream directly, UDP, ICMP beyond the gateway), a table that accepts everything does not
// change that, restart recovery, reconcile, a flushed table coming back, the pool check.
// Containers on runc, crun and runsc: network-sandboxes.test.ts.
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { native, socketFd } from '../../src/core/native.js'
import { runCli, runCliOk, type CliResult } from '../../src/runtime/cli.js'
import { createNetns, deleteNetns } from '../../src/runtime/netns.js'
import { SandboxNetwork, type SandboxAttachment } from '../../src/runtime/network.js'
import { listSandboxTable } from '../../src/runtime/nftables.js'
import { listVeths } from '../../src/runtime/veth.js'
import {
  createUpstream,
  startServerIn,
  testSandboxCidr,
  type Upstream,
  type UpstreamServer,
} from '../support/upstream.js'
import { eventually } from '../support/eventually.js'
import { networkFixture, type NetworkFixture } from './network-support.js'

const tag = randomBytes(3).toString('hex')

function inNs(ns: string, args: readonly string[], timeoutMs = 15_000): Promise<CliResult> {
  return runCli('nsenter', [`--net=/run/netns/${ns}`, '--', ...args], { timeoutMs })
}

/** busybox nc: connect, send nothing, print what comes back. */
function tcpProbe(ns: string, address: string, port: number, input = ''): Promise<CliResult> {
  return runCli(
    'nsenter',
    [`--net=/run/netns/${ns}`, '--', 'busybox', 'nc', '-w', '3', address, String(port)],
    {
      input,
      timeoutMs: 15_000,
    },
  )
}

/** One UDP datagram (a TFTP read request) to address:port. */
function udpProbe(ns: string, address: string, port: number): Promise<CliResult> {
  return inNs(ns, [
    'busybox',
    'timeout',
    '1',
    'busybox',
    'tftp',
    '-g',
    '-r',
    'x',
    '-l',
    '/dev/null',
    address,
    String(port),
  ])
}

function hostIpv4(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  throw new Error('no non-loopback IPv4 address on this host')
}

describe('sandbox network (bare namespaces)', () => {
  let fx: NetworkFixture
  let up: Upstream
  let httpEcho: UpstreamServer
  let udpEcho: UpstreamServer
  const nsA = `s0tn${tag}-a`
  const nsB = `s0tn${tag}-b`
  let a: SandboxAttachment
  let b: SandboxAttachment
  let bTcp: UpstreamServer
  let bUdp: UpstreamServer
  let hostTcp: net.Server
  let hostTcpAccepted = 0
  let hostUdp: dgram.Socket
  let hostUdpReceived = 0

  beforeAll(async () => {
    expect(native, 'the native addon must be built').toBeDefined()
    up = await createUpstream()
    fx = await networkFixture({ forward: (o) => o.address.startsWith(up.cidr.replace(/0\/24$/, '')) })
    httpEcho = await up.start('http-echo')
    udpEcho = await up.start('udp-echo')
    await createNetns(nsA)
    await createNetns(nsB)
    a = await fx.network.attach(`sbx-a-${tag}`, nsA)
    b = await fx.network.attach(`sbx-b-${tag}`, nsB)
    bTcp = await startServerIn(nsB, 'tcp-echo')
    bUdp = await startServerIn(nsB, 'udp-echo')
    hostTcp = net.createServer((s) => {
      hostTcpAccepted++
      s.end('host service\n')
    })
    await new Promise<void>((resolve) => hostTcp.listen(0, '0.0.0.0', resolve))
    hostUdp = dgram.createSocket('udp4')
    hostUdp.on('message', () => hostUdpReceived++)
    await new Promise<void>((resolve) => hostUdp.bind(0, '0.0.0.0', resolve))
  })

  afterAll(async () => {
    hostTcp?.close()
    hostUdp?.close()
    await bTcp?.stop()
    await bUdp?.stop()
    await fx?.cleanup()
    await deleteNetns(nsA)
    await deleteNetns(nsB)
    await up?.cleanup()
  })

  it('gives a sandbox a /30 of the pool: its address, the gateway as default route, IPv6 off', async () => {
    expect(a.prefix).toBe(30)
    expect(a.hostIface).toMatch(new RegExp(`^s0${fx.tag}-[0-9a-f]+$`))
    expect(Buffer.byteLength(a.hostIface)).toBeLessThanOrEqual(15)
    expect(fx.network.contains(a.address) && fx.network.contains(b.gateway)).toBe(true)
    expect(fx.network.contains(up.hostAddress)).toBe(false)
    expect(a.address).not.toBe(b.address)
    expect(fx.network.sandboxOf(a.address)).toBe(`sbx-a-${tag}`)
    expect(fx.network.sandboxOf(b.address)).toBe(`sbx-b-${tag}`)
    expect(fx.network.sandboxOf(`::ffff:${a.address}`)).toBe(`sbx-a-${tag}`)
    expect(fx.network.sandboxOf(a.gateway)).toBeUndefined()

    const addrs = JSON.parse(
      (await runCliOk('ip', ['-n', nsA, '-j', 'addr', 'show', 'dev', 'eth0'])).stdout,
    ) as {
      addr_info: { family: string; local: string; prefixlen: number }[]
    }[]
    expect(addrs[0]?.addr_info).toEqual([
      expect.objectContaining({ family: 'inet', local: a.address, prefixlen: 30 }),
    ])
    expect((await runCliOk('ip', ['-n', nsA, 'route', 'show', 'default'])).stdout).toContain(
      `default via ${a.gateway} dev eth0`,
    )
    expect((await inNs(nsA, ['cat', '/proc/sys/net/ipv6/conf/all/disable_ipv6'])).stdout.trim()).toBe('1')
    expect((await inNs(nsA, ['cat', '/proc/sys/net/ipv6/conf/eth0/disable_ipv6'])).stdout.trim()).toBe('1')
    expect((await readFile(`/proc/sys/net/ipv6/conf/${a.hostIface}/disable_ipv6`, 'utf8')).trim()).toBe('1')
    const veths = await listVeths(fx.network.ifacePrefix)
    expect(veths.map((v) => v.sandboxId).sort()).toEqual([`sbx-a-${tag}`, `sbx-b-${tag}`])
  })

  it('redirects every TCP connection to the proxy, which reads the original destination', async () => {
    for (const [address, port] of [
      ['203.0.113.10', 443],
      [a.gateway, 22],
      ['169.254.169.254', 80],
    ] as const) {
      const r = await tcpProbe(nsA, address, port)
      expect(r.stdout).toBe(`ORIG ${address}:${port} FROM ${a.address}\n`)
    }
    expect(fx.proxy.connections.at(-1)).toEqual({
      original: { address: '169.254.169.254', port: 80 },
      remoteAddress: a.address,
      localAddress: a.gateway,
    })
  })

  it('originalDst: the real destination for a connection that was not redirected', async () => {
    const before = fx.proxy.connections.length
    const s = net.connect(fx.proxy.port, '127.0.0.1')
    const reply = await new Promise<string>((resolve, reject) => {
      let text = ''
      s.on('data', (d: Buffer) => (text += d.toString()))
      s.on('end', () => resolve(text))
      s.on('error', reject)
    })
    expect(reply).toBe(`ORIG 127.0.0.1:${fx.proxy.port} FROM 127.0.0.1\n`)
    expect(fx.proxy.connections[before]?.original).toEqual({ address: '127.0.0.1', port: fx.proxy.port })
    // Not a socket at all: the addon reports the errno, it does not crash.
    expect(() => native?.originalDst(0)).toThrow(expect.objectContaining({ errno: expect.any(Number) }))
    expect(() => socketFd(new net.Socket())).toThrow()
  })

  it('reaches the upstream only through the proxy: TCP arrives from the host, UDP never', async () => {
    const url = `http://${up.address('api.allowed.test')}:${httpEcho.port}/through?proxy=1`
    // (This busybox's wget crashes with -T: timeout bounds it instead.)
    const r = await inNs(nsA, ['busybox', 'timeout', '10', 'busybox', 'wget', '-q', '-O', '-', url])
    expect(JSON.parse(r.stdout)).toMatchObject({ method: 'GET', path: '/through?proxy=1' })
    // The server's event comes over its stdout, not with the response: wait for it.
    await eventually(() => httpEcho.events.length > 0 || undefined, 'the http echo event', 10_000)
    expect(httpEcho.events.map((e) => e.remoteAddress)).toEqual([up.hostAddress])
    await udpProbe(nsA, up.address('blocked.test'), udpEcho.port)
    expect(udpEcho.events).toEqual([])
  })

  it('sends DNS to the resolver port, whatever server the sandbox asks', async () => {
    for (const server of ['203.0.113.53', a.gateway]) {
      const r = await inNs(nsA, ['busybox', 'nslookup', 'api.allowed.test', server])
      expect(r.stdout).toContain(fx.dns.answer)
    }
    const q = fx.dns.queries.filter((x) => x.name === 'api.allowed.test' && x.type === 1)
    expect(q.length).toBeGreaterThanOrEqual(2)
    expect(new Set(q.map((x) => x.from))).toEqual(new Set([a.address]))
  })

  it("keeps the host's services out of reach, even with another table accepting everything", async () => {
    const accept = `s0acc_${tag}`
    await runCliOk('nft', ['-f', '-'], {
      input: [
        `table inet ${accept} {`,
        ...[
          ['c_pre', 'filter', 'prerouting', -400],
          ['c_nat', 'nat', 'prerouting', -150],
          ['c_in', 'filter', 'input', -400],
          ['c_fwd', 'filter', 'forward', -400],
        ].map(
          ([n, type, hook, prio]) =>
            `chain ${n} {\ntype ${type} hook ${hook} priority ${prio}; policy accept;\naccept\n}`,
        ),
        '}',
        '',
      ].join('\n'),
    })
    try {
      const port = (hostTcp.address() as net.AddressInfo).port
      for (const address of [a.gateway, b.gateway, hostIpv4()]) {
        expect((await tcpProbe(nsA, address, port)).stdout).toBe(
          `ORIG ${address}:${port} FROM ${a.address}\n`,
        )
        await udpProbe(nsA, address, hostUdp.address().port)
      }
      expect(hostTcpAccepted).toBe(0)
      expect(hostUdpReceived).toBe(0)
    } finally {
      await runCliOk('nft', ['delete', 'table', 'inet', accept])
    }
  })

  it('opens the proxy and resolver ports to sandboxes only (replies to their own traffic pass)', async () => {
    const before = fx.proxy.connections.length
    const r = await inNs(up.netns, ['busybox', 'nc', '-w', '2', up.hostAddress, String(fx.proxy.port)])
    expect(r.stdout).toBe('')
    expect(fx.proxy.connections.length).toBe(before)
    // The resolver asking upstream from its own socket gets the answer back.
    fx.dns.socket.send('upstream?', udpEcho.port, up.address('other.test'))
    for (let i = 0; i < 100 && fx.dns.others.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(fx.dns.others).toEqual([{ from: up.address('other.test'), data: 'upstream?' }])
  })

  it('never routes between sandboxes', async () => {
    const r = await tcpProbe(nsA, b.address, bTcp.port, 'to b\n')
    expect(r.stdout).toBe(`ORIG ${b.address}:${bTcp.port} FROM ${a.address}\n`)
    await udpProbe(nsA, b.address, bUdp.port)
    expect(bTcp.events).toEqual([])
    expect(bUdp.events).toEqual([])
  })

  it('answers ICMP echo from the sandbox’s own gateway only', async () => {
    const ping = (address: string): Promise<CliResult> =>
      inNs(nsA, ['busybox', 'ping', '-c', '1', '-W', '1', address])
    expect((await ping(a.gateway)).code).toBe(0)
    for (const address of [b.gateway, b.address, hostIpv4(), up.address('api.allowed.test')]) {
      expect((await ping(address)).code, address).not.toBe(0)
    }
  })

  it('refuses a pool that overlaps a route of the host, or is not private', async () => {
    const other = `u${tag.slice(0, 5)}`
    const opts = { tag: other, proxyPort: fx.proxy.port, dnsPort: fx.dns.port }
    // This server's veths are routes of the host: a second server cannot share the pool.
    const err = await SandboxNetwork.open({ ...opts, cidr: fx.cidr }).catch((e: unknown) => e)
    expect(isS0Error(err) && err.code).toBe('config_invalid')
    expect(String(err)).toMatch(/S0_SANDBOX_CIDR .* overlaps the host route/)
    for (const cidr of ['198.18.0.0/16', '10.0.0.0/8']) {
      const e = await SandboxNetwork.open({ ...opts, cidr }).catch((x: unknown) => x)
      expect(isS0Error(e) && e.code, cidr).toBe('config_invalid')
    }
    expect(await listSandboxTable(`s0net_${other}`)).toBeUndefined()
  })

  it('puts its table back after a ruleset flush took it', async () => {
    // By itself: the check runs every limits.sandboxNetworkCheckIntervalMs (2 s).
    await runCliOk('nft', ['delete', 'table', 'inet', fx.network.table])
    let back = false
    for (let i = 0; i < 200 && !back; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      back = (await listSandboxTable(fx.network.table)) !== undefined
    }
    expect(back).toBe(true)
    expect(await fx.network.ensureTable()).toBe(true)
    expect((await tcpProbe(nsA, '203.0.113.10', 80)).stdout).toBe(`ORIG 203.0.113.10:80 FROM ${a.address}\n`)
  })

  it('a restarted server takes its veths back; reconcile removes those of unknown sandboxes', async () => {
    await fx.network.close() // the table and the veths stay: sandboxes outlive the server
    expect(await listSandboxTable(fx.network.table)).toContain(`redirect to :${fx.proxy.port}`)
    const again = await SandboxNetwork.open({
      tag: fx.tag,
      cidr: fx.cidr,
      proxyPort: fx.proxy.port,
      dnsPort: fx.dns.port,
    })
    fx.network = again
    expect(again.attachments().sort((x, y) => x.sandboxId.localeCompare(y.sandboxId))).toEqual([a, b])
    expect(again.sandboxOf(b.address)).toBe(`sbx-b-${tag}`)
    expect((await tcpProbe(nsA, '203.0.113.10', 81)).stdout).toBe(`ORIG 203.0.113.10:81 FROM ${a.address}\n`)

    expect(await again.reconcile([`sbx-a-${tag}`])).toEqual([`sbx-b-${tag}`])
    expect(again.sandboxOf(b.address)).toBeUndefined()
    expect((await listVeths(again.ifacePrefix)).map((v) => v.name)).toEqual([a.hostIface])
    expect((await runCli('ip', ['-n', nsB, 'link', 'show', 'eth0'])).code).not.toBe(0)

    // Its address comes back to the pool; a new attach gets a fresh one first (next-fit).
    const c = await again.attach(`sbx-b-${tag}`, nsB)
    expect(c.address).not.toBe(b.address)
    await again.detach(`sbx-b-${tag}`)
    await again.detach(`sbx-b-${tag}`) // idempotent
    expect(again.attachmentOf(`sbx-b-${tag}`)).toBeUndefined()
  })

  it('close() with no veth left removes the table: its port drops would outlive the server', async () => {
    const other = `v${tag.slice(0, 5)}`
    const pool = await testSandboxCidr()
    try {
      const n = await SandboxNetwork.open({
        tag: other,
        cidr: pool.cidr,
        proxyPort: fx.proxy.port,
        dnsPort: fx.dns.port,
      })
      expect(await listSandboxTable(n.table)).toContain(`udp dport ${fx.dns.port} drop`)
      await n.close()
      expect(await listSandboxTable(n.table)).toBeUndefined()
    } finally {
      await SandboxNetwork.remove(other)
      await pool.release()
    }
  })

  it('close({ removeAll }) removes every veth and the table', async () => {
    await fx.network.close({ removeAll: true })
    expect(await listVeths(fx.network.ifacePrefix)).toEqual([])
    expect(await listSandboxTable(fx.network.table)).toBeUndefined()
    expect(fx.network.attachments()).toEqual([])
  })
})
