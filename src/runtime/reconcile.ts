// After a restart of our server: adopt the known sandboxes that still run, stop the ones whose
// files are wanted, and remove every other trace of this runtime (containers in its --root,
// mounts under its state dir, `<prefix>*` netns, `/<cgroupPrefix>/*` cgroups, sandbox dirs).
import { readdir } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from '../core/log.js'
import { listCgroupChildren, removeCgroup } from './cgroups.js'
import type { OciDriver } from './driver.js'
import { deleteNetns, listNetns } from './netns.js'
import type { SandboxNetwork } from './network.js'
import { mountPoints, remountUpperDisk, unmountOverlay } from './overlay.js'
import { readRecord, type SandboxRecord } from './sandbox-record.js'
import { removeSandbox } from './teardown.js'

export interface ReconcileReport {
  containers: string[]
  mounts: string[]
  netns: string[]
  cgroups: string[]
  dirs: string[]
  adopted: string[]
  /** Stopped with their upper directory kept (`reconcile`'s `keep`). */
  kept: string[]
}

/** What reconcile works on: one runtime's state, handed over by SandboxRuntime. */
export interface ReconcileScope {
  driver: OciDriver
  /** The sandbox network: a removed sandbox's veth and address go with it. */
  network?: SandboxNetwork
  sandboxesDir: string
  netnsPrefix: string
  cgroupPrefix: string
  log: Logger
  /** The runtime's live sandboxes: adopted and kept ones are added here. */
  sandboxes: Map<string, SandboxRecord>
  /** Stops a sandbox keeping its upper directory, and marks it stopped in the runtime. */
  stopKeepingUpper(rec: SandboxRecord): Promise<void>
  /** Where a sandbox without a (readable) record has its parts. */
  defaultRecord(id: string): SandboxRecord
}

export async function reconcileSandboxes(
  scope: ReconcileScope,
  knownIds: Iterable<string>,
  opts: { keep?: Iterable<string> } = {},
): Promise<ReconcileReport> {
  const { driver, sandboxesDir, sandboxes } = scope
  const known = new Set(knownIds)
  const keep = new Set(opts.keep ?? [])
  const report: ReconcileReport = {
    containers: [],
    mounts: [],
    netns: [],
    cgroups: [],
    dirs: [],
    adopted: [],
    kept: [],
  }
  for (const c of await driver.list()) {
    if (known.has(c.id) && c.status === 'running') continue
    await driver.delete(c.id)
    report.containers.push(c.id)
  }
  for (const id of await listDir(sandboxesDir)) {
    const rec = await readRecord(sandboxesDir, id)
    if (known.has(id) && rec && (await driver.state(id))?.status === 'running') {
      sandboxes.set(id, rec)
      report.adopted.push(id)
      continue
    }
    if (keep.has(id) && rec?.upperDir) {
      // Its files are wanted (a capture after a crash): stop it, keep the upper directory,
      // whose disk image is mounted again if a host reboot unmounted it.
      sandboxes.set(id, rec)
      await scope.stopKeepingUpper(rec)
      await remountUpperDisk(path.join(rec.dir, 'rootfs'))
      report.kept.push(id)
      continue
    }
    for (const m of await mountPoints()) {
      if (m.startsWith(path.join(sandboxesDir, id) + '/')) report.mounts.push(m)
    }
    await removeSandbox(driver, rec ?? scope.defaultRecord(id), scope.network)
    report.dirs.push(id)
  }
  // Mounts whose sandbox dir is already gone.
  for (const m of await mountPoints()) {
    if (!m.startsWith(sandboxesDir + '/')) continue
    const id = path.relative(sandboxesDir, m).split('/')[0] ?? ''
    if (sandboxes.has(id)) continue
    await unmountOverlay(m, { keepFiles: true })
    report.mounts.push(m)
  }
  for (const ns of await listNetns(scope.netnsPrefix)) {
    const id = ns.slice(scope.netnsPrefix.length)
    if (sandboxes.has(id)) continue
    await scope.network?.detach(id)
    await deleteNetns(ns)
    report.netns.push(ns)
  }
  for (const id of await listCgroupChildren(scope.cgroupPrefix)) {
    if (sandboxes.has(id)) continue
    if ((await removeCgroup(`/${scope.cgroupPrefix}/${id}`)).length > 0) report.cgroups.push(id)
  }
  scope.log.info('reconciled', { ...report })
  return report
}

/** Entries of a directory; none if it does not exist yet (no sandbox was ever started). */
async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
}
