// The contract every OCI driver passes through SandboxRuntime: start a busybox sandbox, exec
// with pipes and a tty, exit codes, stderr, env, cwd, stdin, timeouts, the host seeing /tmp,
// /dev/shm and bind mounts as the sandbox does (its view), bounded scratch, and delete leaving
// nothing behind. Run by runc.test.ts, crun.test.ts and runsc.test.ts, and by containerd.test.ts
// on runc and runsc through containerd.
import { access, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { limits } from '../../src/core/limits.js'
import type { DriverName, DriverVia } from '../../src/runtime/driver.js'
import type { SandboxRecord } from '../../src/runtime/sandbox-runtime.js'
import { resolveInView, type SandboxView } from '../../src/runtime/view.js'
import { procMounts, runtimeFixture, sandboxId, type RuntimeFixture } from './support.js'
import { missingPrerequisite } from './template-cache.js'

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  )

const MiB = 1024 * 1024
/** Small scratch for the contract sandbox, so filling it is quick: 8 MiB for /tmp + /dev/shm. */
const TMP_BYTES = 6 * MiB
const SHM_BYTES = 2 * MiB

function hostPathOf(view: SandboxView, containerPath: string): string {
  const r = resolveInView(view, containerPath)
  if (r.kind !== 'host') throw new Error(`${containerPath} is not on the host: ${JSON.stringify(r)}`)
  return r.hostPath
}

export function driverContract(name: DriverName, opts: { via?: DriverVia } = {}): void {
  const via = opts.via ?? 'cli'
  describe(`driver contract: ${name}${via === 'cli' ? '' : ` via ${via}`}`, () => {
    let fx: RuntimeFixture
    let sb: SandboxRecord
    let volume: string
    let skip = false

    beforeAll(async () => {
      fx = await runtimeFixture(name, { via })
      if (missingPrerequisite(fx.probe.ok ? undefined : `${name} does not work here: ${fx.probe.reason}`)) {
        skip = true
        return
      }
      volume = path.join(fx.stateDir, 'volume')
      await mkdir(volume)
      await writeFile(path.join(volume, 'on-volume'), 'volume file\n')
      sb = await fx.runtime.start({
        id: sandboxId(name),
        templateRootfs: fx.busybox,
        env: { GREETING: 'hello', SHARED: 'from-start' },
        resources: { memoryBytes: 128 * 1024 * 1024, pidsMax: 64, cpuMillis: 1000 },
        tmpSizeBytes: TMP_BYTES,
        devShmSizeBytes: SHM_BYTES,
        // Under /tmp: the /tmp bind must come first or it would hide this one.
        mounts: [{ hostPath: volume, containerPath: '/tmp/vol' }],
      })
    })

    afterAll(async () => {
      await fx?.cleanup()
    })

    it('detects the driver as working', () => {
      expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ name, ok: true })
      expect(fx.runtime.driver.via ?? 'cli').toBe(via)
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

    it('gives a view: /, /tmp, /dev/shm, the binds, and kernel paths off the host', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const view = fx.runtime.view(sb.id)
      expect(view.mounts.map((m) => m.containerPath)).toEqual(['/', '/tmp', '/dev/shm', '/tmp/vol'])
      // The root and the scratch carry their sizes (a full one is the sandbox's own limit).
      expect(view.mounts[0]).toEqual({
        containerPath: '/',
        hostPath: sb.rootfs,
        readOnly: false,
        limitBytes: limits.sandboxDiskBytesDefault,
      })
      expect(view.mounts[1]?.limitBytes).toBe(TMP_BYTES + SHM_BYTES)
      expect(view.mounts[3]?.limitBytes).toBeUndefined()
      expect(hostPathOf(view, '/tmp/vol/x')).toBe(path.join(volume, 'x'))
      expect(hostPathOf(view, '/tmp/volume')).toBe(path.join(view.mounts[1]?.hostPath ?? '', 'volume'))
      expect(hostPathOf(view, '/etc/../etc/hostname')).toBe(path.join(sb.rootfs, 'etc/hostname'))
      for (const p of ['/proc/1/status', '/sys/fs', '/dev/null', '/dev/pts/0']) {
        expect(resolveInView(view, p).kind, p).toBe('kernel')
      }
      expect(resolveInView(view, '/dev/shm/x').kind).toBe('host')
    })

    it('the host and the sandbox see the same /tmp, /dev/shm and bind mounts', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const view = fx.runtime.view(sb.id)
      await writeFile(hostPathOf(view, '/tmp/a.txt'), 'host tmp\n')
      await writeFile(hostPathOf(view, '/dev/shm/a'), 'host shm\n')
      const r = await fx.runtime.run(sb.id, [
        'sh',
        '-c',
        'cat /tmp/a.txt /dev/shm/a /tmp/vol/on-volume && echo x > /tmp/b && echo y > /dev/shm/c && echo z > /tmp/vol/d',
      ])
      expect(r.stderr).toBe('')
      expect(r.stdout).toBe('host tmp\nhost shm\nvolume file\n')
      expect(await readFile(hostPathOf(view, '/tmp/b'), 'utf8')).toBe('x\n')
      expect(await readFile(hostPathOf(view, '/dev/shm/c'), 'utf8')).toBe('y\n')
      expect(await readFile(path.join(volume, 'd'), 'utf8')).toBe('z\n')
      // A rewrite on the host is seen at once (no stale cache inside, runsc's gofer included).
      await writeFile(hostPathOf(view, '/tmp/b'), 'rewritten on the host\n')
      expect((await fx.runtime.run(sb.id, ['cat', '/tmp/b'])).stdout).toBe('rewritten on the host\n')
    })

    it('/tmp and /dev/shm are bounded: df shows the size, writing past it fails with ENOSPC', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const df = await fx.runtime.run(sb.id, ['df', '-k', '/tmp', '/dev/shm'])
      const totalsKiB = df.stdout
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => Number(l.trim().split(/\s+/)[1]))
      expect(totalsKiB).toEqual([(TMP_BYTES + SHM_BYTES) / 1024, (TMP_BYTES + SHM_BYTES) / 1024])
      const fill = await fx.runtime.run(sb.id, [
        'sh',
        '-c',
        'dd if=/dev/zero of=/tmp/fill bs=1M count=16; echo "exit $?"; rm /tmp/fill',
      ])
      expect(fill.stderr).toMatch(/No space left on device/)
      expect(fill.stdout).not.toContain('exit 0')
      const shm = await fx.runtime.run(sb.id, ['dd', 'if=/dev/zero', 'of=/dev/shm/fill', 'bs=1M', 'count=16'])
      expect(shm.exitCode).not.toBe(0)
      expect(shm.stderr).toMatch(/No space left on device/)
    })

    it('delete removes the container, overlay, netns and cgroup', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const id = sb.id
      const scratch = fx.runtime.view(id).mounts[1]?.hostPath ?? ''
      expect(await procMounts()).toContain(path.dirname(scratch)) // the scratch tmpfs
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
