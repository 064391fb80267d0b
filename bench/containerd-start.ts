// containerd_start_overhead (issue 17 §6, for the `scale` suite): what driving runc and runsc
// through our containerd (src/runtime/containerd/) costs per sandbox start against their CLIs.
// One start = SandboxRuntime.start (overlay, disk, scratch, netns, bundle, the runtime's create +
// start) until the first exec (`echo hi`) has answered: the same path on both sides, only the
// driver differs. Interleaved (direct, containerd, direct, ...) so load from other work on the
// host falls on both alike; one warm-up start each first, which also keeps the containerd
// daemon's own start (once per server) out of the figures.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { removeEmptyParent } from '../src/runtime/cgroups.js'
import { makeDriver } from '../src/runtime/detect.js'
import type { DriverVia } from '../src/runtime/driver.js'
import { SandboxRuntime } from '../src/runtime/sandbox-runtime.js'
import { TemplateStore } from '../src/runtime/templates.js'
import { TEMPLATE_DIR } from './bench-server.js'
import { median, round } from './lib.js'

export type ContainerdBenchRuntime = 'runc' | 'runsc'

export interface ContainerdStartOverhead {
  runtime: ContainerdBenchRuntime
  direct_ms_p50: number
  containerd_ms_p50: number
  overhead_ms: number
  runs: number
}

export interface ContainerdStartOptions {
  /** Starts per side and runtime, after the warm-ups. */
  runs?: number
  runtimes?: readonly ContainerdBenchRuntime[]
}

export async function measureContainerdStartOverhead(
  opts: ContainerdStartOptions = {},
): Promise<ContainerdStartOverhead[]> {
  const runs = opts.runs ?? Number(process.env['S0_BENCH_CONTAINERD_RUNS'] ?? 7)
  const busybox = await new TemplateStore({ dir: TEMPLATE_DIR }).ensure('busybox')
  const out: ContainerdStartOverhead[] = []
  for (const runtime of opts.runtimes ?? ['runc', 'runsc']) {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), `s0-bench-ctd-${runtime}-`))
    const tag = randomBytes(3).toString('hex')
    const side = (via: DriverVia): { rt: SandboxRuntime; cgroupPrefix: string } => {
      const dir = path.join(stateDir, via)
      const cgroupPrefix = `s0bench-${tag}-${via === 'cli' ? 'd' : 'c'}`
      const rt = new SandboxRuntime({
        stateDir: dir,
        driver: makeDriver(runtime, dir, { via }),
        cgroupPrefix,
        netnsPrefix: `s0b${tag}${via === 'cli' ? 'd' : 'c'}-`,
      })
      return { rt, cgroupPrefix }
    }
    const sides = { cli: side('cli'), containerd: side('containerd') }
    const times: Record<DriverVia, number[]> = { cli: [], containerd: [] }
    let seq = 0
    const once = async (via: DriverVia): Promise<number> => {
      const { rt } = sides[via]
      const id = `bench-${via}-${++seq}`
      const t0 = performance.now()
      await rt.start({ id, templateRootfs: busybox, resources: { memoryBytes: 128 * 1024 * 1024 } })
      const r = await rt.run(id, ['echo', 'hi'])
      const ms = performance.now() - t0
      if (r.stdout !== 'hi\n') throw new Error(`${runtime} via ${via}: echo said ${JSON.stringify(r.stdout)}`)
      await rt.delete(id)
      return ms
    }
    try {
      await once('cli')
      await once('containerd')
      for (let i = 0; i < runs; i++) {
        times.cli.push(await once('cli'))
        times.containerd.push(await once('containerd'))
      }
    } finally {
      for (const s of Object.values(sides)) {
        // Cleanup in finally: an error here would hide the one that got us here.
        await s.rt.reconcile([]).catch(() => undefined)
        await s.rt.driver.close?.().catch(() => undefined)
        await removeEmptyParent(s.cgroupPrefix).catch(() => undefined)
      }
      await rm(stateDir, { recursive: true, force: true })
    }
    const direct = median(times.cli)
    const viaContainerd = median(times.containerd)
    out.push({
      runtime,
      direct_ms_p50: round(direct, 1),
      containerd_ms_p50: round(viaContainerd, 1),
      overhead_ms: round(viaContainerd - direct, 1),
      runs,
    })
  }
  return out
}
