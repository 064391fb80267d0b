// Resolving a sandbox path through its view: longest prefix, later mount wins a tie, kernel file
// systems are off the host except /dev/shm, `..` never climbs above `/`.
import { describe, expect, it } from 'vitest'
import { legacySandboxView, resolveInView, sandboxView } from '../../src/runtime/view.js'

const view = sandboxView({
  rootfs: '/s/merged',
  tmpHostPath: '/s/scratch/tmp',
  shmHostPath: '/s/scratch/shm',
  binds: [
    { hostPath: '/vol/a', containerPath: '/data/' },
    { hostPath: '/vol/b', containerPath: '/tmp/work', readOnly: true },
    { hostPath: '/vol/c', containerPath: '/data' },
  ],
})

const host = (p: string): string | undefined => {
  const r = resolveInView(view, p)
  return r.kind === 'host' ? r.hostPath : undefined
}

describe('resolveInView', () => {
  it('picks the longest mount that covers the path', () => {
    expect(host('/')).toBe('/s/merged')
    expect(host('/etc/passwd')).toBe('/s/merged/etc/passwd')
    expect(host('/tmp')).toBe('/s/scratch/tmp')
    expect(host('/tmp/x/y')).toBe('/s/scratch/tmp/x/y')
    expect(host('/tmpfoo')).toBe('/s/merged/tmpfoo')
    expect(host('/tmp/work/f')).toBe('/vol/b/f')
    expect(resolveInView(view, '/tmp/work/f')).toMatchObject({ mount: { readOnly: true } })
    expect(host('/dev/shm/sem.x')).toBe('/s/scratch/shm/sem.x')
  })

  it('lets the later of two mounts at one path win, as the kernel does', () => {
    expect(host('/data/f')).toBe('/vol/c/f')
  })

  it('says which paths are kernel file systems', () => {
    for (const p of ['/proc', '/proc/self/fd/0', '/sys/kernel', '/dev', '/dev/null', '/dev/shmx']) {
      expect(resolveInView(view, p), p).toMatchObject({ kind: 'kernel' })
    }
    expect(resolveInView(view, '/devices')).toMatchObject({ kind: 'host' })
  })

  it('resolves .. lexically, never above /', () => {
    expect(host('/tmp/../etc')).toBe('/s/merged/etc')
    expect(host('/../../etc/shadow')).toBe('/s/merged/etc/shadow')
    expect(host('/data/../tmp/work/./f')).toBe('/vol/b/f')
  })

  it('refuses a relative path (a caller bug)', () => {
    expect(() => resolveInView(view, 'etc')).toThrow(/absolute/)
  })

  it('records from before the view: /tmp was the container’s own', () => {
    const old = legacySandboxView('/s/merged')
    expect(resolveInView(old, '/tmp/a')).toMatchObject({ kind: 'kernel', kernelPath: '/tmp' })
    expect(resolveInView(old, '/root/a')).toMatchObject({ kind: 'host', hostPath: '/s/merged/root/a' })
  })
})
