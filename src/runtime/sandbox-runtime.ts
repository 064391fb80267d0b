// Sandboxes as processes: a long-running init in an OCI container on a per-sandbox overlay root
// and network namespace, processes exec'd into it, and cleanup that leaves nothing behind —
// including after a crash of our server (reconcile).
import type { Readable, Writable } from 'node:stream'
import { lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { silentLogger, type Logger } from '../core/log.js'
import { bundleDefaults, writeBundle, type BindMount, type SandboxResources } from './bundle.js'
import { listCgroupChildren, memoryStats, removeCgroup, setCpuQuota, setMemoryLimit } from './cgroups.js'
import { CappedBuffer } from './cli.js'
import type { ContainerStatus, ExecChild, OciDriver } from './driver.js'
import { ExecZygotes } from './exec-zygotes.js'
import { createNetns, deleteNetns, listNetns, netnsPath } from './netns.js'
import { mountOverlay, mountPoints, unmountOverlay } from './overlay.js'

export const sandboxLimits = {
  execTimeoutMsDefault: 60_000,
  execTimeoutMsMax: 24 * 60 * 60_000,
  runOutputBytesMax: 4 * 1024 * 1024,
  envEntriesMax: 1_000,
  /** After a kill, how long an exec'd process gets to go before we stop waiting for its pipes. */
  killGraceMs: 5_000,
} as const

const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,62}$/
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
/** PID 1 ignores signals it has no handler for, so the init traps TERM to make `stop` quick. */
export const DEFAULT_INIT = ['/bin/sh', '-c', 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done']

export interface SandboxRuntimeOptions {
  /** Per-sandbox bundles, overlays and records live under `<stateDir>/sandboxes/<id>`. */
  stateDir: string
  driver: OciDriver
  /** cgroup parent under every hierarchy (default `s0`): `/<prefix>/<id>`. */
  cgroupPrefix?: string
  /** Network namespaces are `<netnsPrefix><id>` (default `s0-`). */
  netnsPrefix?: string
  /** Pre-started execs kept at most (one per sandbox; 0: none). See exec-zygotes.ts. */
  execZygotesMax?: number
  log?: Logger
}

export interface StartSandboxOptions {
  id: string
  /** Template rootfs (read-only lower layer). */
  templateRootfs: string
  /** Read-only layers above the template, top first (a root-filesystem checkpoint). */
  lowerDirs?: readonly string[]
  resources?: SandboxResources
  env?: Record<string, string>
  hostname?: string
  mounts?: readonly BindMount[]
  init?: readonly string[]
  /** Upper layer on a tmpfs of this size (capped, ephemeral); unset: on disk. */
  upperTmpfsBytes?: number
  tmpSizeBytes?: number
  /** A memory image of this sandbox (driver.memoryCheckpoint): its processes come back from it. */
  restoreImage?: string
  /** Directories made in the root before the container starts (template mount points). */
  mkdirs?: readonly string[]
}

export interface SandboxRecord {
  id: string
  driver: string
  dir: string
  rootfs: string
  upperDir: string
  netns: string
  cgroupsPath: string
  /** Host pid of the container's init (runsc: of the sandbox process); 0 until started. */
  initPid: number
  /** The init's environment: every exec starts from it (crun's --env replaces, runc's appends). */
  env: Record<string, string>
  createdAt: string
}

export interface ExecOptions {
  env?: Record<string, string>
  cwd?: string
  tty?: boolean
  timeoutMs?: number
  signal?: AbortSignal
}

export interface ExecResult {
  exitCode: number | null
  /** Set when the runtime client itself died of a signal (rare: the process's signal shows as 128+n). */
  signal: NodeJS.Signals | null
  timedOut: boolean
  /** The memory cgroup's OOM killer fired while this process ran. */
  oomKilled: boolean
  durationMs: number
}

export interface SandboxProcess {
  readonly stdin: Writable
  readonly stdout: Readable
  readonly stderr: Readable
  wait(): Promise<ExecResult>
  kill(signal?: NodeJS.Signals): Promise<void>
}

export interface RunResult extends ExecResult {
  stdout: string
  stderr: string
  /** Bytes beyond the output cap, dropped. */
  droppedBytes: number
}

export interface SandboxStatus {
  status: ContainerStatus | 'missing'
  oomKills: number
  memoryUsageBytes: number
}

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

export class SandboxRuntime {
  readonly driver: OciDriver
  private readonly sandboxesDir: string
  private readonly cgroupPrefix: string
  private readonly netnsPrefix: string
  private readonly log: Logger
  private readonly sandboxes = new Map<string, SandboxRecord>()
  /** Stopped with their upper directory kept (for a capture), until `delete`. */
  private readonly stopped = new Set<string>()
  private readonly zygotes: ExecZygotes
  /** Execs served by a pre-started zygote, and fresh ones (metrics, bench, tests). */
  readonly execStats = { zygote: 0, fresh: 0 }
  /** Ids with a start or delete in progress: one lifecycle operation per sandbox at a time. */
  private readonly busy = new Set<string>()

  constructor(opts: SandboxRuntimeOptions) {
    this.driver = opts.driver
    this.sandboxesDir = path.resolve(opts.stateDir, 'sandboxes')
    this.cgroupPrefix = opts.cgroupPrefix ?? 's0'
    this.netnsPrefix = opts.netnsPrefix ?? 's0-'
    this.log = (opts.log ?? silentLogger).child({ component: 'runtime', driver: opts.driver.name })
    this.zygotes = new ExecZygotes(opts.driver, opts.execZygotesMax)
  }

  get(id: string): SandboxRecord {
    const rec = this.sandboxes.get(id)
    if (!rec) throw new S0Error('sandbox_not_found', `no sandbox ${id}`)
    return rec
  }

  ids(): string[] {
    return [...this.sandboxes.keys()]
  }

  async start(opts: StartSandboxOptions): Promise<SandboxRecord> {
    checkId(opts.id)
    if (this.sandboxes.has(opts.id) || this.busy.has(opts.id)) {
      throw new S0Error('sandbox_exists', `sandbox ${opts.id} exists`)
    }
    this.busy.add(opts.id)
    const started = Date.now()
    const dir = path.join(this.sandboxesDir, opts.id)
    const rec: SandboxRecord = {
      id: opts.id,
      driver: this.driver.name,
      dir,
      rootfs: path.join(dir, 'rootfs', 'merged'),
      upperDir: '',
      netns: `${this.netnsPrefix}${opts.id}`,
      cgroupsPath: `/${this.cgroupPrefix}/${opts.id}`,
      initPid: 0,
      env: baseEnv(opts.hostname ?? opts.id, opts.env),
      createdAt: new Date().toISOString(),
    }
    try {
      await mkdir(dir, { recursive: true })
      // The record goes first, so a crash half-way still leaves reconcile something to find.
      await writeFile(path.join(dir, 'sandbox.json'), JSON.stringify(rec))
      const ovl = await mountOverlay({
        dir: path.join(dir, 'rootfs'),
        lowerDirs: [...(opts.lowerDirs ?? []), opts.templateRootfs],
        ...(opts.upperTmpfsBytes === undefined ? {} : { tmpfsBytes: opts.upperTmpfsBytes }),
      })
      rec.rootfs = ovl.merged
      rec.upperDir = ovl.upper
      await writeFile(path.join(dir, 'sandbox.json'), JSON.stringify(rec))
      for (const d of opts.mkdirs ?? []) await mkdirInRoot(ovl.merged, d)
      await createNetns(rec.netns)
      await writeBundle(
        dir,
        {
          rootfs: ovl.merged,
          args: opts.init ?? DEFAULT_INIT,
          env: toEnvList(rec.env),
          hostname: opts.hostname ?? opts.id,
          netnsPath: netnsPath(rec.netns),
          cgroupsPath: rec.cgroupsPath,
          resources: opts.resources ?? {},
          ...(opts.mounts ? { mounts: opts.mounts } : {}),
          ...(opts.tmpSizeBytes === undefined ? {} : { tmpSizeBytes: opts.tmpSizeBytes }),
        },
        this.driver.pidsCost,
      )
      if (opts.restoreImage) {
        const mc = this.driver.memoryCheckpoint
        if (!mc) throw new S0Error('not_supported', `${this.driver.name} cannot restore process memory`)
        rec.initPid = await mc.restore(opts.id, dir, opts.restoreImage)
      } else {
        rec.initPid = await this.driver.run(opts.id, dir)
      }
      await writeFile(path.join(dir, 'sandbox.json'), JSON.stringify(rec))
      this.sandboxes.set(opts.id, rec)
      this.zygotes.prime(opts.id, rec.env)
      this.log.info('sandbox started', { id: opts.id, ms: Date.now() - started })
      return rec
    } catch (err) {
      await this.cleanup(rec).catch((e: unknown) =>
        this.log.warn('cleanup after failed start', { id: opts.id, err: e }),
      )
      throw err
    } finally {
      this.busy.delete(opts.id)
    }
  }

  /** Starts `args` in the sandbox; the caller reads its streams and awaits wait(). */
  async exec(id: string, args: readonly string[], opts: ExecOptions = {}): Promise<SandboxProcess> {
    const rec = this.get(id)
    if (this.stopped.has(id)) throw new S0Error('sandbox_not_running', `sandbox ${id} is stopped`)
    if (args.length === 0) throw new S0Error('invalid_request', 'empty command')
    // A look at /proc/<init>/stat instead of a `state` call (~10-50 ms): an OOM under runsc or
    // a crashed init leaves a sandbox that cannot run anything.
    if (!(await pidAlive(rec.initPid))) {
      throw new S0Error('sandbox_not_running', `sandbox ${id} is not running (OOM-killed or crashed?)`)
    }
    const env = toEnvList({ ...rec.env, ...opts.env })
    const timeoutMs = Math.min(
      opts.timeoutMs ?? sandboxLimits.execTimeoutMsDefault,
      sandboxLimits.execTimeoutMsMax,
    )
    const oomBefore = (await memoryStats(rec.cgroupsPath))?.oomKills ?? 0
    const startedAt = Date.now()
    const warm = opts.tty
      ? undefined
      : this.zygotes.take(id, {
          args,
          env: { ...rec.env, ...opts.env },
          ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
        })
    if (warm) this.execStats.zygote++
    else this.execStats.fresh++
    const ec =
      warm ??
      (await this.driver.exec(id, {
        args,
        env,
        ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
        ...(opts.tty ? { tty: true } : {}),
      }))
    this.zygotes.prime(id, rec.env) // for the next command
    return new ExecHandle(ec, {
      timeoutMs,
      startedAt,
      ...(opts.signal ? { signal: opts.signal } : {}),
      oomKilled: async () => ((await memoryStats(rec.cgroupsPath))?.oomKills ?? 0) > oomBefore,
    })
  }

  /**
   * exec + collect output (capped) + wait. A process that outlives `timeoutMs` is killed and
   * the call fails with `exec_timeout` (the partial output is in the error's details).
   */
  async run(
    id: string,
    args: readonly string[],
    opts: ExecOptions & { stdin?: string | Buffer; outputBytesMax?: number } = {},
  ): Promise<RunResult> {
    const p = await this.exec(id, args, opts)
    const max = opts.outputBytesMax ?? sandboxLimits.runOutputBytesMax
    const out = new CappedBuffer(max)
    const err = new CappedBuffer(max)
    p.stdout.on('data', (b: Buffer) => out.push(b))
    p.stderr.on('data', (b: Buffer) => err.push(b))
    p.stdin.on('error', () => undefined) // EPIPE when the process does not read its input
    p.stdin.end(opts.stdin ?? '')
    const res = await p.wait()
    const result = { ...res, stdout: out.text(), stderr: err.text(), droppedBytes: out.dropped + err.dropped }
    if (res.timedOut) {
      throw new S0Error('exec_timeout', `${args[0]} in sandbox ${id} timed out`, { details: result })
    }
    return result
  }

  async status(id: string): Promise<SandboxStatus> {
    const rec = this.get(id)
    const [state, mem] = await Promise.all([this.driver.state(id), memoryStats(rec.cgroupsPath)])
    return {
      status: state?.status ?? 'missing',
      oomKills: mem?.oomKills ?? 0,
      memoryUsageBytes: mem?.usageBytes ?? 0,
    }
  }

  /** Changes the limits of a running sandbox (a warm sandbox taken by a claim). */
  async setResources(id: string, r: { memoryBytes?: number; cpuMillis?: number }): Promise<void> {
    const rec = this.get(id)
    if (r.memoryBytes !== undefined) await setMemoryLimit(rec.cgroupsPath, r.memoryBytes)
    if (r.cpuMillis !== undefined) await setCpuQuota(rec.cgroupsPath, r.cpuMillis, bundleDefaults.cpuPeriodUs)
  }

  /** The environment every later exec starts from (a warm sandbox taken by a claim). */
  async setEnv(id: string, env: Record<string, string>): Promise<void> {
    const rec = this.get(id)
    toEnvList(env) // validates
    rec.env = baseEnv(rec.env['HOSTNAME'] ?? id, env)
    await writeFile(path.join(rec.dir, 'sandbox.json'), JSON.stringify(rec))
  }

  /** Whether the sandbox's init still runs (it can run processes). */
  async alive(id: string): Promise<boolean> {
    return !this.stopped.has(id) && (await pidAlive(this.get(id).initPid))
  }

  /** Freezes every process of a running sandbox (a consistent capture of its files). */
  async freeze(id: string): Promise<void> {
    this.get(id)
    await this.driver.freeze(id)
  }

  async thaw(id: string): Promise<void> {
    this.get(id)
    await this.driver.thaw(id)
  }

  /**
   * Stops the container (with `memoryImage`, after saving its processes there) and unmounts
   * its root, keeping the overlay's upper directory for a capture. `delete` removes the rest.
   */
  async stop(id: string, opts: { memoryImage?: string } = {}): Promise<SandboxRecord> {
    checkId(id)
    if (this.busy.has(id)) throw new S0Error('conflict', `sandbox ${id} is starting or being deleted`)
    const rec = this.get(id)
    this.busy.add(id)
    this.zygotes.drop(id)
    try {
      if (opts.memoryImage) {
        const mc = this.driver.memoryCheckpoint
        if (!mc) throw new S0Error('not_supported', `${this.driver.name} cannot save process memory`)
        await mc.checkpoint(id, opts.memoryImage)
      }
      await this.stopKeepingUpper(rec)
      return rec
    } finally {
      this.busy.delete(id)
    }
  }

  /** Container gone, root unmounted, upper directory kept; `delete` removes the rest. */
  private async stopKeepingUpper(rec: SandboxRecord): Promise<void> {
    await this.driver.delete(rec.id)
    await unmountOverlay(rec.rootfs, { keepFiles: true })
    this.stopped.add(rec.id)
  }

  /** Stops the sandbox and removes everything it had on the host. Idempotent. */
  async delete(id: string): Promise<void> {
    checkId(id)
    if (this.busy.has(id)) throw new S0Error('conflict', `sandbox ${id} is starting or being deleted`)
    this.busy.add(id)
    this.zygotes.drop(id)
    try {
      const rec = this.sandboxes.get(id) ?? (await this.readRecord(id)) ?? this.defaultRecord(id)
      await this.cleanup(rec)
      this.sandboxes.delete(id)
      this.stopped.delete(id)
      this.log.info('sandbox deleted', { id })
    } finally {
      this.busy.delete(id)
    }
  }

  /**
   * After a restart: adopt the known sandboxes that still run, and remove everything else of
   * ours (containers in our runtime root, overlays under our state dir, `<prefix>*` netns,
   * `/<cgroupPrefix>/*` cgroups, sandbox dirs). Sandboxes of other runtimes are left alone.
   */
  async reconcile(
    knownIds: Iterable<string>,
    opts: { keep?: Iterable<string> } = {},
  ): Promise<ReconcileReport> {
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
    for (const c of await this.driver.list()) {
      if (known.has(c.id) && c.status === 'running') continue
      await this.driver.delete(c.id)
      report.containers.push(c.id)
    }
    const dirs = await readdir(this.sandboxesDir).catch(() => [] as string[])
    for (const id of dirs) {
      const rec = await this.readRecord(id)
      if (known.has(id) && rec && (await this.driver.state(id))?.status === 'running') {
        this.sandboxes.set(id, rec)
        report.adopted.push(id)
        continue
      }
      if (keep.has(id) && rec?.upperDir) {
        // Its files are wanted (a capture after a crash): stop it, keep the upper directory.
        this.sandboxes.set(id, rec)
        await this.stopKeepingUpper(rec)
        report.kept.push(id)
        continue
      }
      for (const m of await mountPoints()) {
        if (m.startsWith(path.join(this.sandboxesDir, id) + '/')) report.mounts.push(m)
      }
      await this.cleanup(rec ?? this.defaultRecord(id))
      report.dirs.push(id)
    }
    // Mounts whose sandbox dir is already gone.
    for (const m of await mountPoints()) {
      if (!m.startsWith(this.sandboxesDir + '/')) continue
      const id = path.relative(this.sandboxesDir, m).split('/')[0] ?? ''
      if (this.sandboxes.has(id)) continue
      await unmountOverlay(m, { keepFiles: true })
      report.mounts.push(m)
    }
    for (const ns of await listNetns(this.netnsPrefix)) {
      if (this.sandboxes.has(ns.slice(this.netnsPrefix.length))) continue
      await deleteNetns(ns)
      report.netns.push(ns)
    }
    for (const id of await listCgroupChildren(this.cgroupPrefix)) {
      if (this.sandboxes.has(id)) continue
      if ((await removeCgroup(`/${this.cgroupPrefix}/${id}`)).length > 0) report.cgroups.push(id)
    }
    this.log.info('reconciled', { ...report })
    return report
  }

  private defaultRecord(id: string): SandboxRecord {
    const dir = path.join(this.sandboxesDir, id)
    return {
      id,
      driver: this.driver.name,
      dir,
      rootfs: path.join(dir, 'rootfs', 'merged'),
      upperDir: '',
      netns: `${this.netnsPrefix}${id}`,
      cgroupsPath: `/${this.cgroupPrefix}/${id}`,
      initPid: 0,
      env: {},
      createdAt: '',
    }
  }

  private async readRecord(id: string): Promise<SandboxRecord | undefined> {
    if (!SANDBOX_ID.test(id)) return undefined
    const text = await readFile(path.join(this.sandboxesDir, id, 'sandbox.json'), 'utf8').catch(
      () => undefined,
    )
    return text === undefined ? undefined : (JSON.parse(text) as SandboxRecord)
  }

  /** Container, then mounts, then netns, then cgroups, then files: each step runs even if one fails. */
  private async cleanup(rec: SandboxRecord): Promise<void> {
    const errors: unknown[] = []
    const step = async (f: () => Promise<unknown>): Promise<void> => {
      try {
        await f()
      } catch (err) {
        errors.push(err)
      }
    }
    await step(() => this.driver.delete(rec.id))
    await step(() => unmountOverlay(rec.dir))
    await step(() => deleteNetns(rec.netns))
    await step(() => removeCgroup(rec.cgroupsPath))
    if (errors.length > 0) throw errors[0]
  }
}

/** One exec'd process: timeout, abort and OOM bookkeeping around the driver's child. */
class ExecHandle implements SandboxProcess {
  readonly stdin: Writable
  readonly stdout: Readable
  readonly stderr: Readable
  private readonly done: Promise<ExecResult>

  constructor(
    private readonly ec: ExecChild,
    opts: { timeoutMs: number; startedAt: number; signal?: AbortSignal; oomKilled: () => Promise<boolean> },
  ) {
    const child = ec.child
    if (!child.stdin || !child.stdout || !child.stderr) throw new Error('exec child without pipes')
    this.stdin = child.stdin
    this.stdout = child.stdout
    this.stderr = child.stderr
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      void this.kill('SIGKILL')
    }, opts.timeoutMs)
    const onAbort = (): void => void this.kill('SIGKILL')
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    this.done = new Promise((resolve, reject) => {
      child.on('error', (e) => {
        clearTimeout(timer)
        reject(new S0Error('runtime_unavailable', `exec failed: ${e.message}`, { cause: e }))
      })
      child.on('close', (code, signal) => {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        void opts
          .oomKilled()
          .then((oomKilled) =>
            resolve({ exitCode: code, signal, timedOut, oomKilled, durationMs: Date.now() - opts.startedAt }),
          )
      })
    })
  }

  wait(): Promise<ExecResult> {
    return this.done
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.ec.kill(signal)
    // If the process left children holding our pipes, stop waiting on them after a grace period.
    setTimeout(() => {
      if (this.ec.child.exitCode === null) this.ec.child.kill('SIGKILL')
    }, sandboxLimits.killGraceMs).unref()
  }
}

/**
 * True if the process exists and is not a zombie. runsc's sandbox process is re-parented to the
 * host's init, which may reap it late: a dead sentry can linger as a zombie, and kill(pid, 0)
 * succeeds on zombies.
 */
async function pidAlive(pid: number): Promise<boolean> {
  if (pid <= 0) return false
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  return state !== '' && state !== 'Z' && state !== 'X'
}

/** mkdir -p of an absolute path inside the root, never through a symlink (it could point out). */
async function mkdirInRoot(root: string, abs: string): Promise<void> {
  let p = root
  for (const part of abs.split('/').filter(Boolean)) {
    if (part === '..' || part === '.') throw new S0Error('invalid_request', `bad path ${abs}`)
    p = path.join(p, part)
    const st = await lstat(p).catch(() => null)
    if (st?.isDirectory()) continue
    if (st) return // a file or symlink is there: the template decided otherwise
    await mkdir(p, { mode: 0o755 })
  }
}

/** The environment every process of a sandbox starts from. */
function baseEnv(hostname: string, env: Record<string, string> = {}): Record<string, string> {
  return { PATH: DEFAULT_PATH, HOME: '/root', HOSTNAME: hostname, ...env }
}

function checkId(id: string): void {
  if (!SANDBOX_ID.test(id)) throw new S0Error('invalid_request', `invalid sandbox id ${JSON.stringify(id)}`)
}

function toEnvList(env: Record<string, string>): string[] {
  const entries = Object.entries(env)
  if (entries.length > sandboxLimits.envEntriesMax)
    throw new S0Error('invalid_request', 'too many environment variables')
  return entries.map(([k, v]) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || v.includes('\0')) {
      throw new S0Error('invalid_request', `invalid environment variable ${JSON.stringify(k)}`)
    }
    return `${k}=${v}`
  })
}
