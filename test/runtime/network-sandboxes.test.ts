// Sandboxes on the sandbox network, on runc, crun and runsc (busybox): eth0 with its address and
// the gateway as default route, /etc/resolv.conf bound read-only, every TCP connection at the
// (test) proxy with its original destination, DNS at the (test) resolver, the upstream reached
// through the proxy only; and what fails from inside: the host's services, its loopback,
// another sandbox, the metadata address, UDP, IPv6, changing routes or addresses. Delete and a
// failed start give the address back. The nftables rules themselves: network.test.ts.
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCliOk } from '../../src/runtime/cli.js'
import type { DriverName } from '../../src/runtime/driver.js'
import { createNetns, deleteNetns } from '../../src/runtime/netns.js'
import type { SandboxAttachment, SandboxRecord } from '../../src/runtime/sandbox-runtime.js'
import { listVeths } from '../../src/runtime/veth.js'
import { resolveInView } from '../../src/runtime/view.js'
import { createUpstream, startServerIn, type Upstream, type UpstreamServer } from '../support/upstream.js'
import { eventually } from '../support/eventually.js'
import { networkFixture, type NetworkFixture } from './network-support.js'
import { runtimeFixture, sandboxId, type RuntimeFixture } from './support.js'

const DRIVERS: DriverName[] = ['runc', 'crun', 'runsc']

function hostAddresses(family: 'IPv4' | 'IPv6'): string[] {
  const out: string[] = []
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === family && !a.internal && !a.address.startsWith('fe80')) out.push(a.address)
    }
  }
  return out
}

describe('sandboxes on the sandbox network', () => {
  let fx: NetworkFixture
  let up: Upstream
  let httpEcho: UpstreamServer
  let udpEcho: UpstreamServer
  // Another sandbox, as a bare namespace on the same network with servers inside.
  const nsB = `s0ts${randomBytes(3).toString('hex')}-b`
  let b: SandboxAttachment
  let bTcp: UpstreamServer
  let bUdp: UpstreamServer
  let hostTcp: net.Server
  let hostTcp6: net.Server
  let hostAccepted = 0
  let hostUdp: dgram.Socket
  let hostUdpReceived = 0
  let filesDir: string

  beforeAll(async () => {
    up = await createUpstream()
    fx = await networkFixture({ forward: (o) => Object.values(up.addresses).includes(o.address) })
    for (const [name, address] of Object.entries(up.addresses)) fx.dns.hosts.set(name, address)
    httpEcho = await up.start('http-echo')
    udpEcho = await up.start('udp-echo')
    await createNetns(nsB)
    b = await fx.network.attach(`sbx-b-${process.pid}`, nsB)
    bTcp = await startServerIn(nsB, 'tcp-echo')
    bUdp = await startServerIn(nsB, 'udp-echo')
    const onHost = (s: net.Socket): void => {
      hostAccepted++
      s.end('host service\n')
    }
    hostTcp = net.createServer(onHost)
    await new Promise<void>((resolve) => hostTcp.listen(0, '0.0.0.0', resolve))
    hostTcp6 = net.createServer(onHost)
    await new Promise<void>((resolve) => hostTcp6.listen(0, '::', resolve))
    hostUdp = dgram.createSocket('udp4')
    hostUdp.on('message', () => hostUdpReceived++)
    await new Promise<void>((resolve) => hostUdp.bind(0, '0.0.0.0', resolve))
    filesDir = await mkdtemp(path.join(os.tmpdir(), 's0-files-'))
    await writeFile(path.join(filesDir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\ntest\n')
  })

  afterAll(async () => {
    hostTcp?.close()
    hostTcp6?.close()
    hostUdp?.close()
    await bTcp?.stop()
    await bUdp?.stop()
    await fx?.cleanup()
    await deleteNetns(nsB)
    await up?.cleanup()
    if (filesDir) await rm(filesDir, { recursive: true, force: true })
  })

  describe.each(DRIVERS)('%s', (name) => {
    let rt: RuntimeFixture
    let a: SandboxRecord
    let att: SandboxAttachment
    const run = (args: string[], timeoutMs = 20_000): ReturnType<RuntimeFixture['runtime']['run']> =>
      rt.runtime.run(a.id, args, { timeoutMs })
    /** busybox nc: connect, send nothing, print what comes back. */
    const tcp = (address: string, port: number): ReturnType<typeof run> =>
      run(['nc', '-w', '3', address, String(port)])
    /** One UDP datagram (a TFTP read request) to each target, all at once. */
    const udp = (targets: readonly (readonly [string, number])[]): ReturnType<typeof run> =>
      run([
        'sh',
        '-c',
        targets.map(([h, p]) => `timeout 1 tftp -g -r x -l /dev/null ${h} ${p} &`).join(' ') + ' wait',
      ])

    beforeAll(async () => {
      rt = await runtimeFixture(name, { network: fx.network })
      expect(rt.probe, JSON.stringify(rt.probe)).toMatchObject({ ok: true })
      a = await rt.runtime.start({
        id: sandboxId(`net-${name}`),
        templateRootfs: rt.busybox,
        // The busybox template's pids: at 48 the runsc sandbox died in CI after this file's many
        // execs and six parallel tftp runs, even with runsc's larger pids base (runsc.ts). Cause
        // not yet pinned down (threads kept by gVisor's Go runtime is the lead).
        resources: { memoryBytes: 128 * 1024 * 1024, pidsMax: 128 },
        files: [
          { hostPath: path.join(filesDir, 'ca.pem'), containerPath: '/etc/ssl/certs/ca-certificates.crt' },
        ],
      })
      att = a.network as SandboxAttachment
    })

    afterAll(async () => {
      await rt?.cleanup()
    })

    it('has eth0 with its address, the gateway as default route, resolv.conf naming it (read-only)', async () => {
      expect(att).toEqual(fx.network.attachmentOf(a.id))
      expect(fx.network.sandboxOf(att.address)).toBe(a.id)
      expect((await run(['ip', '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout).toContain(
        `inet ${att.address}/30`,
      )
      expect((await run(['ip', 'route'])).stdout).toMatch(
        new RegExp(`default via ${att.gateway.replace(/\./g, '\\.')}`),
      )
      const resolv = await run(['cat', '/etc/resolv.conf'])
      expect(resolv.stdout).toContain(`nameserver ${att.gateway}\n`)
      expect((await run(['sh', '-c', 'echo nameserver 203.0.113.53 > /etc/resolv.conf'])).exitCode).not.toBe(
        0,
      )
      // A host file bound over the root, never written into the upper layer (a pause captures it).
      const r = resolveInView(a.view, '/etc/resolv.conf')
      expect(r).toMatchObject({
        kind: 'host',
        hostPath: path.join(a.dir, 'resolv.conf'),
        mount: { readOnly: true },
      })
      expect(existsSync(path.join(a.upperDir, 'etc', 'resolv.conf'))).toBe(false)
      // Extra read-only file binds (a CA bundle).
      expect((await run(['cat', '/etc/ssl/certs/ca-certificates.crt'])).stdout).toContain('BEGIN CERTIFICATE')
      expect((await run(['sh', '-c', 'echo x >> /etc/ssl/certs/ca-certificates.crt'])).exitCode).not.toBe(0)
    })

    it('sends every TCP connection to the proxy with its original destination', async () => {
      for (const [address, port] of [
        ['203.0.113.10', 443],
        ['169.254.169.254', 80],
        [att.gateway, 22],
        [b.address, bTcp.port],
      ] as const) {
        const r = await tcp(address, port)
        expect(r.stdout, `${address}:${port} ${r.stderr}`).toBe(
          `ORIG ${address}:${port} FROM ${att.address}\n`,
        )
      }
      expect(bTcp.events).toEqual([])
    })

    it('resolves names at the resolver, whatever server it asks, and reaches the upstream through the proxy', async () => {
      const n = fx.dns.queries.length
      const r = await run(['nslookup', 'api.allowed.test'])
      expect(r.stdout).toContain(up.address('api.allowed.test'))
      expect((await run(['nslookup', 'blocked.test', '203.0.113.53'])).stdout).toContain(
        up.address('blocked.test'),
      )
      expect(fx.dns.queries.slice(n).every((q) => q.from === att.address)).toBe(true)
      expect(fx.dns.queries.slice(n).map((q) => q.name)).toEqual(
        expect.arrayContaining(['api.allowed.test', 'blocked.test']),
      )

      const before = httpEcho.events.length
      const w = await run([
        'timeout',
        '10',
        'wget',
        '-q',
        '-O',
        '-',
        `http://api.allowed.test:${httpEcho.port}/from/${name}`,
      ])
      expect(JSON.parse(w.stdout)).toMatchObject({
        path: `/from/${name}`,
        headers: { host: `api.allowed.test:${httpEcho.port}` },
        client: { address: up.hostAddress }, // the proxy's connection, not the sandbox's
      })
      // The server's event comes over its stdout, not with the response: wait for it.
      await eventually(() => httpEcho.events.length > before || undefined, 'the http echo event', 10_000)
      expect(httpEcho.events.slice(before).map((e) => e.remoteAddress)).toEqual([up.hostAddress])
    })

    it("cannot reach the host's services, its loopback, another sandbox or the upstream directly", async () => {
      const port = (hostTcp.address() as net.AddressInfo).port
      for (const address of [att.gateway, ...hostAddresses('IPv4')]) {
        expect((await tcp(address, port)).stdout).toBe(`ORIG ${address}:${port} FROM ${att.address}\n`)
      }
      // 127.0.0.1 inside is the sandbox's own loopback.
      const lo = await tcp('127.0.0.1', port)
      expect(lo.stdout).not.toContain('host service')
      // IPv6: none inside.
      const port6 = (hostTcp6.address() as net.AddressInfo).port
      for (const address of [...hostAddresses('IPv6'), '::1']) {
        const r = await tcp(address, port6)
        expect(r.exitCode, address).not.toBe(0)
        expect(r.stdout).not.toContain('host service')
      }
      // UDP other than DNS goes nowhere: the host, another sandbox, the upstream, metadata.
      await udp([
        ...[att.gateway, ...hostAddresses('IPv4')].map((h) => [h, hostUdp.address().port] as const),
        [b.address, bUdp.port],
        [up.address('api.allowed.test'), udpEcho.port],
        ['169.254.169.254', 80],
      ])
      expect(hostAccepted).toBe(0)
      expect(hostUdpReceived).toBe(0)
      expect(bUdp.events).toEqual([])
      expect(udpEcho.events).toEqual([])
    })

    it('cannot change its routes, addresses or links (no NET_ADMIN)', async () => {
      for (const args of [
        ['ip', 'route', 'add', up.cidr, 'via', att.gateway],
        ['ip', 'route', 'del', 'default'],
        ['ip', 'addr', 'add', `${b.address}/32`, 'dev', 'eth0'],
        ['ip', 'link', 'set', 'eth0', 'down'],
      ]) {
        const r = await run(args)
        expect(r.exitCode, `${args.join(' ')}: ${r.stdout}${r.stderr}`).not.toBe(0)
      }
      expect((await run(['ip', 'route'])).stdout).toContain(`default via ${att.gateway}`)
      expect((await tcp('203.0.113.10', 8443)).stdout).toBe(`ORIG 203.0.113.10:8443 FROM ${att.address}\n`)
    })

    it('gives the address back at delete and after a failed start', async () => {
      await rt.runtime.delete(a.id)
      expect(fx.network.attachmentOf(a.id)).toBeUndefined()
      expect(fx.network.sandboxOf(att.address)).toBeUndefined()
      expect((await listVeths(fx.network.ifacePrefix)).map((v) => v.name)).not.toContain(att.hostIface)

      const id = sandboxId(`net-fail-${name}`)
      await expect(
        rt.runtime.start({ id, templateRootfs: rt.busybox, init: ['/no/such/init'] }),
      ).rejects.toThrow()
      expect(fx.network.attachmentOf(id)).toBeUndefined()
      expect((await listVeths(fx.network.ifacePrefix)).map((v) => v.sandboxId)).toEqual([b.sandboxId])
      expect((await runCliOk('ip', ['netns', 'list'])).stdout).not.toContain(id)
    })
  })

  // runsc re-reads the interfaces at restore: the sandbox comes back on a new veth and address.
  // It cannot encode a TCP endpoint in TIME_WAIT (20221219): that checkpoint keeps files only.
  it('runsc: a memory image restores on a new address; one runsc cannot write keeps the files', async () => {
    const rt = await runtimeFixture('runsc', { network: fx.network })
    try {
      const id = sandboxId('net-mem')
      const image = path.join(rt.stateDir, 'memory')
      const first = await rt.runtime.start({ id, templateRootfs: rt.busybox })
      const sh = (cmd: string): ReturnType<RuntimeFixture['runtime']['run']> =>
        rt.runtime.run(id, ['sh', '-c', cmd], { timeoutMs: 20_000 })
      await sh('sleep 1000 >/dev/null 2>&1 & echo $! > /tmp/sleeper')
      await rt.runtime.stop(id, { memoryImage: image })
      await rt.runtime.delete(id)
      expect(fx.network.attachmentOf(id)).toBeUndefined()
      // Another sandbox takes the next address meanwhile.
      const other = await rt.runtime.start({ id: sandboxId('net-mem-other'), templateRootfs: rt.busybox })
      const back = await rt.runtime.start({ id, templateRootfs: rt.busybox, restoreImage: image })
      expect(back.network?.address).not.toBe(first.network?.address)
      expect(back.network?.address).not.toBe(other.network?.address)
      expect((await sh('kill -0 $(cat /tmp/sleeper) && echo alive')).stdout).toBe('alive\n')
      const addr = back.network?.address ?? ''
      expect((await sh('ip -o -4 addr show dev eth0')).stdout).toContain(`inet ${addr}/30`)
      expect((await sh('nc -w 3 203.0.113.10 80')).stdout).toBe(`ORIG 203.0.113.10:80 FROM ${addr}\n`)
      // busybox nc closes as soon as its input ends, before the echo (proxied to the upstream)
      // does: the sandbox's side of the connection is left in TIME_WAIT.
      const echo = await up.start('tcp-echo')
      const bye = await sh(`echo bye | nc -w 3 ${up.address('other.test')} ${echo.port}`)
      // nc may exit before the proxy has reached the upstream, and the upstream's event comes
      // over its stdout (CI once looked before it came). The checkpoint below must find the
      // connection closed on both sides: wait for the proxy's socket to close as well.
      const what = `the echo's connection closed (nc: ${JSON.stringify(bye)})`
      await eventually(() => (echo.events.length > 0 && fx.proxy.open === 0) || undefined, what, 10_000)
      expect(echo.events).toHaveLength(1)
      await echo.stop()
      await rm(image, { recursive: true, force: true })
      await rt.runtime.stop(id, { memoryImage: image })
      expect(existsSync(image)).toBe(false)
      await rt.runtime.delete(id)
      const fresh = await rt.runtime.start({ id, templateRootfs: rt.busybox })
      expect((await sh('nc -w 3 203.0.113.10 81')).stdout).toBe(
        `ORIG 203.0.113.10:81 FROM ${fresh.network?.address ?? ''}\n`,
      )
    } finally {
      await rt.cleanup()
    }
  })
})
