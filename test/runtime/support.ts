// Shared set-up for runtime tests: the template cache the global setup filled, a fresh state
// dir per file, and netns/cgroup prefixes of its own so parallel test files never collide.
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { removeEmptyParent } from '../../src/runtime/cgroups.js'
import { detectDrivers, makeDriver, type DriverProbe } from '../../src/runtime/detect.js'
import type { DriverName, DriverVia } from '../../src/runtime/driver.js'
import type { SandboxNetwork } from '../../src/runtime/network.js'
import { SandboxRuntime } from '../../src/runtime/sandbox-runtime.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import { TEMPLATE_CACHE_DIR } from './template-cache.js'

export { TEMPLATE_CACHE_DIR } from './template-cache.js'

export interface RuntimeFixture {
  stateDir: string
  templates: TemplateStore
  busybox: string
  runtime: SandboxRuntime
  cgroupPrefix: string
  netnsPrefix: string
  probe: DriverProbe
  cleanup(): Promise<void>
}

/**
 * `network`: the sandboxes get a veth on it (network-support.ts's networkFixture makes one).
 * `via`: 'containerd' drives the runtime through our containerd (containerd.test.ts).
 */
export async function runtimeFixture(
  name: DriverName,
  opts: { network?: SandboxNetwork; via?: DriverVia } = {},
): Promise<RuntimeFixture> {
  const via = opts.via ?? 'cli'
  const stateDir = await mkdtemp(path.join(os.tmpdir(), `s0-rt-${via === 'cli' ? '' : 'ctd-'}${name}-`))
  const templates = new TemplateStore({ dir: TEMPLATE_CACHE_DIR })
  const busybox = await templates.ensure('busybox')
  const [probe] = await detectDrivers({
    stateDir,
    probeRootfs: busybox,
    preference: [name],
    ...(via === 'containerd' ? { containerd: [name] } : {}),
  })
  const tag = randomBytes(3).toString('hex')
  const cgroupPrefix = `s0test-${tag}`
  const netnsPrefix = `s0t${tag}-`
  const runtime = new SandboxRuntime({
    stateDir,
    driver: makeDriver(name, stateDir, { via }),
    cgroupPrefix,
    netnsPrefix,
    ...(opts.network ? { network: opts.network } : {}),
  })
  return {
    stateDir,
    templates,
    busybox,
    runtime,
    cgroupPrefix,
    netnsPrefix,
    probe: probe as DriverProbe,
    async cleanup() {
      await runtime.reconcile([])
      await runtime.driver.close?.() // containerd: our daemon
      await removeEmptyParent(cgroupPrefix)
      await rm(stateDir, { recursive: true, force: true })
    },
  }
}

export async function procMounts(): Promise<string> {
  return readFile('/proc/self/mounts', 'utf8')
}

let seq = 0
export function sandboxId(label: string): string {
  return `${label}-${process.pid}-${++seq}`
}
