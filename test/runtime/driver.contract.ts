// The contract every OCI driver passes through SandboxRuntime: start a busybox sandbox, exec
// with pipes and a tty, exit codes, stderr, env, cwd, stdin, timeouts, and delete leaving
// nothing behind. Run by runc.test.ts, crun.test.ts and runsc.test.ts.
import { access, readdir } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import type { DriverName } from '../../src/runtime/driver.js'
import type { SandboxRecord } from '../../src/runtime/sandbox-runtime.js'
import { procMounts, runtimeFixture, sandboxId, type RuntimeFixture } from './support.js'

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  )

export function driverContract(name: DriverName): void {
  describe(`driver contract: ${name}`, () => {
    let fx: RuntimeFixture
    let sb: SandboxRecord
    let skip = false

    beforeAll(async () => {
      fx = await runtimeFixture(name)
      if (!fx.probe.ok) {
        skip = true
        console.warn(`skipping ${name}: ${fx.probe.reason}`)
        return
      }
      sb = await fx.runtime.start({
        id: sandboxId(name),
        templateRootfs: fx.busybox,
        env: { GREETING: 'hello', SHARED: 'from-start' },
        resources: { memoryBytes: 128 * 1024 * 1024, pidsMax: 64, cpuMillis: 1000 },
      })
    })

    afterAll(async () => {
      await fx?.cleanup()
    })

    it('detects the driver as working', () => {
      expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ name, ok: true })
    })

    it('exec echo hi -> stdout "hi", exit 0', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const r = await fx.runtime.run(sb.id, ['echo', 'hi'])
      expect(r).toMatchObject({ exitCode: 0, stdout: 'hi\n', stderr: '', timedOut: false, oomKilled: false })
    })

    it('reports exit codes and keeps stderr apart from stdout', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const r = await fx.runtime.run(sb.id, ['sh', '-c', 'echo out; echo err >&2; exit 7'])
      expect(r.exitCode).toBe(7)
      expect(r.stdout).toBe('out\n')
      expect(r.stderr).toBe('err\n')
      const missing = await fx.runtime.run(sb.id, ['/no/such/binary'])
      expect(missing.exitCode).not.toBe(0)
    })

    it('passes the sandbox env and the exec env (exec wins), cwd and stdin', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const r = await fx.runtime.run(sb.id, ['sh', '-c', 'echo "$GREETING $SHARED $EXTRA"; pwd; cat'], {
        env: { SHARED: 'from-exec', EXTRA: 'x y' },
        cwd: '/etc',
        stdin: 'piped input',
      })
      expect(r.stdout).toBe('hello from-exec x y\n/etc\npiped input')
      expect(r.exitCode).toBe(0)
    })

    it('runs a process under a tty', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const r = await fx.runtime.run(sb.id, ['sh', '-c', '[ -t 0 ] && [ -t 1 ] && echo is-a-tty'], {
        tty: true,
      })
      expect(r.stdout.replace(/\r/g, '')).toContain('is-a-tty')
      expect(r.exitCode).toBe(0)
    })

    it('kills a process that outlives its timeout (exec_timeout), inside the sandbox too', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const err = await fx.runtime.run(sb.id, ['sleep', '30'], { timeoutMs: 500 }).catch((e: unknown) => e)
      expect(isS0Error(err, 'exec_timeout')).toBe(true)
      const ps = await fx.runtime.run(sb.id, ['ps'])
      expect(ps.stdout).not.toContain('sleep 30')
    })

    it('state, list and pids see the running container', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      expect((await fx.runtime.driver.state(sb.id))?.status).toBe('running')
      expect((await fx.runtime.driver.list()).map((c) => c.id)).toContain(sb.id)
      expect((await fx.runtime.driver.pids(sb.id)).length).toBeGreaterThan(0)
      expect((await fx.runtime.status(sb.id)).status).toBe('running')
    })

    it('writes land in the upper dir, never in the template', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const r = await fx.runtime.run(sb.id, ['sh', '-c', 'echo data > /etc/written && rm /bin/vi && echo ok'])
      expect(r.stdout).toBe('ok\n')
      expect(await exists(path.join(sb.upperDir, 'etc/written'))).toBe(true)
      expect(await exists(path.join(fx.busybox, 'etc/written'))).toBe(false)
      expect(await exists(path.join(fx.busybox, 'bin/vi'))).toBe(true)
    })

    it('delete removes the container, overlay, netns and cgroup', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const id = sb.id
      await fx.runtime.delete(id)
      expect(await procMounts()).not.toContain(sb.dir)
      expect(await readdir('/run/netns').catch(() => [])).not.toContain(sb.netns)
      expect((await fx.runtime.driver.list()).map((c) => c.id)).not.toContain(id)
      expect(await fx.runtime.driver.state(id)).toBeUndefined()
      expect(await exists(path.join('/sys/fs/cgroup/memory', sb.cgroupsPath))).toBe(false)
      expect(await exists(sb.dir)).toBe(false)
      await fx.runtime.delete(id) // idempotent
      await expect(fx.runtime.run(id, ['true'])).rejects.toMatchObject({ code: 'sandbox_not_found' })
    })
  })
}
