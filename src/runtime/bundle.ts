// Writes an OCI bundle's config.json from a typed spec. Defaults follow runc's and docker's:
// docker's capability set without NET_RAW (and never NET_ADMIN or SYS_ADMIN), no_new_privileges,
// runc's masked and read-only paths, a capped /tmp tmpfs, cgroup v1 limits.
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { assert } from '../core/assert.js'
import type { PidsCost } from './driver.js'

export interface SandboxResources {
  /** Memory limit (swap included: the container gets no swap). */
  memoryBytes?: number
  /** Processes the sandbox may run at once; the driver's pidsCost turns it into the cgroup value. */
  pidsMax?: number
  /** CPU bandwidth in thousandths of a core (1000 = one full core), as a CFS quota. */
  cpuMillis?: number
  /** Relative CPU weight (cgroup v1 cpu.shares, default 1024). */
  cpuShares?: number
}

export interface BindMount {
  hostPath: string
  containerPath: string
  readOnly?: boolean
}

export interface BundleSpec {
  /** Absolute real path of the root file system (the overlay's merged dir). */
  rootfs: string
  args: readonly string[]
  /** `KEY=value` entries. */
  env: readonly string[]
  cwd?: string
  hostname: string
  /** A network namespace to join (`/run/netns/...`); unset: a new, empty one. */
  netnsPath?: string
  /** cgroup path under every v1 hierarchy, e.g. `/s0/<id>`. */
  cgroupsPath: string
  resources: SandboxResources
  mounts?: readonly BindMount[]
  tmpSizeBytes?: number
  readonlyRootfs?: boolean
}

export const bundleDefaults = {
  tmpSizeBytes: 256 * 1024 * 1024,
  devShmSizeBytes: 64 * 1024 * 1024,
  cpuPeriodUs: 100_000,
  nofile: 4096,
  /** Sandboxes go first if the host itself runs out of memory. */
  oomScoreAdj: 500,
} as const

// docker's default set minus NET_RAW: raw sockets allow spoofing and the sandbox has no network use for them.
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const

const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
]
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

export type OciConfig = Record<string, unknown>

export function buildOciConfig(spec: BundleSpec, pidsCost: PidsCost): OciConfig {
  assert(path.isAbsolute(spec.rootfs), 'rootfs must be absolute')
  const caps = [...DEFAULT_CAPABILITIES]
  const mounts: Record<string, unknown>[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${bundleDefaults.devShmSizeBytes}`],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    {
      destination: '/tmp',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', 'mode=1777', `size=${spec.tmpSizeBytes ?? bundleDefaults.tmpSizeBytes}`],
    },
  ]
  for (const m of spec.mounts ?? []) {
    assert(
      path.isAbsolute(m.hostPath) && path.isAbsolute(m.containerPath),
      'bind mount paths must be absolute',
    )
    mounts.push({
      destination: m.containerPath,
      type: 'bind',
      source: m.hostPath,
      options: ['rbind', m.readOnly ? 'ro' : 'rw', 'nosuid', 'nodev'],
    })
  }
  const namespaces: Record<string, string>[] = [
    { type: 'pid' },
    spec.netnsPath === undefined ? { type: 'network' } : { type: 'network', path: spec.netnsPath },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
  ]
  return {
    ociVersion: '1.0.2-dev',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [...spec.args],
      env: [...spec.env],
      cwd: spec.cwd ?? '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: bundleDefaults.nofile, soft: bundleDefaults.nofile }],
      noNewPrivileges: true,
      oomScoreAdj: bundleDefaults.oomScoreAdj,
    },
    root: { path: spec.rootfs, readonly: spec.readonlyRootfs ?? false },
    hostname: spec.hostname,
    mounts,
    linux: {
      cgroupsPath: spec.cgroupsPath,
      resources: buildResources(spec.resources, pidsCost),
      namespaces,
      maskedPaths: MASKED_PATHS,
      readonlyPaths: READONLY_PATHS,
    },
  }
}

function buildResources(r: SandboxResources, pidsCost: PidsCost): Record<string, unknown> {
  const out: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }] }
  if (r.memoryBytes !== undefined) {
    assert(r.memoryBytes >= 4 * 1024 * 1024, 'memory limit below 4 MiB')
    out['memory'] = { limit: r.memoryBytes, swap: r.memoryBytes }
  }
  if (r.pidsMax !== undefined) {
    assert(r.pidsMax >= 1, 'pidsMax must be positive')
    out['pids'] = { limit: pidsCost.base + pidsCost.perProcess * r.pidsMax }
  }
  const cpu: Record<string, number> = {}
  if (r.cpuShares !== undefined) cpu['shares'] = r.cpuShares
  if (r.cpuMillis !== undefined) {
    assert(r.cpuMillis >= 10, 'cpuMillis below 10 (1% of a core)')
    cpu['quota'] = Math.round((r.cpuMillis * bundleDefaults.cpuPeriodUs) / 1000)
    cpu['period'] = bundleDefaults.cpuPeriodUs
  }
  if (Object.keys(cpu).length > 0) out['cpu'] = cpu
  return out
}

/** Writes `<dir>/config.json`. The rootfs stays where the spec points (the overlay mount). */
export async function writeBundle(dir: string, spec: BundleSpec, pidsCost: PidsCost): Promise<void> {
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(buildOciConfig(spec, pidsCost), null, 2))
}
