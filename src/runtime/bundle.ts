// Writes an OCI bundle's config.json from a typed spec. Defaults follow runc's and docker's:
// docker's capability set without NET_RAW (and never NET_ADMIN or SYS_ADMIN), no_new_privileges,
// runc's masked and read-only paths, /tmp and /dev/shm bound from host dirs, cgroup v1 limits,
// and the seccomp profile the caller passes (seccomp.ts, for runc and crun).
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { assert } from '../core/assert.js'
import { limits } from '../core/limits.js'
import type { PidsCost } from './driver.js'
import type { OciSeccomp } from './seccomp.js'

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
  /**
   * Host directories bound at /tmp and /dev/shm (scratch.ts: a capped tmpfs per sandbox). Never
   * a tmpfs of the container's own: the host must see the same files as the sandbox (view.ts).
   */
  tmpHostPath: string
  shmHostPath: string
  /** Bound after /tmp and /dev/shm, in this order (a volume may be mounted under /tmp). */
  mounts?: readonly BindMount[]
  readonlyRootfs?: boolean
  /** `linux.seccomp` (runc, crun: seccomp.ts); unset for runsc, whose sentry filters syscalls itself. */
  seccomp?: OciSeccomp
}

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
      options: ['nosuid', 'strictatime', 'mode=755', `size=${limits.sandboxDevBytes}`],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    // Binds, not tmpfs mounts: their contents live on the host (scratch.ts), where the files API
    // and a memory checkpoint can reach them. /tmp before the user's binds (one may be under it).
    { destination: '/tmp', type: 'bind', source: spec.tmpHostPath, options: ['bind', 'nosuid', 'nodev'] },
    {
      destination: '/dev/shm',
      type: 'bind',
      source: spec.shmHostPath,
      options: ['bind', 'nosuid', 'nodev', 'noexec'],
    },
  ]
  assert(
    path.isAbsolute(spec.tmpHostPath) && path.isAbsolute(spec.shmHostPath),
    'scratch paths must be absolute',
  )
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
      rlimits: [
        { type: 'RLIMIT_NOFILE', hard: limits.sandboxOpenFilesMax, soft: limits.sandboxOpenFilesMax },
      ],
      noNewPrivileges: true,
      oomScoreAdj: limits.sandboxOomScoreAdj,
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
      ...(spec.seccomp ? { seccomp: spec.seccomp } : {}),
    },
  }
}

function buildResources(r: SandboxResources, pidsCost: PidsCost): Record<string, unknown> {
  const out: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }] }
  if (r.memoryBytes !== undefined) {
    assert(r.memoryBytes >= limits.sandboxMemoryBytesMin, 'memory limit below the minimum')
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
    cpu['quota'] = Math.round((r.cpuMillis * limits.sandboxCpuPeriodUs) / 1000)
    cpu['period'] = limits.sandboxCpuPeriodUs
  }
  if (Object.keys(cpu).length > 0) out['cpu'] = cpu
  return out
}

/** Writes `<dir>/config.json`. The rootfs stays where the spec points (the overlay mount). */
export async function writeBundle(dir: string, spec: BundleSpec, pidsCost: PidsCost): Promise<void> {
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(buildOciConfig(spec, pidsCost), null, 2))
}
