// Sandboxes as processes: a long-running init in an OCI container on a per-sandbox overlay root,
// host scratch for /tmp and /dev/shm, and a network namespace (with a veth to the egress proxy
// when the runtime has a SandboxNetwork); processes exec'd into it; and cleanup that leaves
// nothing behind (teardown.ts), including after a crash of our server (reconcile.ts).
import { lstat, mkdir, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { silentLogger, type Logger } from '../core/log.js'
import { writeBundle, type BindMount, type SandboxResources } from './bundle.js'
import { memoryStats, setCpuQuota, setMemoryLimit } from './cgroups.js'
import { CappedBuffer } from './cli.js'
import { diskImageBytes, DiskImages } from './disk.js'
import type { ContainerStatus, OciDriver } from './driver.js'
import { ExecHandle, pidAlive, type ExecOptions, type RunResult, type SandboxProcess } from './exec-handle.js'
import { ExecZygotes } from './exec-zygotes.js'
import { createNetns, netnsPath } from './netns.js'
import type { SandboxAttachment, SandboxNetwork } from './network.js'
import { mountOverlay } from './overlay.js'
import { reconcileSandboxes, type ReconcileReport } from './reconcile.js'
import {
  baseEnv,
  checkId,
  newRecord,
  readRecord,
  toEnvList,
  writeRecord,
  type SandboxRecord,
} from './sandbox-record.js'
import { mountScratch, restoreScratch, saveScratch } from './scratch.js'
import { removeSandbox, stopKeepingUpper } from './teardown.js'
import { sandboxSeccomp } from './seccomp.js'
import { sandboxView, type SandboxView } from './view.js'

// The types callers of the runtime use, from where they are defined.
export type { ExecOptions, ExecResult, RunResult, SandboxProcess } from './exec-handle.js'
export type { ReconcileReport } from './reconcile.js'
export type { SandboxRecord } from './sandbox-record.js'
export type { SandboxView, ViewMount } from './view.js'
export type { SandboxAttachment } from './network.js'

/** runc and crun apply it to every process of a sandbox (seccomp.ts); built once. */
const SANDBOX_SECCOMP = sandboxSeccomp()

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
  /**
   * The server's sandbox network (network.ts; several runtimes may share one): each sandbox
   * gets a veth and an address, all its TCP goes to the egress proxy and its DNS to the
   * resolver. None: sandboxes have loopback only.
   */
  network?: SandboxNetwork
  log?: Logger
}

/** A host file bound read-only into the sandbox (a CA bundle). */
export interface FileBind {
  /** Absolute path inside the sandbox; the template should have a file there already. */
  containerPath: string
  /** Absolute path of a regular file on the host. Bound by inode: replace its content in place. */
  hostPath: string
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
  /** Bound after /tmp and /dev/shm, in this order. */
  mounts?: readonly BindMount[]
  init?: readonly string[]
  /**
   * Size of the writable root (`resources.ephemeralStorage`): an ext4 image on the state disk
   * (disk.ts); default limits.sandboxDiskBytesDefault. Rounded down to whole MiB.
   */
  diskBytes?: number
  /** Upper layer on a tmpfs of this size instead (memory, gone with the sandbox). */
  upperTmpfsBytes?: number
  /** /tmp and /dev/shm share one host tmpfs of tmpSizeBytes + devShmSizeBytes (scratch.ts). */
  tmpSizeBytes?: number
  devShmSizeBytes?: number
  /** A memory image of this sandbox (driver.memoryCheckpoint): its processes come back from it. */
  restoreImage?: string
  /** Directories made in the root before the container starts (template mount points). */
  mkdirs?: readonly string[]
  /**
   * Attach to the runtime's sandbox network (default: yes, when it has one), with
   * /etc/resolv.conf bound read-only from a host file naming the gateway as nameserver. false:
   * loopback only.
   */
  network?: boolean
  /** Host files bound read-only, after `mounts` and /etc/resolv.conf (so one may replace it). */
  files?: readonly FileBind[]
  /**
   * Runs on the mounted root (a host path) before the container starts: nothing of the sandbox
   * runs yet, but the root may hold whatever it wrote before (never follow its symlinks).
   */
  prepareRoot?: (root: string) => Promise<void>
}

export interface SandboxStatus {
  status: ContainerStatus | 'missing'
  oomKills: number
  memoryUsageBytes: number
}

export class SandboxRuntime {
  readonly driver: OciDriver
  private readonly sandboxesDir: string
  private readonly cgroupPrefix: string
  private readonly netnsPrefix: string
  private readonly network: SandboxNetwork | undefined
  private readonly log: Logger
  private readonly sandboxes = new Map<string, SandboxRecord>()
  /** Stopped with their upper directory kept (for a capture), until `delete`. */
  private readonly stopped = new Set<string>()
  private readonly zygotes: ExecZygotes
  /** Empty ext4 images, one per disk size (the sandboxes' writable roots copy them). */
  private readonly disks: DiskImages
  /** Execs served by a pre-started zygote, and fresh ones (metrics, bench, tests). */
  readonly execStats = { zygote: 0, fresh: 0 }
  /** Ids with a start or delete in progress: one lifecycle operation per sandbox at a time. */
  private readonly busy = new Set<string>()

  constructor(opts: SandboxRuntimeOptions) {
    this.driver = opts.driver
    this.sandboxesDir = path.resolve(opts.stateDir, 'sandboxes')
    this.cgroupPrefix = opts.cgroupPrefix ?? 's0'
    this.netnsPrefix = opts.netnsPrefix ?? 's0-'
    this.network = opts.network
    this.log = (opts.log ?? silentLogger).child({ component: 'runtime', driver: opts.driver.name })
    this.zygotes = new ExecZygotes(opts.driver, opts.execZygotesMax)
    this.disks = new DiskImages(path.resolve(opts.stateDir, 'disk-images'))
  }

  get(id: string): SandboxRecord {
    const rec = this.sandboxes.get(id)
    if (!rec) throw new S0Error('sandbox_not_found', `no sandbox ${id}`)
    return rec
  }

  /** Where each path of the sandbox is on the host (resolve with view.ts's resolveInView). */
  view(id: string): SandboxView {
    return this.get(id).view
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
    const rec = this.defaultRecord(opts.id, {
      env: baseEnv(opts.hostname ?? opts.id, opts.env),
      createdAt: new Date().toISOString(),
    })
    const dir = rec.dir
    try {
      await mkdir(dir, { recursive: true })
      // The record goes first, so a crash half-way still leaves reconcile something to find.
      await writeRecord(rec)
      // Host resources one after the other (each is a `mount` or `ip` run, ~10-40 ms). Run at
      // once they shorten this start but burst both cores: a warm claim's first command on
      // another sandbox, while its pool refills, took 130-170 ms instead of 35-55 ms here.
      const rootBytes =
        opts.upperTmpfsBytes ?? diskImageBytes(opts.diskBytes ?? limits.sandboxDiskBytesDefault)
      const ovl = await mountOverlay({
        dir: path.join(dir, 'rootfs'),
        lowerDirs: [...(opts.lowerDirs ?? []), opts.templateRootfs],
        ...(opts.upperTmpfsBytes === undefined
          ? { disk: { bytes: rootBytes, images: this.disks } }
          : { tmpfsBytes: rootBytes }),
      })
      const scratchBytes =
        (opts.tmpSizeBytes ?? limits.sandboxTmpBytesDefault) +
        (opts.devShmSizeBytes ?? limits.sandboxDevShmBytesDefault)
      const scratch = await mountScratch(dir, scratchBytes)
      await createNetns(rec.netns)
      const binds = [...(opts.mounts ?? [])]
      if (this.network && opts.network !== false) {
        rec.network = await this.network.attach(opts.id, rec.netns)
        binds.push(await writeResolvConf(dir, rec.network))
      }
      for (const f of opts.files ?? []) binds.push(await fileBind(f))
      rec.rootfs = ovl.merged
      rec.upperDir = ovl.upper
      rec.view = sandboxView({
        rootfs: ovl.merged,
        tmpHostPath: scratch.tmp,
        shmHostPath: scratch.shm,
        binds,
        rootLimitBytes: rootBytes,
        scratchLimitBytes: scratchBytes,
      })
      await writeRecord(rec)
      for (const d of opts.mkdirs ?? []) await mkdirInRoot(ovl.merged, d)
      if (opts.prepareRoot) await opts.prepareRoot(ovl.merged)
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
          tmpHostPath: scratch.tmp,
          shmHostPath: scratch.shm,
          mounts: binds,
          ...(this.driver.hostSeccomp ? { seccomp: SANDBOX_SECCOMP } : {}),
        },
        this.driver.pidsCost,
      )
      if (opts.restoreImage) {
        const mc = this.driver.memoryCheckpoint
        if (!mc) throw new S0Error('not_supported', `${this.driver.name} cannot restore process memory`)
        // Its processes reopen their /tmp and /dev/shm files by path: they must be back first.
        await restoreScratch(dir, opts.restoreImage)
        rec.initPid = await mc.restore(opts.id, dir, opts.restoreImage)
      } else {
        rec.initPid = await this.driver.run(opts.id, dir)
      }
      await writeRecord(rec)
      this.sandboxes.set(opts.id, rec)
      this.zygotes.prime(opts.id, rec.env)
      this.log.info('sandbox started', { id: opts.id, ms: Date.now() - started })
      return rec
    } catch (err) {
      await removeSandbox(this.driver, rec, this.network).catch((e: unknown) =>
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
    const timeoutMs = Math.min(opts.timeoutMs ?? limits.execTimeoutMsDefault, limits.execTimeoutMsMax)
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
        ...(opts.tty && opts.ttySize ? { ttySize: opts.ttySize } : {}),
      }))
    this.zygotes.prime(id, rec.env) // for the next command
    return new ExecHandle(ec, {
      timeoutMs,
      startedAt,
      ...(opts.tty ? { tty: true } : {}),
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
    const max = opts.outputBytesMax ?? limits.execOutputBytesMax
    const out = new CappedBuffer(max)
    const err = new CappedBuffer(max)
    p.stdout.on('data', (b: Buffer) => out.push(b))
    p.stderr.on('data', (b: Buffer) => err.push(b))
    // EPIPE when the process does not read its input: what it did read is all it wanted.
    p.stdin.on('error', () => undefined)
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
    if (r.cpuMillis !== undefined) await setCpuQuota(rec.cgroupsPath, r.cpuMillis, limits.sandboxCpuPeriodUs)
  }

  /** The environment every later exec starts from (a warm sandbox taken by a claim). */
  async setEnv(id: string, env: Record<string, string>): Promise<void> {
    const rec = this.get(id)
    toEnvList(env) // validates
    rec.env = baseEnv(rec.env['HOSTNAME'] ?? id, env)
    await writeRecord(rec)
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
   * Stops the container (with `memoryImage`, after saving its processes and its /tmp and
   * /dev/shm there; if either cannot be saved, the image is removed and the files alone are
   * kept) and unmounts its root and scratch, keeping the overlay's upper directory for a
   * capture. `delete` removes the rest.
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
        const image = opts.memoryImage
        // Without an image the sandbox resumes with its files, which the stop below keeps for a
        // capture. runsc (20221219) cannot encode a TCP endpoint in TIME_WAIT: a networked
        // sandbox that closed a connection in the last minute cannot be checkpointed.
        const dropImage = async (what: string, err: unknown): Promise<void> => {
          this.log.warn(`${what}; memory image dropped`, { id, err })
          await rm(image, { recursive: true, force: true })
        }
        const saved = await mc.checkpoint(id, image).then(
          () => true,
          async (err: unknown) => {
            await dropImage('processes not saved', err)
            return false
          },
        )
        // Processes restored without their /tmp files would fail anyway.
        if (saved)
          await saveScratch(rec.dir, image).catch((err: unknown) => dropImage('scratch not saved', err))
      }
      await this.stopKeepingUpper(rec)
      return rec
    } finally {
      this.busy.delete(id)
    }
  }

  /** Stops the sandbox and removes everything it had on the host. Idempotent. */
  async delete(id: string): Promise<void> {
    checkId(id)
    if (this.busy.has(id)) throw new S0Error('conflict', `sandbox ${id} is starting or being deleted`)
    this.busy.add(id)
    this.zygotes.drop(id)
    try {
      const rec =
        this.sandboxes.get(id) ?? (await readRecord(this.sandboxesDir, id)) ?? this.defaultRecord(id)
      await removeSandbox(this.driver, rec, this.network)
      this.sandboxes.delete(id)
      this.stopped.delete(id)
      this.log.info('sandbox deleted', { id })
    } finally {
      this.busy.delete(id)
    }
  }

  /**
   * After a restart: adopt the known sandboxes that still run, stop the `keep` ones keeping
   * their upper directory, and remove everything else of ours (reconcile.ts). Sandboxes of
   * other runtimes are left alone.
   */
  reconcile(knownIds: Iterable<string>, opts: { keep?: Iterable<string> } = {}): Promise<ReconcileReport> {
    return reconcileSandboxes(
      {
        driver: this.driver,
        ...(this.network ? { network: this.network } : {}),
        sandboxesDir: this.sandboxesDir,
        netnsPrefix: this.netnsPrefix,
        cgroupPrefix: this.cgroupPrefix,
        log: this.log,
        sandboxes: this.sandboxes,
        stopKeepingUpper: (rec) => this.stopKeepingUpper(rec),
        defaultRecord: (id) => this.defaultRecord(id),
      },
      knownIds,
      opts,
    )
  }

  private async stopKeepingUpper(rec: SandboxRecord): Promise<void> {
    await stopKeepingUpper(this.driver, rec, this.network)
    this.stopped.add(rec.id)
  }

  private defaultRecord(
    id: string,
    o: { env?: Record<string, string>; createdAt?: string } = {},
  ): SandboxRecord {
    return newRecord({
      id,
      driver: this.driver.name,
      sandboxesDir: this.sandboxesDir,
      netnsPrefix: this.netnsPrefix,
      cgroupPrefix: this.cgroupPrefix,
      ...o,
    })
  }
}

/**
 * The sandbox's /etc/resolv.conf: a host file bound read-only, as Docker does, never written
 * into the root (its upper layer is what a pause captures). DNS to any address reaches the
 * resolver anyway (the table redirects UDP 53); this only tells resolvers where to send it.
 */
async function writeResolvConf(dir: string, att: SandboxAttachment): Promise<BindMount> {
  const hostPath = path.join(dir, 'resolv.conf')
  await writeFile(hostPath, `# s0: the sandbox's resolver (its gateway)\nnameserver ${att.gateway}\n`, {
    mode: 0o644,
  })
  return { hostPath, containerPath: '/etc/resolv.conf', readOnly: true }
}

async function fileBind(f: FileBind): Promise<BindMount> {
  if (!path.isAbsolute(f.containerPath) || !path.isAbsolute(f.hostPath)) {
    throw new S0Error('invalid_request', `file bind paths must be absolute: ${f.containerPath}`)
  }
  if (!(await stat(f.hostPath)).isFile()) {
    throw new S0Error('invalid_request', `file bind source ${f.hostPath} is not a regular file`)
  }
  return { hostPath: f.hostPath, containerPath: f.containerPath, readOnly: true }
}

/** mkdir -p of an absolute path inside the root, never through a symlink (it could point out). */
async function mkdirInRoot(root: string, abs: string): Promise<void> {
  let p = root
  for (const part of abs.split('/').filter(Boolean)) {
    if (part === '..' || part === '.') throw new S0Error('invalid_request', `bad path ${abs}`)
    p = path.join(p, part)
    const st = await lstat(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null
      throw err
    })
    if (st?.isDirectory()) continue
    if (st) return // a file or symlink is there: the template decided otherwise
    await mkdir(p, { mode: 0o755 })
  }
}
