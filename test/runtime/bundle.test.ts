// The OCI config we write: limits translated per driver, no dangerous capabilities, masks.
import { describe, expect, it } from 'vitest'
import { buildOciConfig, DEFAULT_CAPABILITIES } from '../../src/runtime/bundle.js'

interface Config {
  process: { noNewPrivileges: boolean; capabilities: Record<string, string[]> }
  mounts: Array<{ destination: string; type: string }>
  linux: {
    resources: Record<string, unknown>
    namespaces: unknown[]
    maskedPaths: string[]
    readonlyPaths: string[]
  }
}

const spec = {
  rootfs: '/x/merged',
  args: ['/bin/sh'],
  env: ['A=1'],
  hostname: 'sb',
  netnsPath: '/run/netns/s0-sb',
  cgroupsPath: '/s0/sb',
  resources: { memoryBytes: 64 * 1024 * 1024, pidsMax: 10, cpuMillis: 500 },
  tmpHostPath: '/x/scratch/tmp',
  shmHostPath: '/x/scratch/shm',
  mounts: [
    { hostPath: '/vol', containerPath: '/data', readOnly: true },
    { hostPath: '/vol2', containerPath: '/tmp/under-tmp' },
  ],
}

describe('buildOciConfig', () => {
  it('translates limits; runsc pays ~8 host pids per guest process', () => {
    const c = buildOciConfig(spec, { base: 0, perProcess: 1 }) as unknown as Config
    expect(c.linux.resources.memory).toEqual({ limit: 64 * 1024 * 1024, swap: 64 * 1024 * 1024 })
    expect(c.linux.resources.pids).toEqual({ limit: 10 })
    expect(c.linux.resources.cpu).toEqual({ quota: 50_000, period: 100_000 })
    const g = buildOciConfig(spec, { base: 40, perProcess: 8 }) as unknown as Config
    expect(g.linux.resources.pids).toEqual({ limit: 120 })
  })

  it('joins the given netns, masks /proc, never grants NET_ADMIN / SYS_ADMIN', () => {
    const c = buildOciConfig(spec, { base: 0, perProcess: 1 }) as unknown as Config
    expect(c.linux.namespaces).toContainEqual({ type: 'network', path: '/run/netns/s0-sb' })
    expect(c.linux.maskedPaths).toContain('/proc/kcore')
    expect(c.linux.readonlyPaths).toContain('/proc/sys')
    expect(c.process.noNewPrivileges).toBe(true)
    for (const set of ['bounding', 'effective', 'permitted']) {
      expect(c.process.capabilities[set]).not.toContain('CAP_NET_ADMIN')
      expect(c.process.capabilities[set]).not.toContain('CAP_SYS_ADMIN')
    }
    expect(DEFAULT_CAPABILITIES).not.toContain('CAP_NET_RAW')
    expect(c.mounts).toContainEqual({
      destination: '/data',
      type: 'bind',
      source: '/vol',
      options: ['rbind', 'ro', 'nosuid', 'nodev'],
    })
  })

  it('binds /tmp and /dev/shm from the host, /tmp before the user binds (one may be under it)', () => {
    const c = buildOciConfig(spec, { base: 0, perProcess: 1 }) as unknown as Config
    expect(c.mounts.filter((m) => m.type === 'tmpfs').map((m) => m.destination)).toEqual(['/dev'])
    expect(c.mounts).toContainEqual({
      destination: '/tmp',
      type: 'bind',
      source: '/x/scratch/tmp',
      options: ['bind', 'nosuid', 'nodev'],
    })
    expect(c.mounts).toContainEqual({
      destination: '/dev/shm',
      type: 'bind',
      source: '/x/scratch/shm',
      options: ['bind', 'nosuid', 'nodev', 'noexec'],
    })
    const order = c.mounts.map((m) => m.destination)
    expect(order.indexOf('/tmp')).toBeLessThan(order.indexOf('/tmp/under-tmp'))
    expect(order.indexOf('/dev')).toBeLessThan(order.indexOf('/dev/shm'))
  })
})
