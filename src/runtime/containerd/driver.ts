// runc or runsc driven through containerd's gRPC API instead of their CLIs: a containerd daemon
// of our own (daemon.ts), namespace `s0`, containerd's runc v2 shim (`io.containerd.runc.v2`)
// with runc, or with runsc as its BinaryName (runsc-shim.ts). Our bundle is used as it is: the
// container's spec is the bundle's config.json, its root.path absolute (the overlay's merged
// dir), and no rootfs mounts, so containerd's shim mounts nothing and runs the spec as written.
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { constants as osConstants } from 'node:os'
import path from 'node:path'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { runCli, runCliOk } from '../cli.js'
import type {
  ContainerState,
  ContainerStatus,
  DriverName,
  ExecChild,
  ExecSpec,
  OciDriver,
  PidsCost,
} from '../driver.js'
import type { RunscNetwork } from '../runsc.js'
import {
  grpcCode,
  GrpcStatus,
  jsonAny,
  PROCESS_TYPE_URL,
  runcOptionsAny,
  SPEC_TYPE_URL,
  type CallName,
  type Calls,
  type ContainerMsg,
  type ProcessMsg,
  type TaskStatus,
} from './client.js'
import { ContainerdDaemon } from './daemon.js'
import { ExecProcess, FifoEnds, type FifoSet } from './exec-process.js'
import { GUEST_PID_SUFFIX, runscFlags, writeRunscWrapper } from './runsc-shim.js'

export type ContainerdRuntime = 'runc' | 'runsc'

export interface ContainerdDriverOptions {
  runtime: ContainerdRuntime
  /** Our state directory: the daemon's root, state and socket, the shim's runtime root, FIFOs. */
  root: string
  /** runsc only: as RunscDriverOptions.network. */
  runscNetwork?: RunscNetwork
  /** containerd namespace of our containers. */
  namespace?: string
  /** containerd binary; default on PATH. */
  containerdBin?: string
}

const SHIM = 'io.containerd.runc.v2'
/** Label holding the bundle dir a container was created from (ContainerState.bundle). */
const BUNDLE_LABEL = 'dev.s0.bundle'

interface OciProcess {
  args?: string[]
  env?: string[]
  cwd?: string
  terminal?: boolean
  [key: string]: unknown
}

export class ContainerdDriver implements OciDriver {
  readonly name: DriverName
  readonly via = 'containerd' as const
  readonly root: string
  readonly pidsCost: PidsCost
  readonly hostSeccomp: boolean
  readonly namespace: string
  private readonly runtime: ContainerdRuntime
  private readonly network: RunscNetwork
  private readonly containerdBin: string
  private daemon: Promise<ContainerdDaemon> | undefined
  private readonly processes = new Map<string, OciProcess>()
  private execSeq = 0

  constructor(opts: ContainerdDriverOptions) {
    this.runtime = opts.runtime
    this.name = opts.runtime
    this.root = path.resolve(opts.root)
    this.namespace = opts.namespace ?? 's0'
    this.network = opts.runscNetwork ?? 'sandbox'
    this.containerdBin = opts.containerdBin ?? 'containerd'
    // The same processes run as under the CLI drivers (runc.ts, runsc.ts): same costs, same filter.
    this.pidsCost = opts.runtime === 'runsc' ? { base: 160, perProcess: 8 } : { base: 0, perProcess: 1 }
    this.hostSeccomp = opts.runtime === 'runc'
  }

  /** The shim's runtime root is `<Options.root>/<namespace>` (containerd's process.NewRunc). */
  private get shimRoot(): string {
    return path.join(this.root, 'shim')
  }

  private get runtimeRoot(): string {
    return path.join(this.shimRoot, this.namespace)
  }

  private get wrapperPath(): string {
    return path.join(this.root, 'runsc-for-shim')
  }

  /** Starts our daemon on first use (and the runsc wrapper with it). */
  private ready(): Promise<ContainerdDaemon> {
    this.daemon ??= (async () => {
      await mkdir(this.root, { recursive: true, mode: 0o700 })
      if (this.runtime === 'runsc') await writeRunscWrapper(this.wrapperPath, this.network)
      return ContainerdDaemon.start(path.join(this.root, 'containerd'), this.namespace, this.containerdBin)
    })()
    // A failed start is retried by the next call, not remembered.
    this.daemon.catch(() => (this.daemon = undefined))
    return this.daemon
  }

  private async call<N extends CallName>(
    name: N,
    req: Calls[N][0],
    timeoutMs: number = limits.ociQueryTimeoutMs,
  ): Promise<Calls[N][1]> {
    const d = await this.ready()
    return d.client.call(name, req, timeoutMs)
  }

  async run(id: string, bundleDir: string): Promise<number> {
    const spec = JSON.parse(await readFile(path.join(bundleDir, 'config.json'), 'utf8')) as {
      process?: OciProcess
    }
    const container: ContainerMsg = {
      id,
      labels: { [BUNDLE_LABEL]: bundleDir },
      runtime: {
        name: SHIM,
        options: runcOptionsAny({
          root: this.shimRoot,
          ...(this.runtime === 'runsc' ? { binaryName: this.wrapperPath } : {}),
        }),
      },
      spec: jsonAny(SPEC_TYPE_URL, spec),
    }
    try {
      await this.call('containers.Create', { container }, limits.ociRunTimeoutMs)
      if (spec.process) this.processes.set(id, spec.process)
      // The init's output goes to a file as with the CLI drivers (cli-driver.ts spawnInit).
      const log = `file://${path.join(bundleDir, 'init.log')}`
      await this.call('tasks.Create', { container_id: id, stdout: log, stderr: log }, limits.ociRunTimeoutMs)
      const { pid } = await this.call('tasks.Start', { container_id: id }, limits.ociRunTimeoutMs)
      return pid
    } catch (err) {
      await this.delete(id).catch(() => undefined) // best effort, as the CLI drivers' run()
      const log = (await readFile(path.join(bundleDir, 'init.log'), 'utf8').catch(() => '')).trim()
      throw new S0Error(
        'runtime_failed',
        `containerd (${this.runtime}) run ${id} failed: ${errText(err)}${log ? `; init: ${log}` : ''}`.slice(
          0,
          limits.hostCliErrorCharsMax,
        ),
        { cause: err },
      )
    }
  }

  async exec(id: string, spec: ExecSpec): Promise<ExecChild> {
    const base = await this.baseProcess(id)
    const execId = `x${process.pid}-${++this.execSeq}-${randomBytes(2).toString('hex')}`
    const dir = path.join(this.root, 'fifo', id, execId)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const fifos: FifoSet = {
      stdin: path.join(dir, 'in'),
      stdout: path.join(dir, 'out'),
      stderr: spec.tty ? '' : path.join(dir, 'err'),
    }
    await runCliOk('mkfifo', ['-m', '0600', ...Object.values(fifos).filter(Boolean)])
    const proc: OciProcess = {
      ...base,
      args: [...spec.args],
      env: mergeEnv(base.env ?? [], spec.env ?? []),
      cwd: spec.cwd ?? base.cwd ?? '/',
      terminal: spec.tty ?? false,
    }
    const ends = new FifoEnds(fifos)
    const cleanup = (): void => {
      // Fire and forget: unique names under our dir; a leftover is harmless.
      void this.call('tasks.DeleteProcess', { container_id: id, exec_id: execId })
        .catch(() => undefined)
        .then(() => rm(dir, { recursive: true, force: true }))
        .catch(() => undefined)
    }
    const child = new ExecProcess(ends, {
      signal: (signal) => this.killExec(id, execId, signal),
      tty: spec.tty ?? false,
      closeStdin: async () => {
        await this.call('tasks.CloseIO', { container_id: id, exec_id: execId, stdin: true })
      },
    })
    try {
      await this.call('tasks.Exec', {
        container_id: id,
        exec_id: execId,
        stdin: fifos.stdin,
        stdout: fifos.stdout,
        stderr: fifos.stderr,
        terminal: spec.tty ?? false,
        spec: jsonAny(PROCESS_TYPE_URL, proc),
      })
    } catch (err) {
      ends.destroy()
      cleanup()
      if (grpcCode(err) === GrpcStatus.NOT_FOUND) throw new S0Error('sandbox_not_found', `no container ${id}`)
      throw new S0Error('runtime_failed', `containerd exec in ${id} failed: ${errText(err)}`, { cause: err })
    }
    try {
      await this.call('tasks.Start', { container_id: id, exec_id: execId }, limits.ociRunTimeoutMs)
    } catch (err) {
      // The process did not start (no such binary...): as with a runtime client, a child that
      // exits non-zero with the reason on stderr, not a thrown error.
      ends.releaseKeepalives()
      const notFound = /no such file|not found/i.test(errText(err))
      process.nextTick(() => {
        if (!spec.tty) child.stderr.emit('data', Buffer.from(`${errText(err)}\n`))
        child.exited(notFound ? 127 : 126)
      })
      cleanup()
      return { child, kill: async () => undefined }
    }
    ends.releaseKeepalives()
    // No deadline: the caller's exec timeout kills the process, which ends the wait.
    this.call('tasks.Wait', { container_id: id, exec_id: execId }, Infinity).then(
      (r) => child.exited(r.exit_status),
      // The task went away under us (the container was deleted): as a killed process.
      () => child.exited(128 + 9),
    )
    child.once('close', cleanup)
    const ec: ExecChild = {
      child,
      kill: (signal) => this.killExec(id, execId, signal),
      ...(spec.tty
        ? {
            resize: async (rows: number, cols: number): Promise<void> => {
              await this.call('tasks.ResizePty', {
                container_id: id,
                exec_id: execId,
                width: cols,
                height: rows,
              })
            },
          }
        : {}),
    }
    return ec
  }

  /**
   * runc: containerd signals the process (the shim knows its host pid). runsc: the shim's pid is
   * the `runsc exec` waiter's, which cannot pass SIGKILL on, so the guest pid our wrapper had
   * runsc write next to the shim's pid file is signalled through runsc (as runsc.ts's killExec).
   */
  private async killExec(id: string, execId: string, signal: NodeJS.Signals): Promise<void> {
    if (this.runtime === 'runsc') {
      const file = path.join(
        this.root,
        'containerd/state/io.containerd.runtime.v2.task',
        this.namespace,
        id,
        `${execId}.pid${GUEST_PID_SUFFIX}`,
      )
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim())
      if (Number.isInteger(pid) && pid > 0) {
        await runCli(
          'runsc',
          [...this.runscGlobal(), 'kill', '--pid', String(pid), id, signal.replace(/^SIG/, '')],
          {
            timeoutMs: limits.ociQueryTimeoutMs,
          },
        )
      }
    }
    try {
      await this.call('tasks.Kill', { container_id: id, exec_id: execId, signal: signalNumber(signal) })
    } catch (err) {
      if (!isGone(err)) throw toS0(err, `kill of an exec in ${id}`)
    }
  }

  private runscGlobal(): string[] {
    return ['--root', this.runtimeRoot, ...runscFlags(this.network)]
  }

  /** The container's process (from its spec): what an exec inherits (user, caps, rlimits, env). */
  private async baseProcess(id: string): Promise<OciProcess> {
    const cached = this.processes.get(id)
    if (cached) return cached
    try {
      const { container } = await this.call('containers.Get', { id })
      const spec = JSON.parse(container.spec.value.toString('utf8')) as { process?: OciProcess }
      const proc = spec.process ?? {}
      this.processes.set(id, proc)
      return proc
    } catch (err) {
      if (isGone(err)) throw new S0Error('sandbox_not_found', `no container ${id}`)
      throw toS0(err, `exec in ${id}`)
    }
  }

  async freeze(id: string): Promise<void> {
    await this.call('tasks.Pause', { container_id: id }).catch((err: unknown) => {
      throw toS0(err, `pause ${id}`)
    })
  }

  async thaw(id: string): Promise<void> {
    await this.call('tasks.Resume', { container_id: id }).catch((err: unknown) => {
      throw toS0(err, `resume ${id}`)
    })
  }

  async kill(id: string, signal: NodeJS.Signals, opts: { all?: boolean } = {}): Promise<void> {
    try {
      await this.call('tasks.Kill', {
        container_id: id,
        signal: signalNumber(signal),
        all: opts.all ?? false,
      })
    } catch (err) {
      if (!isGone(err)) throw toS0(err, `kill ${id}`)
    }
  }

  async delete(id: string): Promise<void> {
    this.processes.delete(id)
    const task = await this.task(id)
    if (task) {
      // A frozen process does not die of SIGKILL until thawed.
      if (task.status === 'PAUSED' || task.status === 'PAUSING')
        await this.call('tasks.Resume', { container_id: id }).catch(() => undefined) // gone meanwhile: fine
      if (task.status !== 'STOPPED') {
        // A kill that fails because the init just exited ("sandbox is not running") is fine;
        // one that really failed shows up as the wait's timeout.
        await this.kill(id, 'SIGKILL', { all: true }).catch(() => undefined)
        await this.call('tasks.Wait', { container_id: id }, limits.ociDeleteTimeoutMs).catch(
          (err: unknown) => {
            if (!isGone(err)) throw toS0(err, `delete ${id} (wait)`)
          },
        )
      }
      await this.call('tasks.Delete', { container_id: id }, limits.ociDeleteTimeoutMs).catch(
        (err: unknown) => {
          if (!isGone(err)) throw toS0(err, `delete ${id}`)
        },
      )
    }
    await this.call('containers.Delete', { id }, limits.ociDeleteTimeoutMs).catch((err: unknown) => {
      if (!isGone(err)) throw toS0(err, `delete ${id}`)
    })
    // FIFOs of execs whose cleanup did not run (the container died under them).
    await rm(path.join(this.root, 'fifo', id), { recursive: true, force: true })
  }

  private async task(id: string): Promise<ProcessMsg | undefined> {
    try {
      return (await this.call('tasks.Get', { container_id: id })).process
    } catch (err) {
      if (isGone(err)) return undefined
      throw toS0(err, `state ${id}`)
    }
  }

  async state(id: string): Promise<ContainerState | undefined> {
    let container: ContainerMsg
    try {
      container = (await this.call('containers.Get', { id })).container
    } catch (err) {
      if (isGone(err)) return undefined
      throw toS0(err, `state ${id}`)
    }
    return toState(container, await this.task(id))
  }

  async list(): Promise<ContainerState[]> {
    const [{ containers }, { tasks }] = await Promise.all([
      this.call('containers.List', { filters: [] }),
      this.call('tasks.List', {}),
    ])
    // ListTasks names each task by `id` (its container's id) and leaves container_id empty
    // (containerd 1.6's tasks service), while Get fills container_id: take either.
    const byId = new Map(tasks.map((t) => [t.container_id || t.id, t]))
    return containers.map((c) => toState(c, byId.get(c.id)))
  }

  async pids(id: string): Promise<number[]> {
    if (this.runtime === 'runsc') {
      // The shim's ListPids parses `ps` as runc prints it (numbers); runsc prints objects.
      const r = await runCli('runsc', [...this.runscGlobal(), 'ps', '--format', 'json', id], {
        timeoutMs: limits.ociQueryTimeoutMs,
      })
      if (r.code !== 0) {
        if ((await this.state(id)) === undefined) throw new S0Error('sandbox_not_found', `no container ${id}`)
        throw new S0Error('runtime_failed', `runsc ps ${id} failed: ${r.stderr.trim()}`)
      }
      const raw = JSON.parse(r.stdout.trim() || '[]') as { PID?: number }[] | null
      return (raw ?? []).map((p) => Number(p.PID))
    }
    try {
      return (await this.call('tasks.ListPids', { container_id: id })).processes.map((p) => p.pid)
    } catch (err) {
      if (isGone(err)) throw new S0Error('sandbox_not_found', `no container ${id}`)
      throw toS0(err, `ps ${id}`)
    }
  }

  async close(): Promise<void> {
    const d = this.daemon
    this.daemon = undefined
    if (d) await (await d.catch(() => undefined))?.stop()
  }
}

const STATUS: Record<TaskStatus, ContainerStatus> = {
  UNKNOWN: 'stopped',
  CREATED: 'created',
  RUNNING: 'running',
  STOPPED: 'stopped',
  PAUSED: 'paused',
  PAUSING: 'paused',
}

function toState(c: ContainerMsg, task: ProcessMsg | undefined): ContainerState {
  // A container without a task has nothing running: stopped, as a runtime shows a dead init.
  const status = task ? STATUS[task.status] : 'stopped'
  return {
    id: c.id,
    status,
    pid: task && status !== 'stopped' ? task.pid : 0,
    bundle: c.labels?.[BUNDLE_LABEL] ?? '',
  }
}

/** `KEY=value` lists: the exec's entries replace the container's of the same key. */
function mergeEnv(base: readonly string[], extra: readonly string[]): string[] {
  const key = (e: string): string => e.slice(0, Math.max(0, e.indexOf('=')))
  const over = new Set(extra.map(key))
  return [...base.filter((e) => !over.has(key(e))), ...extra]
}

function signalNumber(signal: NodeJS.Signals): number {
  const n = osConstants.signals[signal]
  if (n === undefined) throw new S0Error('invalid_request', `unknown signal ${signal}`)
  return n
}

/** NOT_FOUND: no such container, task or process ("process already finished" included). */
function isGone(err: unknown): boolean {
  return grpcCode(err) === GrpcStatus.NOT_FOUND
}

function errText(err: unknown): string {
  const e = err as { details?: unknown; message?: unknown }
  return String(typeof e?.details === 'string' && e.details ? e.details : (e?.message ?? err))
}

function toS0(err: unknown, what: string): S0Error {
  if (err instanceof S0Error) return err
  return new S0Error('runtime_failed', `containerd ${what} failed: ${errText(err)}`, { cause: err })
}
