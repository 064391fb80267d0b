// The bounded writable root (src/runtime/disk.ts): on every runtime, a sandbox whose root is a
// 64 MiB ext4 image sees 64 MiB in `df /`, gets ENOSPC past it, and never takes more host disk
// than that; its upper outlives the stop for a capture (and a host reboot, for reconcile), and
// delete leaves no image and no loop device. The cache of empty images stays bounded.
import { access, readdir, readFile, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { limits } from '../../src/core/limits.js'
import { runCliOk } from '../../src/runtime/cli.js'
import { diskImageBytes, DiskImages } from '../../src/runtime/disk.js'
import { makeDriver } from '../../src/runtime/detect.js'
import type { DriverName } from '../../src/runtime/driver.js'
import { diskImagePath, overlayPaths } from '../../src/runtime/overlay.js'
import { SandboxRuntime, type SandboxRecord } from '../../src/runtime/sandbox-runtime.js'
import { procMounts, runtimeFixture, sandboxId, type RuntimeFixture } from './support.js'

const MiB = 1024 * 1024
const LIMIT = 64 * MiB

/** Host bytes the file really takes (not its apparent size: the image is sparse). */
async function allocatedBytes(file: string): Promise<number> {
  return (await stat(file)).blocks * 512
}

/** Loop devices whose backing file is under `dir` (a leak if any is left after delete). */
async function loopsUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const dev of await readdir('/sys/block')) {
    if (!dev.startsWith('loop')) continue
    const backing = await readFile(`/sys/block/${dev}/loop/backing_file`, 'utf8').catch(() => '')
    if (backing.startsWith(dir)) out.push(`${dev}: ${backing.trim()}`)
  }
  return out
}

/**
 * The loop devices left under `dir` once the kernel is done: an autoclear loop device is
 * detached by a work item after its last close, so right after an umount it may still be listed
 * (seen under load). Bounded: 50 looks, 100 ms apart.
 */
async function loopsSettledUnder(dir: string): Promise<string[]> {
  let loops = await loopsUnder(dir)
  for (let i = 0; i < 50 && loops.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100))
    loops = await loopsUnder(dir)
  }
  return loops
}

const exists = (p: string): Promise<boolean> =>
  access(p).then(
    () => true,
    () => false,
  )

function diskSuite(name: DriverName, opts: { full: boolean }): void {
  describe(`bounded root disk: ${name}`, () => {
    let fx: RuntimeFixture
    let sb: SandboxRecord

    beforeAll(async () => {
      fx = await runtimeFixture(name)
      expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ ok: true })
      sb = await fx.runtime.start({
        id: sandboxId(`disk-${name}`),
        templateRootfs: fx.busybox,
        diskBytes: LIMIT,
      })
    })

    afterAll(async () => {
      await fx?.cleanup()
    })

    it('df / shows the limit; writing past it fails with ENOSPC; the host disk is spared', async () => {
      const df = await fx.runtime.run(sb.id, ['df', '-k', '/'])
      expect(df.stdout.split('\n')[1]?.split(/\s+/)[1]).toBe(String(LIMIT / 1024))
      const dd = await fx.runtime.run(sb.id, ['dd', 'if=/dev/zero', 'of=/big', 'bs=1M', 'count=100'], {
        timeoutMs: 60_000,
      })
      expect(dd.exitCode).not.toBe(0)
      expect(dd.stderr).toMatch(/No space left on device/)
      const image = diskImagePath(path.join(sb.dir, 'rootfs'))
      expect((await stat(image)).size).toBe(LIMIT)
      // What the sandbox can take from the host disk, whatever it writes: the limit.
      expect(await allocatedBytes(image)).toBeLessThanOrEqual(LIMIT)
      // Freed space comes back: the sandbox writes again once it deletes.
      const again = await fx.runtime.run(sb.id, ['sh', '-c', 'rm /big && echo fits > /small && cat /small'])
      expect(again).toMatchObject({ exitCode: 0, stdout: 'fits\n' })
    })

    if (!opts.full) return

    it('stop keeps the upper readable on its disk for a capture; delete removes image and loop device', async () => {
      const c = await fx.runtime.start({
        id: sandboxId(`disk-stop-${name}`),
        templateRootfs: fx.busybox,
        diskBytes: LIMIT,
      })
      // Near the limit: ~60 MiB written, the last file cut short by ENOSPC.
      const w = await fx.runtime.run(c.id, [
        'sh',
        '-c',
        'echo kept > /root/note; dd if=/dev/urandom of=/root/a bs=1M count=40 2>/dev/null; dd if=/dev/zero of=/root/b bs=1M count=40 2>/dev/null; sync',
      ])
      expect(w.exitCode).toBe(0)
      const rec = await fx.runtime.stop(c.id)
      expect(await procMounts()).not.toContain(rec.rootfs + ' ')
      expect(await readFile(path.join(rec.upperDir, 'root', 'note'), 'utf8')).toBe('kept\n')
      expect((await stat(path.join(rec.upperDir, 'root', 'a'))).size).toBe(40 * MiB)
      expect(await loopsUnder(rec.dir)).toHaveLength(1)
      await fx.runtime.delete(c.id)
      expect(await exists(rec.dir)).toBe(false)
      expect(await loopsSettledUnder(rec.dir)).toEqual([])
    })

    it('after a host reboot (its disk unmounted), reconcile mounts the image again for the capture', async () => {
      const c = await fx.runtime.start({
        id: sandboxId(`disk-reboot-${name}`),
        templateRootfs: fx.busybox,
        diskBytes: LIMIT,
      })
      await fx.runtime.run(c.id, ['sh', '-c', 'echo survives > /root/after-reboot; sync'])
      // What a reboot leaves: no container, no mounts, the files (image included) on disk.
      await fx.runtime.driver.delete(c.id)
      const mounts = (await procMounts()).split('\n').map((l) => l.split(' ')[1] ?? '')
      for (const m of mounts.filter((m) => m.startsWith(c.dir + '/')).reverse()) await runCliOk('umount', [m])
      expect(await loopsSettledUnder(c.dir)).toEqual([])
      const restarted = new SandboxRuntime({
        stateDir: fx.stateDir,
        driver: makeDriver(name, fx.stateDir),
        cgroupPrefix: fx.cgroupPrefix,
        netnsPrefix: fx.netnsPrefix,
      })
      const report = await restarted.reconcile([sb.id], { keep: [c.id] })
      expect(report.kept).toEqual([c.id])
      const upper = restarted.get(c.id).upperDir
      expect(upper).toBe(overlayPaths(path.join(c.dir, 'rootfs')).upper)
      expect(await readFile(path.join(upper, 'root', 'after-reboot'), 'utf8')).toBe('survives\n')
      await restarted.delete(c.id)
      expect(await loopsSettledUnder(c.dir)).toEqual([])
    })
  })
}

diskSuite('runc', { full: true })
diskSuite('crun', { full: false })
diskSuite('runsc', { full: false })

describe('empty disk images', () => {
  it('sizes are whole MiB within bounds', () => {
    expect(diskImageBytes(10 * 1024 * MiB + 123)).toBe(10 * 1024 * MiB)
    expect(() => diskImageBytes(limits.sandboxDiskBytesMin - 1)).toThrow(/sandbox disk/)
    expect(() => diskImageBytes(limits.sandboxDiskBytesMax + MiB)).toThrow(/sandbox disk/)
  })

  it('are made once per size, sparse, and the cache keeps at most sandboxDiskImagesCachedMax', async () => {
    const dir = path.join(os.tmpdir(), `s0-disk-images-${process.pid}`)
    const images = new DiskImages(dir)
    try {
      const n = limits.sandboxDiskImagesCachedMax + 2
      for (let i = 0; i < n; i++) {
        const bytes = limits.sandboxDiskBytesMin + i * MiB
        await images.copyEmpty(bytes, path.join(dir, `copy-${i}`))
        expect((await stat(path.join(dir, `copy-${i}`))).size).toBe(bytes)
        expect(await allocatedBytes(path.join(dir, `copy-${i}`))).toBeLessThan(bytes / 4)
        await runCliOk('rm', [path.join(dir, `copy-${i}`)])
      }
      const cached = (await readdir(dir)).filter((f) => f.startsWith('ext4-'))
      expect(cached).toHaveLength(limits.sandboxDiskImagesCachedMax)
      // The oldest sizes went; the newest stayed.
      expect(cached).toContain(`ext4-${limits.sandboxDiskBytesMin + (n - 1) * MiB}.img`)
      expect(cached).not.toContain(`ext4-${limits.sandboxDiskBytesMin}.img`)
      // A 10 GiB image takes a few MiB of host disk (ext4's metadata; measured ~4 MiB).
      await images.copyEmpty(10 * 1024 * MiB, path.join(dir, 'big'))
      expect(await allocatedBytes(path.join(dir, 'big'))).toBeLessThan(16 * MiB)
    } finally {
      await runCliOk('rm', ['-rf', dir])
    }
  })
})
