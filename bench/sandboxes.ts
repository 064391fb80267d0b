// Sandboxes bench (`npm run bench -- sandboxes`): cold start per OCI driver (claim → first output
// of `echo` through the HTTP API vs the bare runtime CLI running the same bundle), the python REPL
// round trip vs a bare python REPL over pipes in the same sandbox, 20 sandboxes running a command
// at once vs the same 20 commands through the runtime CLI's `exec`, and the lifecycle figures of
// sandboxes-lifecycle.ts (warm claims, pause / resume by delta, fork / snapshot, memory pause)
// and sandboxes-templates.ts (a busybox template build).
import { spawn } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { SandboxId } from '../src/core/ids.js'
import { runCli } from '../src/runtime/cli.js'
import { detectDrivers } from '../src/runtime/detect.js'
import { DRIVER_NAMES, type DriverName } from '../src/runtime/driver.js'
import { mountOverlay, unmountOverlay } from '../src/runtime/overlay.js'
import { TemplateStore } from '../src/runtime/templates.js'
import { openBenchServer, TEMPLATE_DIR } from './bench-server.js'
import { benchMemoryPause, benchPauseResume, benchWarmClaim } from './sandboxes-lifecycle.js'
import { api, claim, cmd, ms, pct, runtimeArgv, stats, timeProcess, type Env } from './sandbox-api.js'
import { benchTemplateBuild } from './sandboxes-templates.js'
import { figure, gitCommit, machineInfo, median, note, round, type Figure, type SuiteResult } from './lib.js'

const COLD_RUNS: Record<DriverName, number> = {
  runc: Number(process.env['S0_BENCH_COLD_RUNS'] ?? 9),
  crun: Number(process.env['S0_BENCH_COLD_RUNS'] ?? 9),
  runsc: Number(process.env['S0_BENCH_COLD_RUNS_RUNSC'] ?? 5),
}
const REPL_RUNS = Number(process.env['S0_BENCH_REPL_RUNS'] ?? 51)
/** Which parts run (all by default): a quick look at one of them, e.g. S0_BENCH_SANDBOX_PARTS=pause. */
const PARTS = new Set(
  (process.env['S0_BENCH_SANDBOX_PARTS'] ?? 'cold,warm,pause,memory,repl,concurrent,templates')
    .split(',')
    .map((p) => p.trim()),
)
const HTTP_RUNS = 101
const CONCURRENT = 20
const CONCURRENT_ROUNDS = Number(process.env['S0_BENCH_CONCURRENT_ROUNDS'] ?? 5)

/** The config.json our runtime wrote for a claimed sandbox, turned into a one-shot `echo`. */
async function bareBundle(env: Env, driver: DriverName, sandboxId: string, rootfs: string): Promise<string> {
  const dir = path.join(env.work, `bare-${driver}`)
  await mkdir(dir, { recursive: true })
  const raw = await readFile(path.join(env.runtimeDir, driver, 'sandboxes', sandboxId, 'config.json'), 'utf8')
  const cfg = JSON.parse(raw) as {
    process: { args: string[] }
    root: { path: string }
    hostname: string
    mounts: { destination: string; type: string; source: string }[]
    linux: { cgroupsPath: string; namespaces: { type: string; path?: string }[] }
  }
  // The sandbox network's files (resolv.conf, the egress CA) go with the claimed sandbox, and a
  // bare run has no network to use them: left out.
  cfg.mounts = cfg.mounts.filter(
    (m) => m.destination !== '/etc/resolv.conf' && !m.destination.startsWith('/etc/s0/'),
  )
  // /tmp and /dev/shm are binds of the claimed sandbox's scratch, which goes with it: dirs of
  // our own instead (the same kind of mount, without the tmpfs under it).
  for (const m of cfg.mounts) {
    if (m.type !== 'bind' || (m.destination !== '/tmp' && m.destination !== '/dev/shm')) continue
    m.source = path.join(dir, 'scratch', path.basename(m.destination))
    await mkdir(m.source, { recursive: true })
  }
  cfg.process.args = ['echo', 'hi']
  cfg.root.path = rootfs
  cfg.hostname = 'bare'
  // A fresh network namespace made by the runtime itself (ours joins one made by `ip netns add`).
  cfg.linux.namespaces = cfg.linux.namespaces.map((n) => (n.type === 'network' ? { type: 'network' } : n))
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(cfg))
  return dir
}

async function bareRun(env: Env, driver: DriverName, bundle: string, seq: number): Promise<number> {
  const root = path.join(env.work, `bare-root-${driver}`)
  const cfgPath = path.join(bundle, 'config.json')
  const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as { linux: { cgroupsPath: string } }
  const id = `s0bench-${env.tag}-${driver}-${seq}`
  cfg.linux.cgroupsPath = `/s0bench-${env.tag}-bare/${id}`
  await writeFile(cfgPath, JSON.stringify(cfg))
  // runsc refuses --network=sandbox from the root netns as shipped (runtime-recipes §2), and
  // `none` is what one runs by hand: loopback only, as in our sandboxes.
  const argv = runtimeArgv(driver, root, ['run', '--bundle', bundle, id], 'none')
  try {
    return (await timeProcess(argv, { expect: 'hi' })).firstByteMs
  } finally {
    const [bin, ...args] = runtimeArgv(driver, root, ['delete', '--force', id], 'none') as [
      string,
      ...string[],
    ]
    await runCli(bin, args, { timeoutMs: 30_000 })
  }
}

/** One claim → echo → first output through the API; the sandbox is deleted afterwards (untimed). */
async function apiColdStart(env: Env, template: string): Promise<{ totalMs: number; claimMs: number }> {
  const t0 = process.hrtime.bigint()
  const sb = await claim(env, template)
  const claimMs = ms(t0)
  const out = await cmd(env, sb.id, ['echo', 'hi'])
  const totalMs = ms(t0)
  if (out.stdout !== 'hi\n') throw new Error(`echo printed ${JSON.stringify(out.stdout)}`)
  await api(env, 'DELETE', `/api/v1/sandboxes/${sb.id}`)
  return { totalMs, claimMs }
}

async function httpOverhead(env: Env): Promise<number[]> {
  const xs: number[] = []
  for (let i = 0; i < HTTP_RUNS; i++) {
    const t0 = process.hrtime.bigint()
    await api(env, 'GET', '/api/v1/me')
    if (i > 0) xs.push(ms(t0))
  }
  return xs
}

async function benchColdStart(env: Env, driver: DriverName, httpMs: number): Promise<Figure> {
  const name = `cold_start_first_output_${driver}`
  const template = `bench-${driver}`
  await api(env, 'POST', '/api/v1/templates', {
    template_id: template,
    spec: { mainContainer: { image: 's0/busybox', resources: { memory: '256Mi' } }, runtime: { driver } },
  })
  // Warm-up claim, whose bundle becomes the bare runtime's (same limits, masks, mounts, rootfs).
  const warm = await claim(env, template)
  await cmd(env, warm.id, ['echo', 'hi'])
  const templates = new TemplateStore({ dir: TEMPLATE_DIR })
  const ovl = await mountOverlay({
    dir: path.join(env.work, `bare-rootfs-${driver}`),
    lowerDirs: [await templates.ensure('busybox')],
    tmpfsBytes: 64 * 1024 * 1024, // the bare runs write nothing
  })
  const ours: number[] = []
  const claims: number[] = []
  const bare: number[] = []
  try {
    const bundle = await bareBundle(env, driver, warm.id, ovl.merged)
    await api(env, 'DELETE', `/api/v1/sandboxes/${warm.id}`)
    await bareRun(env, driver, bundle, 0)
    // Interleaved, so load from other work on the host falls on both sides alike.
    for (let i = 1; i <= COLD_RUNS[driver]; i++) {
      const r = await apiColdStart(env, template)
      ours.push(r.totalMs)
      claims.push(r.claimMs)
      bare.push(await bareRun(env, driver, bundle, i))
    }
  } finally {
    await unmountOverlay(ovl.dir)
    // Cleanup in finally: an error here would hide the one that got us here; the server, its
    // database and sandboxes go with the run anyway.
    await api(env, 'DELETE', `/api/v1/templates/${template}`).catch(() => undefined)
  }
  const b = round(median(bare))
  const allowed = 1.2 * b + 2 * httpMs
  return figure({
    name,
    value: median(ours),
    unit: 'ms',
    baseline: {
      name: `bare \`${driver} run\` of the same bundle and rootfs, to first output`,
      value: b,
      unit: 'ms',
    },
    higherIsBetter: false,
    target: { value: round(allowed, 1) },
    detail: {
      ours: stats(ours),
      bare: stats(bare),
      claimMs: stats(claims),
      echoAfterClaimMs: round(median(ours) - median(claims)),
      httpRoundTripMs: round(httpMs, 3),
      ratioExcludingHttp: round((median(ours) - 2 * httpMs) / b, 3),
      target: 'ratio <= 1.2 plus our HTTP overhead: value <= 1.2 x bare + 2 HTTP round trips (claim, cmd)',
      ours_path:
        'POST /sandboxes (overlay + netns + bundle + create/start of an idle init) then POST /contexts cmd echo (wait_until_done: runtime exec)',
      bare_path: `${driver} run --bundle (init = echo), overlay already mounted${driver === 'runsc' ? ', --network=none' : ''}`,
    },
  })
}

/** A bare python REPL over the runtime CLI's exec in the same sandbox: `N+1` → time to `N+1`'s answer. */
async function bareRepl(env: Env, sandboxId: string, runs: number): Promise<number[]> {
  const root = path.join(env.runtimeDir, 'runc', 'runc')
  const child = spawn('runc', ['--root', root, 'exec', sandboxId, 'python3', '-i', '-q', '-u'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  child.stderr.resume() // prompts go to stderr
  let out = ''
  let waiter: { want: string; resolve: () => void } | undefined
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString()
    if (waiter && out.includes(waiter.want)) {
      out = ''
      waiter.resolve()
    }
  })
  const ask = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('bare python REPL: no answer in 30 s')), 30_000)
      waiter = {
        want: `${i + 1}\n`,
        resolve: () => {
          clearTimeout(t)
          resolve()
        },
      }
      child.stdin.write(`${i}+1\n`)
    })
  const xs: number[] = []
  try {
    for (let i = 0; i < runs + 3; i++) {
      const t0 = process.hrtime.bigint()
      await ask(1000 + i)
      if (i >= 3) xs.push(ms(t0))
    }
  } finally {
    child.stdin.end('exit()\n')
    await new Promise((r) => child.once('close', r))
  }
  return xs
}

async function benchRepl(env: Env, httpMs: number): Promise<Figure> {
  const sb = await claim(env, 'default')
  try {
    const ctx = await api<{ id: string }>(env, 'POST', `/api/v1/sandboxes/${sb.id}/contexts`, {
      type: 'repl',
      repl: { alias: 'python' },
    })
    const execUrl = `/api/v1/sandboxes/${sb.id}/contexts/${ctx.id}/exec`
    const ours: number[] = []
    const inProcess: number[] = []
    const context = env.svc.contexts.get(sb.id as SandboxId, ctx.id)
    for (let i = 0; i < REPL_RUNS + 3; i++) {
      const t0 = process.hrtime.bigint()
      const r = await api<{ stdout: string }>(env, 'POST', execUrl, { data: `${i}+1` })
      const t = ms(t0)
      if (r.stdout !== `${i + 1}\n`) throw new Error(`REPL printed ${JSON.stringify(r.stdout)} for ${i}+1`)
      if (i >= 3) ours.push(t)
      // The same input without HTTP: what the context machinery (sentinels, parsing) costs.
      const t1 = process.hrtime.bigint()
      await context.exec(`${i}*1`)
      if (i >= 3) inProcess.push(ms(t1))
    }
    const bare = await bareRepl(env, sb.id, REPL_RUNS)
    const b = round(median(bare), 3)
    // What every context route pays before the REPL sees the input: auth + the sandbox row.
    const lookup: number[] = []
    for (let i = 0; i < REPL_RUNS; i++) {
      const t0 = process.hrtime.bigint()
      await api(env, 'GET', `/api/v1/sandboxes/${sb.id}`)
      lookup.push(ms(t0))
    }
    return figure({
      name: 'repl_round_trip',
      value: median(ours),
      unit: 'ms',
      baseline: {
        name: 'bare `python3 -i -q -u` over pipes via `runc exec` in the same sandbox',
        value: b,
        unit: 'ms',
      },
      higherIsBetter: false,
      target: { ratio: 2 },
      detail: {
        input: 'python `N+1` (answer checked)',
        driver: 'runc',
        ours: stats(ours),
        bare: stats(bare),
        contextExecWithoutHttp: stats(inProcess),
        getSandboxRoundTripMs: stats(lookup),
        httpRoundTripMs: round(httpMs, 3),
        ratioExcludingHttp: round((median(ours) - httpMs) / b, 3),
      },
    })
  } finally {
    await api(env, 'DELETE', `/api/v1/sandboxes/${sb.id}`)
  }
}

async function benchConcurrent(env: Env): Promise<Figure> {
  const ids: string[] = []
  const claimMs: number[] = []
  try {
    for (let i = 0; i < CONCURRENT; i++) {
      const t0 = process.hrtime.bigint()
      ids.push((await claim(env, 'busybox')).id)
      claimMs.push(ms(t0))
    }
    const driver = env.svc.driver as DriverName
    const root = path.join(env.runtimeDir, driver, driver)
    for (const id of ids) await cmd(env, id, ['echo', 'warm'])
    const ours: number[] = []
    const bare: number[] = []
    const oursWall: number[] = []
    const bareWall: number[] = []
    for (let r = 0; r < CONCURRENT_ROUNDS; r++) {
      let t0 = process.hrtime.bigint()
      await Promise.all(
        ids.map(async (id) => {
          const out = await cmd(env, id, ['echo', `r${r}`])
          if (out.stdout !== `r${r}\n`) throw new Error(`echo in ${id} printed ${out.stdout}`)
          ours.push(ms(t0))
        }),
      )
      oursWall.push(ms(t0))
      t0 = process.hrtime.bigint()
      await Promise.all(
        ids.map(async (id) => {
          await timeProcess(runtimeArgv(driver, root, ['exec', id, 'echo', `r${r}`]), { expect: `r${r}` })
          bare.push(ms(t0))
        }),
      )
      bareWall.push(ms(t0))
    }
    return figure({
      name: 'concurrent_20_cmd_p99',
      value: pct(ours, 0.99),
      unit: 'ms',
      baseline: {
        name: `the same ${CONCURRENT} commands by bare \`${driver} exec\` at once, p99`,
        value: round(pct(bare, 0.99)),
        unit: 'ms',
      },
      higherIsBetter: false,
      target: {},
      detail: {
        sandboxes: CONCURRENT,
        rounds: CONCURRENT_ROUNDS,
        driver,
        command: 'echo rN (cmd context, wait_until_done, output checked)',
        ours: { p50: round(pct(ours, 0.5)), p99: round(pct(ours, 0.99)), max: round(Math.max(...ours)) },
        bare: { p50: round(pct(bare, 0.5)), p99: round(pct(bare, 0.99)), max: round(Math.max(...bare)) },
        p50Ratio: round(pct(ours, 0.5) / pct(bare, 0.5), 3),
        roundWallMs: { ours: round(median(oursWall)), bare: round(median(bareWall)) },
        claimMs: stats(claimMs),
        note: 'latency of each command from the start of its round; the machine has 2 cores',
      },
    })
  } finally {
    // Cleanup in finally (as above): svc.close({ stopSandboxes }) removes any left.
    for (const id of ids) await api(env, 'DELETE', `/api/v1/sandboxes/${id}`).catch(() => undefined)
  }
}

function unavailable(name: string, why: string): Figure {
  return figure({
    name,
    value: NaN,
    unit: 'ms',
    baseline: { name: 'bare runtime CLI', error: why },
    higherIsBetter: false,
    target: {},
    detail: {},
  })
}

export async function runSandboxesSuite(): Promise<SuiteResult> {
  const startedAt = new Date().toISOString()
  const figures: Figure[] = []
  const server = await openBenchServer('s0-bench-sandboxes-')
  const { env, templates, withNetwork } = server
  const { svc, work } = env
  try {
    const httpMs = median(await httpOverhead(env))
    note(`HTTP round trip (GET /api/v1/me): ${round(httpMs, 3)} ms; default driver ${svc.driver}`)
    const probes = await detectDrivers({
      stateDir: path.join(work, 'detect'),
      probeRootfs: await templates.ensure('busybox'),
      preference: DRIVER_NAMES,
    })
    const cold = new Map<DriverName, Figure>()
    const ok = (d: DriverName): boolean => probes.find((p) => p.name === d)?.ok === true
    if (PARTS.has('cold'))
      for (const p of probes) {
        const name = `cold_start_first_output_${p.name}`
        if (!p.ok) {
          figures.push(unavailable(name, `${p.name} does not work here: ${p.reason}`))
          continue
        }
        note(`cold start on ${p.name} (${COLD_RUNS[p.name]} runs, interleaved with bare \`${p.name} run\`)`)
        const f = await benchColdStart(env, p.name, httpMs)
        cold.set(p.name, f)
        figures.push(f)
      }
    if (PARTS.has('warm'))
      for (const d of ['runc', 'runsc'] as const) {
        if (!ok(d)) continue
        note(`warm claims on ${d} (a pool of 4)`)
        figures.push(...(await benchWarmClaim(env, d, cold.get(d))))
      }
    if (PARTS.has('pause')) figures.push(...(await benchPauseResume(env)))
    if (PARTS.has('memory') && ok('runsc')) {
      note('pause keeping process memory on runsc vs files only')
      figures.push(...(await benchMemoryPause(env)))
    }
    if (PARTS.has('repl')) {
      note(`python REPL round trip (${REPL_RUNS} runs)`)
      figures.push(await benchRepl(env, httpMs))
    }
    if (PARTS.has('templates')) {
      note('busybox template build vs the same steps by hand')
      figures.push(await benchTemplateBuild(work))
    }
    if (PARTS.has('concurrent')) {
      note(`${CONCURRENT} sandboxes running a command at once (${CONCURRENT_ROUNDS} rounds)`)
      figures.push(await benchConcurrent(env))
    }
  } finally {
    await server.close()
  }
  for (const f of figures) f.detail = { ...f.detail, sandboxNetwork: withNetwork }
  return { suite: 'sandboxes', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
