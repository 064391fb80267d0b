// What a sandbox must not reach: host files, host processes, the network, other sandboxes'
// files, and more memory or processes than its limits. Full set on runc (the default); the
// cases where gVisor behaves differently (OOM kills the whole sandbox) also on runsc, kept few
// because ptrace is slow.
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DriverName } from '../../src/runtime/driver.js'
import type { SandboxRecord } from '../../src/runtime/sandbox-runtime.js'
import { runtimeFixture, sandboxId, type RuntimeFixture } from './support.js'

function hostAddress(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return '127.0.0.1'
}

function isolationSuite(name: DriverName, opts: { full: boolean }): void {
  describe(`isolation: ${name}`, () => {
    let fx: RuntimeFixture
    let a: SandboxRecord
    let server: net.Server
    let port = 0
    let accepted = 0

    beforeAll(async () => {
      fx = await runtimeFixture(name)
      expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ ok: true })
      a = await fx.runtime.start({
        id: sandboxId(`iso-${name}`),
        templateRootfs: fx.busybox,
        resources: { memoryBytes: 64 * 1024 * 1024, pidsMax: 48 },
      })
      server = net.createServer((s) => {
        accepted++
        s.end('hello from host\n')
      })
      await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve))
      port = (server.address() as net.AddressInfo).port
    })

    afterAll(async () => {
      server?.close()
      await fx?.cleanup()
    })

    it('has only loopback and cannot reach a host listener', async () => {
      const links = await fx.runtime.run(a.id, ['sh', '-c', 'ls /sys/class/net 2>/dev/null || ip -o link'])
      expect(
        links.stdout
          .trim()
          .split(/\s+/)
          .filter((l) => l !== ''),
      ).toEqual(['lo'])
      for (const host of [hostAddress(), '127.0.0.1']) {
        const r = await fx.runtime.run(a.id, ['nc', '-w', '2', host, String(port)], { timeoutMs: 10_000 })
        expect(r.stdout).not.toContain('hello from host')
        expect(r.exitCode).not.toBe(0)
      }
      const w = await fx.runtime.run(
        a.id,
        ['wget', '-T', '2', '-q', '-O', '-', `http://${hostAddress()}:${port}/`],
        {
          timeoutMs: 10_000,
        },
      )
      expect(w.exitCode).not.toBe(0)
      expect(accepted).toBe(0)
    })

    it('sees none of the host processes', async () => {
      const r = await fx.runtime.run(a.id, ['sh', '-c', 'ls /proc | grep -E "^[0-9]+$"'])
      const pids = r.stdout.trim().split('\n').map(Number)
      expect(pids.length).toBeLessThan(10)
      expect(pids).not.toContain(process.pid)
      const ps = await fx.runtime.run(a.id, ['ps', '-o', 'pid,args'])
      expect(ps.stdout).not.toMatch(/node|vitest/)
    })

    it('a memory hog is OOM-killed and reported; the host is fine', async () => {
      // 200 MB in one buffer against a 64 MiB limit.
      const r = await fx.runtime.run(a.id, ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=200M', 'count=1'], {
        timeoutMs: 30_000,
      })
      expect(r.oomKilled).toBe(true)
      expect(r.exitCode).not.toBe(0)
      const status = await fx.runtime.status(a.id)
      expect(status.oomKills).toBeGreaterThan(0)
      if (name === 'runsc') {
        // gVisor: the sentry itself is the OOM victim, the whole sandbox is gone.
        expect(status.status).not.toBe('running')
        await expect(fx.runtime.run(a.id, ['true'])).rejects.toMatchObject({ code: 'sandbox_not_running' })
      } else {
        // runc: only the offending process dies; the sandbox keeps working.
        expect((await fx.runtime.run(a.id, ['echo', 'alive'])).stdout).toBe('alive\n')
      }
      expect(os.freemem()).toBeGreaterThan(256 * 1024 * 1024)
    })

    if (!opts.full) return

    it('cannot see a host file', async () => {
      const name = `s0-host-secret-${randomBytes(4).toString('hex')}`
      const file = path.join(os.tmpdir(), name)
      await writeFile(file, 'host secret')
      try {
        const r = await fx.runtime.run(a.id, [
          'sh',
          '-c',
          `cat ${file}; ls /tmp; find / -name ${name} 2>/dev/null`,
        ])
        expect(r.stdout).not.toContain('host secret')
        expect(r.stdout).not.toContain(name)
      } finally {
        await rm(file, { force: true })
      }
    })

    it('two sandboxes do not see each other’s files', async () => {
      const b = await fx.runtime.start({ id: sandboxId(`iso-${name}-b`), templateRootfs: fx.busybox })
      try {
        await fx.runtime.run(a.id, ['sh', '-c', 'echo mine > /root/a-only; echo tmp > /tmp/a-tmp'])
        const r = await fx.runtime.run(b.id, ['sh', '-c', 'cat /root/a-only /tmp/a-tmp; ls /root /tmp'])
        expect(r.stdout).not.toContain('mine')
        expect(r.stdout).not.toContain('a-only')
        expect(r.stdout).not.toContain('a-tmp')
        expect(b.rootfs).not.toBe(a.rootfs)
      } finally {
        await fx.runtime.delete(b.id)
      }
    })

    it('a fork bomb hits the pids limit; the host and the cleanup are fine', async () => {
      const c = await fx.runtime.start({
        id: sandboxId(`iso-${name}-bomb`),
        templateRootfs: fx.busybox,
        resources: { pidsMax: 16 },
      })
      try {
        const pidsMax = await readFile(path.join('/sys/fs/cgroup/pids', c.cgroupsPath, 'pids.max'), 'utf8')
        expect(pidsMax.trim()).toBe('16')
        const p = await fx.runtime.exec(c.id, ['sh', '-c', 'b() { b | b & }; b; sleep 2'], {
          timeoutMs: 3_000,
        })
        p.stdin.end()
        const err: string[] = []
        p.stderr.on('data', (d: Buffer) => err.push(d.toString()))
        p.stdout.resume()
        await p.wait()
        const current = Number(
          (await readFile(path.join('/sys/fs/cgroup/pids', c.cgroupsPath, 'pids.current'), 'utf8')).trim(),
        )
        expect(current).toBeLessThanOrEqual(16)
        expect(err.join('')).toMatch(/can't fork|Resource temporarily unavailable/)
      } finally {
        await fx.runtime.delete(c.id)
      }
      expect((await fx.runtime.run(a.id, ['echo', 'still fine'])).stdout).toBe('still fine\n')
    })

    it('a writable root cannot touch the template, and /tmp is a capped tmpfs', async () => {
      const r = await fx.runtime.run(a.id, ['sh', '-c', 'grep " /tmp " /proc/mounts; echo x > /bin/new-tool'])
      // The host's scratch tmpfs, bound (the source name is ours: scratch.ts).
      expect(r.stdout).toMatch(/^s0-scratch \/tmp tmpfs .*size=/)
      await expect(readFile(path.join(fx.busybox, 'bin/new-tool'))).rejects.toThrow()
    })

    it('has no NET_ADMIN or SYS_ADMIN and cannot gain privileges', async () => {
      const r = await fx.runtime.run(a.id, ['sh', '-c', 'grep -E "^(CapBnd|NoNewPrivs)" /proc/self/status'])
      const bnd = BigInt('0x' + (/CapBnd:\s+([0-9a-f]+)/.exec(r.stdout)?.[1] ?? '0'))
      const CAP_NET_ADMIN = 12n
      const CAP_SYS_ADMIN = 21n
      expect(bnd & (1n << CAP_NET_ADMIN)).toBe(0n)
      expect(bnd & (1n << CAP_SYS_ADMIN)).toBe(0n)
      expect(r.stdout).toMatch(/NoNewPrivs:\s+1/)
      const up = await fx.runtime.run(a.id, ['ip', 'link', 'add', 'x0', 'type', 'dummy'])
      expect(up.exitCode).not.toBe(0)
    })
  })
}

isolationSuite('runc', { full: true })
isolationSuite('runsc', { full: false })
