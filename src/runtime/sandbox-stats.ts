// What one running sandbox uses right now, read from the kernel: its cgroup (CPU time, memory,
// limits, processes; v1 hierarchies or the unified v2 tree), the host end of its veth (bytes and
// errors each way), and the file system under its overlay's upper directory (its writable
// root: a loop-mounted ext4 image or a tmpfs of its own, so one statfs answers for the sandbox
// alone, with no walk of its files). About a dozen small file reads and one statfs per sandbox.
import { access, readFile, statfs } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { CGROUP_ROOT } from './cgroups.js'
import type { SandboxRecord } from './sandbox-record.js'

export interface SandboxStats {
  /** CPU time of all its processes since its cgroup was made. */
  cpuUsageUsec: number
  /** CFS quota / period; no quota: the host's core count. */
  cpuLimitCores: number
  memoryUsageBytes: number
  /** Usage minus inactive file cache (what the kernel cannot reclaim cheaply: the OOM measure). */
  memoryWorkingSetBytes: number
  /** The cgroup's limit; none: the host's memory. */
  memoryLimitBytes: number
  pids: number
  /** As the sandbox sees it (the host end's tx is the sandbox's rx); undefined without a network. */
  network?: { rxBytes: number; txBytes: number; rxErrors: number; txErrors: number }
  /** Its writable root's file system; undefined when not mounted (stopped). */
  rootfs?: { bytes: number; inodes: number }
}

/** v1 reports "no limit" as a huge page-aligned number; anything past the host's memory is none. */
const V1_UNLIMITED_MIN = 2 ** 60

let unified: Promise<boolean> | undefined
/** A pure v2 host: cgroup.controllers at the root (a hybrid host has v1 controllers instead). */
function isUnified(): Promise<boolean> {
  return (unified ??= access(path.join(CGROUP_ROOT, 'cgroup.controllers')).then(
    () => true,
    () => false,
  ))
}

async function num(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8')).trim())
}

function statField(text: string, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text)
  return m ? Number(m[1]) : 0
}

/** undefined when the sandbox's cgroup is gone (stopped meanwhile). */
export async function readSandboxStats(rec: SandboxRecord): Promise<SandboxStats | undefined> {
  let base: Omit<SandboxStats, 'network' | 'rootfs'>
  try {
    base = (await isUnified()) ? await readV2(rec.cgroupsPath) : await readV1(rec.cgroupsPath)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  const [network, rootfs] = await Promise.all([
    rec.network ? readVeth(rec.network.hostIface) : undefined,
    rec.upperDir ? readRootfs(path.dirname(rec.upperDir)) : undefined,
  ])
  return { ...base, ...(network ? { network } : {}), ...(rootfs ? { rootfs } : {}) }
}

async function readV1(cg: string): Promise<Omit<SandboxStats, 'network' | 'rootfs'>> {
  const dir = (ctl: string): string => path.join(CGROUP_ROOT, ctl, cg)
  const [usageNs, quota, period, memUsage, memStat, memLimit, pids] = await Promise.all([
    num(path.join(dir('cpuacct'), 'cpuacct.usage')),
    num(path.join(dir('cpu'), 'cpu.cfs_quota_us')),
    num(path.join(dir('cpu'), 'cpu.cfs_period_us')),
    num(path.join(dir('memory'), 'memory.usage_in_bytes')),
    readFile(path.join(dir('memory'), 'memory.stat'), 'utf8'),
    num(path.join(dir('memory'), 'memory.limit_in_bytes')),
    num(path.join(dir('pids'), 'pids.current')),
  ])
  const inactiveFile = statField(memStat, 'total_inactive_file')
  return {
    cpuUsageUsec: Math.floor(usageNs / 1000),
    cpuLimitCores: quota > 0 && period > 0 ? quota / period : os.availableParallelism(),
    memoryUsageBytes: memUsage,
    memoryWorkingSetBytes: Math.max(0, memUsage - inactiveFile),
    memoryLimitBytes: memLimit >= V1_UNLIMITED_MIN ? os.totalmem() : Math.min(memLimit, os.totalmem()),
    pids,
  }
}

async function readV2(cg: string): Promise<Omit<SandboxStats, 'network' | 'rootfs'>> {
  const dir = path.join(CGROUP_ROOT, cg)
  const [cpuStat, cpuMax, memCurrent, memStat, memMax, pids] = await Promise.all([
    readFile(path.join(dir, 'cpu.stat'), 'utf8'),
    readFile(path.join(dir, 'cpu.max'), 'utf8'),
    num(path.join(dir, 'memory.current')),
    readFile(path.join(dir, 'memory.stat'), 'utf8'),
    readFile(path.join(dir, 'memory.max'), 'utf8'),
    num(path.join(dir, 'pids.current')),
  ])
  const [quota, period] = cpuMax.trim().split(/\s+/)
  const max = memMax.trim()
  return {
    cpuUsageUsec: statField(cpuStat, 'usage_usec'),
    cpuLimitCores:
      quota === undefined || quota === 'max' ? os.availableParallelism() : Number(quota) / Number(period),
    memoryUsageBytes: memCurrent,
    memoryWorkingSetBytes: Math.max(0, memCurrent - statField(memStat, 'inactive_file')),
    memoryLimitBytes: max === 'max' ? os.totalmem() : Math.min(Number(max), os.totalmem()),
    pids,
  }
}

async function readVeth(iface: string): Promise<SandboxStats['network']> {
  const dir = `/sys/class/net/${iface}/statistics`
  try {
    // The host end's counters, swapped: what it transmits, the sandbox receives.
    const [rxBytes, txBytes, rxErrors, txErrors] = await Promise.all(
      ['tx_bytes', 'rx_bytes', 'tx_errors', 'rx_errors'].map((f) => num(path.join(dir, f))),
    )
    return { rxBytes: rxBytes!, txBytes: txBytes!, rxErrors: rxErrors!, txErrors: txErrors! }
  } catch (err) {
    // The link is gone (the sandbox stopped meanwhile): not measured this time.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/**
 * Used bytes and inodes of the upper's own file system. ext4 leaves its journal and metadata out
 * of f_blocks, so an empty image reads a few blocks and a handful of inodes, not its overhead.
 */
async function readRootfs(upperMount: string): Promise<SandboxStats['rootfs']> {
  try {
    const s = await statfs(upperMount)
    return { bytes: (s.blocks - s.bfree) * s.bsize, inodes: s.files - s.ffree }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}
