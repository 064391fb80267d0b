// Nothing leaks across restarts: a new SandboxRuntime (same state dir, empty known set) removes
// containers, mounts (overlays, /tmp scratch), netns and cgroups it did not start; known running
// sandboxes are adopted. Nor does a start that fails half-way.
import { access, readdir } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeDriver } from '../../src/runtime/detect.js'
import { SandboxRuntime } from '../../src/runtime/sandbox-runtime.js'
import { procMounts, runtimeFixture, sandboxId, type RuntimeFixture } from './support.js'

describe('reconcile', () => {
  let fx: RuntimeFixture

  beforeAll(async () => {
    fx = await runtimeFixture('runc')
  })

  afterAll(async () => {
    await fx?.cleanup()
  })

  const restarted = (): SandboxRuntime =>
    new SandboxRuntime({
      stateDir: fx.stateDir,
      driver: makeDriver('runc', fx.stateDir),
      cgroupPrefix: fx.cgroupPrefix,
      netnsPrefix: fx.netnsPrefix,
    })

  it('cleans up a forgotten sandbox completely', async () => {
    const sb = await fx.runtime.start({ id: sandboxId('forgotten'), templateRootfs: fx.busybox })
    expect(await procMounts()).toContain(sb.dir)

    const report = await restarted().reconcile([])
    expect(report.containers).toEqual([sb.id])
    expect(report.dirs).toEqual([sb.id])
    expect(report.mounts).toContain(sb.rootfs)
    expect(await procMounts()).not.toContain(sb.dir)
    expect(await readdir('/run/netns').catch(() => [])).not.toContain(sb.netns)
    expect(await fx.runtime.driver.list()).toEqual([])
    await expect(access(path.join('/sys/fs/cgroup/memory', sb.cgroupsPath))).rejects.toThrow()
    await expect(access(sb.dir)).rejects.toThrow()
  })

  it('removes strays with no record: a netns, a cgroup, a mount whose dir lost its record', async () => {
    const sb = await fx.runtime.start({ id: sandboxId('half'), templateRootfs: fx.busybox })
    // A crash between steps: the container is gone but the rest is not.
    await fx.runtime.driver.delete(sb.id)
    const report = await restarted().reconcile([])
    expect(report.dirs).toEqual([sb.id])
    expect(await procMounts()).not.toContain(sb.dir)
    expect(await readdir('/run/netns').catch(() => [])).not.toContain(sb.netns)
  })

  it('a failed start leaves nothing: overlay, /tmp scratch, netns, directory', async () => {
    const id = sandboxId('failed')
    const dir = path.join(fx.stateDir, 'sandboxes', id)
    await expect(
      fx.runtime.start({ id, templateRootfs: fx.busybox, init: ['/no/such/init'] }),
    ).rejects.toMatchObject({ code: 'runtime_failed' })
    expect(await procMounts()).not.toContain(dir)
    expect(await readdir('/run/netns').catch(() => [])).not.toContain(`${fx.netnsPrefix}${id}`)
    await expect(access(dir)).rejects.toThrow()
    expect(fx.runtime.ids()).not.toContain(id)
  })

  it('adopts known sandboxes that still run and leaves them working', async () => {
    const keep = await fx.runtime.start({ id: sandboxId('kept'), templateRootfs: fx.busybox })
    const drop = await fx.runtime.start({ id: sandboxId('dropped'), templateRootfs: fx.busybox })
    const rt = restarted()
    const report = await rt.reconcile([keep.id])
    expect(report.adopted).toEqual([keep.id])
    expect(report.containers).toEqual([drop.id])
    expect((await rt.run(keep.id, ['echo', 'still here'])).stdout).toBe('still here\n')
    await rt.delete(keep.id)
    expect(await procMounts()).not.toContain(keep.dir)
  })
})
