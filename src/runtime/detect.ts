// Which OCI runtimes work on this host: the binary answers `--version` and can run a trivial
// container (busybox `true`) with our bundle shape. Preference order is configurable; the
// first working driver is the default. A runtime named in `containerd` is driven through our
// own containerd (containerd/driver.ts) instead of its CLI, and probed that way.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { writeBundle } from './bundle.js'
import { runCli, type CliResult } from './cli.js'
import { removeCgroup, removeEmptyParent } from './cgroups.js'
import { CrunDriver, prepareCrunHost } from './crun.js'
import { ContainerdDriver } from './containerd/driver.js'
import type { DriverName, DriverVia, OciDriver } from './driver.js'
import { CONTAINERD_RUNTIMES, DRIVER_NAMES } from './driver.js'
import { mountOverlay, unmountOverlay } from './overlay.js'
import { RuncDriver } from './runc.js'
import { RunscDriver, type RunscNetwork } from './runsc.js'
import { sandboxSeccomp } from './seccomp.js'
import { scratchPaths } from './scratch.js'

export const DEFAULT_PREFERENCE: readonly DriverName[] = ['runc', 'crun', 'runsc']

export interface DriverProbe {
  name: DriverName
  /** Absent: 'cli'. */
  via?: DriverVia
  ok: boolean
  version?: string
  /** Why it does not work (missing binary, failed probe). */
  reason?: string
  probeMs?: number
}

export interface DetectOptions {
  /** Runtime state dirs go under `<stateDir>/<name>`. */
  stateDir: string
  /** A template rootfs with /bin/true (busybox); without it only `--version` is checked. */
  probeRootfs?: string
  preference?: readonly DriverName[]
  /** Mount hugetlb as cgroup v1 if crun needs it (host-wide, idempotent). Default true. */
  prepareHost?: boolean
  runscNetwork?: RunscNetwork
  /** Runtimes driven through containerd (CONTAINERD_RUNTIMES); the others through their CLI. */
  containerd?: readonly DriverName[]
}

export function makeDriver(
  name: DriverName,
  stateDir: string,
  opts: { runscNetwork?: RunscNetwork; via?: DriverVia } = {},
): OciDriver {
  if (opts.via === 'containerd') {
    if (name !== 'runc' && name !== 'runsc')
      throw new S0Error('runtime_unavailable', `${name} cannot be driven through containerd here`)
    return new ContainerdDriver({
      runtime: name,
      root: path.join(stateDir, `containerd-${name}`),
      ...(opts.runscNetwork ? { runscNetwork: opts.runscNetwork } : {}),
    })
  }
  const root = path.join(stateDir, name)
  switch (name) {
    case 'runc':
      return new RuncDriver({ root })
    case 'crun':
      return new CrunDriver({ root })
    case 'runsc':
      return new RunscDriver({ root, ...(opts.runscNetwork ? { network: opts.runscNetwork } : {}) })
  }
}

/** Probes every driver (in preference order) and reports each; never throws for a bad driver. */
export async function detectDrivers(opts: DetectOptions): Promise<DriverProbe[]> {
  const order = opts.preference ?? DEFAULT_PREFERENCE
  const out: DriverProbe[] = []
  for (const name of order) out.push(await probe(name, opts))
  return out
}

/** The first working driver in preference order. */
export async function pickDriver(opts: DetectOptions): Promise<OciDriver> {
  const probes = await detectDrivers(opts)
  const ok = probes.find((p) => p.ok)
  if (!ok) {
    const why = probes.map((p) => `${p.name}: ${p.reason}`).join('; ')
    throw new S0Error('runtime_unavailable', `no working OCI runtime: ${why}`)
  }
  return makeDriver(ok.name, opts.stateDir, {
    ...(opts.runscNetwork ? { runscNetwork: opts.runscNetwork } : {}),
    ...(ok.via ? { via: ok.via } : {}),
  })
}

function viaOf(name: DriverName, opts: DetectOptions): DriverVia {
  return opts.containerd?.includes(name) ? 'containerd' : 'cli'
}

async function probe(name: DriverName, opts: DetectOptions): Promise<DriverProbe> {
  const via = viaOf(name, opts)
  const tag = via === 'containerd' ? { via } : {}
  if (!DRIVER_NAMES.includes(name)) return { name, ...tag, ok: false, reason: 'unknown driver' }
  if (via === 'containerd' && !CONTAINERD_RUNTIMES.includes(name))
    return { name, ...tag, ok: false, reason: 'not a runtime containerd drives here' }
  let ver = ''
  // Through containerd both binaries must answer: the daemon's and the runtime's.
  for (const bin of via === 'containerd' ? ['containerd', name] : [name]) {
    let version: CliResult
    try {
      version = await runCli(bin, ['--version'], { timeoutMs: limits.ociProbeVersionTimeoutMs })
    } catch (err) {
      return { name, ...tag, ok: false, reason: `binary not found (${(err as Error).message})` }
    }
    if (version.code !== 0)
      return { name, ...tag, ok: false, reason: `${bin} --version failed: ${version.stderr.trim()}` }
    ver = [ver, version.stdout.split('\n')[0]?.trim() ?? ''].filter(Boolean).join('; ')
  }
  return probeWorks(name, opts, ver, tag)
}

async function probeWorks(
  name: DriverName,
  opts: DetectOptions,
  ver: string,
  tag: { via?: DriverVia },
): Promise<DriverProbe> {
  if (name === 'crun' && opts.prepareHost !== false) {
    try {
      await prepareCrunHost()
    } catch (err) {
      return { name, ...tag, ok: false, version: ver, reason: String(err) }
    }
  }
  if (opts.probeRootfs === undefined) return { name, ...tag, ok: true, version: ver }
  const started = Date.now()
  try {
    await runProbeContainer(name, opts)
    return { name, ...tag, ok: true, version: ver, probeMs: Date.now() - started }
  } catch (err) {
    return {
      name,
      ...tag,
      ok: false,
      version: ver,
      reason: `probe container failed: ${(err as Error).message}`,
    }
  }
}

/** Runs `/bin/true` as a container's init on an overlay of the probe rootfs, then removes it all. */
async function runProbeContainer(name: DriverName, opts: DetectOptions): Promise<void> {
  const base = path.join(opts.stateDir, 'probe')
  await mkdir(base, { recursive: true })
  const dir = await mkdtemp(path.join(base, `${name}-`))
  const id = `s0probe-${name}-${path.basename(dir).slice(-6)}`
  // The probe has its own --root: a crashed probe never shows up in the real runtime's list.
  const driver = makeDriver(name, path.join(dir, 'state'), { runscNetwork: 'none', via: viaOf(name, opts) })
  try {
    const ovl = await mountOverlay({
      dir: path.join(dir, 'rootfs'),
      lowerDirs: [opts.probeRootfs as string],
      tmpfsBytes: limits.runtimeProbeUpperBytes,
    })
    // The same bundle shape as a sandbox's (seccomp included: a runtime that cannot apply it
    // does not work here); plain dirs for /tmp and /dev/shm (true writes nothing).
    const scratch = scratchPaths(dir)
    for (const d of [scratch.tmp, scratch.shm]) await mkdir(d, { recursive: true })
    await writeBundle(
      dir,
      {
        rootfs: ovl.merged,
        args: ['/bin/true'],
        env: ['PATH=/bin'],
        hostname: 'probe',
        cgroupsPath: `/s0probe/${id}`,
        resources: {},
        tmpHostPath: scratch.tmp,
        shmHostPath: scratch.shm,
        ...(driver.hostSeccomp ? { seccomp: sandboxSeccomp() } : {}),
      },
      driver.pidsCost,
    )
    await driver.run(id, dir)
  } finally {
    // Best effort: the probe has its own --root, state dir and cgroup parent, so a leftover
    // harms no sandbox (and reconcile never mistakes it for one); rm below reports a stuck mount.
    await driver.delete(id).catch(() => undefined)
    await driver.close?.().catch(() => undefined) // containerd: the probe's own daemon
    await unmountOverlay(path.join(dir, 'rootfs')).catch(() => undefined)
    await removeCgroup(`/s0probe/${id}`).catch(() => undefined)
    await removeEmptyParent('/s0probe') // stays while another probe runs: fine
    await rm(dir, { recursive: true, force: true })
  }
}
