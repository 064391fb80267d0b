// /tmp and /dev/shm on the host's scratch tmpfs, beyond the driver contract: python's
// multiprocessing (POSIX semaphores and shared memory in /dev/shm) works through the bind on runc
// and runsc, shared memory made inside is seen on the host and the reverse; and on runsc a memory
// checkpoint carries /tmp and /dev/shm to the restore, with a process that holds a /tmp file open.
import { access, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DriverName } from '../../src/runtime/driver.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import { resolveInView, type SandboxView } from '../../src/runtime/view.js'
import { runtimeFixture, sandboxId, TEMPLATE_CACHE_DIR, type RuntimeFixture } from './support.js'
import { missingPrerequisite } from './template-cache.js'

function hostPathOf(view: SandboxView, containerPath: string): string {
  const r = resolveInView(view, containerPath)
  if (r.kind !== 'host') throw new Error(`${containerPath} is not on the host`)
  return r.hostPath
}

const MULTIPROCESSING = `
import multiprocessing as mp
from multiprocessing import resource_tracker, shared_memory

def work(lock, counter, n):
    for _ in range(n):
        with lock:
            counter.value += 1

if __name__ == '__main__':
    lock = mp.Lock()  # a POSIX semaphore: sem_open in /dev/shm
    counter = mp.Value('i', 0, lock=False)  # an mmap'd arena in /dev/shm
    ps = [mp.Process(target=work, args=(lock, counter, 200)) for _ in range(3)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print(counter.value)
    mine = shared_memory.SharedMemory(name='made-inside', create=True, size=6)
    mine.buf[:6] = b'inside'
    resource_tracker.unregister(mine._name, 'shared_memory')  # left for the host to read
    theirs = shared_memory.SharedMemory(name='made-on-host')
    resource_tracker.unregister(theirs._name, 'shared_memory')  # 3.11 registers an attach too
    print(bytes(theirs.buf[:7]).decode())
`

function multiprocessingSuite(name: DriverName): void {
  describe(`scratch with python multiprocessing: ${name}`, () => {
    let fx: RuntimeFixture
    let rootfs: string | undefined

    beforeAll(async () => {
      fx = await runtimeFixture(name)
      expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ ok: true })
      const store = new TemplateStore({ dir: TEMPLATE_CACHE_DIR })
      if (await store.isReady('default')) rootfs = await store.get('default')
    })

    afterAll(async () => {
      await fx?.cleanup()
    })

    it('locks, shared values and shared memory work, and /dev/shm is shared with the host', async ({
      skip,
    }) => {
      if (missingPrerequisite(rootfs ? undefined : `template default is not built in ${TEMPLATE_CACHE_DIR}`))
        skip()
      const sb = await fx.runtime.start({ id: sandboxId(`mp-${name}`), templateRootfs: rootfs as string })
      const view = fx.runtime.view(sb.id)
      await writeFile(hostPathOf(view, '/dev/shm/made-on-host'), 'on-host')
      const r = await fx.runtime.run(sb.id, ['python3', '-c', MULTIPROCESSING], { timeoutMs: 120_000 })
      expect(r.stderr).toBe('')
      expect(r.stdout).toBe('600\non-host\n')
      expect(await readFile(hostPathOf(view, '/dev/shm/made-inside'), 'utf8')).toBe('inside')
      await fx.runtime.delete(sb.id)
    })
  })
}

multiprocessingSuite('runc')
multiprocessingSuite('runsc')

describe('scratch in a memory checkpoint: runsc', () => {
  let fx: RuntimeFixture

  beforeAll(async () => {
    fx = await runtimeFixture('runsc')
    expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ ok: true })
  })

  afterAll(async () => {
    await fx?.cleanup()
  })

  it('restores /tmp and /dev/shm with the processes, a /tmp file held open included', async () => {
    const id = sandboxId('mem')
    const rt = fx.runtime
    await rt.start({ id, templateRootfs: fx.busybox })
    await rt.run(id, ['sh', '-c', 'echo kept > /tmp/t; echo shm > /dev/shm/s'])
    // A process of the sandbox's own, appending a count to a /tmp file it holds open.
    await rt.run(id, [
      'sh',
      '-c',
      '(exec 3>>/tmp/count; i=0; while :; do i=$((i+1)); echo $i >&3; sleep 0.1; done) </dev/null >/dev/null 2>&1 &',
    ])
    const count = hostPathOf(rt.view(id), '/tmp/count')
    await waitFor(async () => lines(await readFile(count, 'utf8')).length >= 3)
    const before = lines(await readFile(count, 'utf8')).length // it counts on until the checkpoint
    const image = path.join(fx.stateDir, 'image')
    await rt.stop(id, { memoryImage: image })
    await rt.delete(id)
    await access(path.join(image, 'scratch.tar'))

    await rt.start({ id, templateRootfs: fx.busybox, restoreImage: image })
    const r = await rt.run(id, ['cat', '/tmp/t', '/dev/shm/s'])
    expect(r.stdout).toBe('kept\nshm\n')
    const after = hostPathOf(rt.view(id), '/tmp/count')
    await waitFor(async () => lines(await readFile(after, 'utf8')).length >= before + 3)
    // One file, counted on from where it was (not restarted from 1, no line lost or repeated).
    const all = lines(await readFile(after, 'utf8')).map(Number)
    expect(all).toEqual(all.map((_, i) => i + 1))
    await rt.delete(id)
  })
})

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l !== '')
}

async function waitFor(cond: () => Promise<boolean>, attempts = 300): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('condition not met in time')
}
