// cgroup v1 bookkeeping the runtimes leave to us: OOM counters (memory.oom_control's oom_kill,
// the only reliable "was it OOM-killed" signal on v1) and removal of leftover cgroup dirs.
import { access, readdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'

export const CGROUP_ROOT = '/sys/fs/cgroup'

export interface MemoryStats {
  /** Processes the kernel OOM-killed in this cgroup since it was made. */
  oomKills: number
  /** Times usage hit the limit (allocation failed or reclaim ran). */
  failcnt: number
  usageBytes: number
}

/** undefined when the cgroup does not exist (not started, or already removed). */
export async function memoryStats(cgroupsPath: string): Promise<MemoryStats | undefined> {
  const dir = path.join(CGROUP_ROOT, 'memory', cgroupsPath)
  try {
    const [oom, failcnt, usage] = await Promise.all([
      readFile(path.join(dir, 'memory.oom_control'), 'utf8'),
      readFile(path.join(dir, 'memory.failcnt'), 'utf8'),
      readFile(path.join(dir, 'memory.usage_in_bytes'), 'utf8'),
    ])
    const m = /^oom_kill (\d+)$/m.exec(oom)
    return {
      oomKills: m ? Number(m[1]) : 0,
      failcnt: Number(failcnt.trim()),
      usageBytes: Number(usage.trim()),
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** cgroup v1: the memory+swap limit must stay >= the memory limit at every step. */
export async function setMemoryLimit(cgroupsPath: string, bytes: number): Promise<void> {
  const dir = path.join(CGROUP_ROOT, 'memory', cgroupsPath)
  const limit = path.join(dir, 'memory.limit_in_bytes')
  const memsw = path.join(dir, 'memory.memsw.limit_in_bytes')
  const hasSwap = await access(memsw).then(
    () => true,
    () => false,
  )
  try {
    if (hasSwap) await writeFile(memsw, String(bytes)).catch(() => undefined) // fails when shrinking: retried below
    await writeFile(limit, String(bytes))
    if (hasSwap) await writeFile(memsw, String(bytes))
  } catch (err) {
    throw new S0Error('conflict', `memory limit ${bytes} cannot be applied now: ${(err as Error).message}`)
  }
}

/** CFS bandwidth: `cpuMillis` thousandths of a core per `periodUs`. */
export async function setCpuQuota(cgroupsPath: string, cpuMillis: number, periodUs: number): Promise<void> {
  const dir = path.join(CGROUP_ROOT, 'cpu', cgroupsPath)
  await writeFile(path.join(dir, 'cpu.cfs_period_us'), String(periodUs))
  await writeFile(path.join(dir, 'cpu.cfs_quota_us'), String(Math.round((cpuMillis * periodUs) / 1000)))
}

/** v1 hierarchies mounted under /sys/fs/cgroup (cpu, memory, pids, ..., plus the unified one). */
export async function hierarchies(): Promise<string[]> {
  // No cgroup file system mounted: no hierarchy to look in.
  const entries = await readdir(CGROUP_ROOT, { withFileTypes: true }).catch(() => [])
  return entries.filter((e) => e.isDirectory()).map((e) => path.join(CGROUP_ROOT, e.name))
}

/** rmdir `<hierarchy>/<cgroupsPath>` everywhere; returns the dirs removed. Children first. */
export async function removeCgroup(cgroupsPath: string): Promise<string[]> {
  const removed: string[] = []
  for (const h of await hierarchies()) {
    const dir = path.join(h, cgroupsPath)
    if (await removeTree(dir)) removed.push(dir)
  }
  return removed
}

/** rmdir `<hierarchy>/<prefix>` where it is empty (a parent left behind by the runtimes). */
export async function removeEmptyParent(prefix: string): Promise<void> {
  // Fails where it is not empty (another user of the prefix) or absent: both mean leave it.
  for (const h of await hierarchies()) await rmdir(path.join(h, prefix)).catch(() => undefined)
}

/** Names of the children of `<hierarchy>/<prefix>` across all hierarchies. */
export async function listCgroupChildren(prefix: string): Promise<string[]> {
  const names = new Set<string>()
  for (const h of await hierarchies()) {
    // Absent in this hierarchy: nothing of ours there.
    const entries = await readdir(path.join(h, prefix), { withFileTypes: true }).catch(() => [])
    for (const e of entries) if (e.isDirectory()) names.add(e.name)
  }
  return [...names]
}

async function removeTree(dir: string): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined) // absent: done
  if (entries === undefined) return false
  for (const e of entries) if (e.isDirectory()) await removeTree(path.join(dir, e.name))
  try {
    await rmdir(dir)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}
