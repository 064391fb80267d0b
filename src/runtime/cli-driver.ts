// What runc, crun and runsc share: the same verbs (create, start, exec, kill, delete, state,
// list, ps) with JSON output, and runc's way of exec (host pid file, `-t`), which crun shares.
// Subclasses add their global flags and their quirks.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { runCli, runCliOk, type CliResult } from './cli.js'
import type {
  ContainerState,
  ContainerStatus,
  DriverName,
  ExecChild,
  ExecSpec,
  OciDriver,
  PidsCost,
} from './driver.js'

export interface CliDriverOptions {
  /** State directory of this runtime (passed as --root). */
  root: string
  /** Binary to run; default the driver's name on PATH. */
  bin?: string
}

export abstract class CliDriver implements OciDriver {
  abstract readonly name: DriverName
  readonly root: string
  readonly bin: string
  readonly pidsCost: PidsCost = { base: 0, perProcess: 1 }
  readonly hostSeccomp: boolean = true
  private execSeq = 0

  constructor(opts: CliDriverOptions, defaultBin: string) {
    this.root = path.resolve(opts.root)
    this.bin = opts.bin ?? defaultBin
  }

  /** Flags before the verb (--root and runtime-specific ones). */
  protected globalArgs(): string[] {
    return ['--root', this.root]
  }

  /** argv (binary first) of `create` and `start`; runsc wraps them to hide /proc/sys/net. */
  protected lifecycleArgv(args: string[]): string[] {
    return [this.bin, ...this.globalArgs(), ...args]
  }

  /** Flags of `exec` that give us a handle on the process for kill(): its host pid in a file. */
  protected execPidArgs(pidFile: string): string[] {
    return ['--pid-file', pidFile]
  }

  /** Signals an exec'd process by the pid execPidArgs wrote (here a host pid: we see it). */
  protected async killExec(_id: string, pidFromFile: number, signal: NodeJS.Signals): Promise<void> {
    killHostPid(pidFromFile, signal)
  }

  /**
   * Flags of `exec` for a terminal (`-t`), written to `<execBase>.*` files if needed;
   * undefined: not supported. crun's `-t` does not pass window resizes on (runtime recipes §4).
   */
  protected async ttyArgs(_spec: ExecSpec, _execBase: string): Promise<string[] | undefined> {
    return ['-t']
  }

  protected cli(args: string[], timeoutMs: number = limits.ociQueryTimeoutMs): Promise<CliResult> {
    return runCli(this.bin, [...this.globalArgs(), ...args], { timeoutMs })
  }

  async run(id: string, bundleDir: string): Promise<number> {
    const pidPath = await this.spawnInit(id, bundleDir, 'create', ['--bundle', bundleDir])
    const [startBin, ...startArgs] = this.lifecycleArgv(['start', id]) as [string, ...string[]]
    const r = await runCli(startBin, startArgs, { timeoutMs: limits.ociRunTimeoutMs })
    if (r.code !== 0) {
      // Best effort: the start failure is what the caller needs; a container left behind is
      // removed by the caller's delete or by reconcile.
      await this.delete(id).catch(() => undefined)
      throw new S0Error(
        'runtime_failed',
        `${this.name} start ${id} failed: ${r.stderr.trim().slice(0, limits.hostCliErrorCharsMax)}`,
      )
    }
    return this.initPid(id, pidPath)
  }

  /**
   * Runs `verb` (create, restore) that leaves the container's init behind. The init inherits
   * its stdout/stderr and keeps them open for its whole life, so they go to a file (not a pipe
   * we would wait on forever); the file also keeps the init's output. Returns the pid file.
   */
  protected async spawnInit(id: string, bundleDir: string, verb: string, args: string[]): Promise<string> {
    await mkdir(this.root, { recursive: true })
    const logPath = path.join(bundleDir, 'init.log')
    const pidPath = path.join(bundleDir, 'init.pid')
    await rm(pidPath, { force: true })
    const [bin, ...rest] = this.lifecycleArgv([verb, ...args, '--pid-file', pidPath, id]) as [
      string,
      ...string[],
    ]
    const code = await spawnToFile(bin, rest, logPath, limits.ociRunTimeoutMs)
    if (code !== 0) {
      const log = await readTail(logPath)
      await this.delete(id).catch(() => undefined) // best effort, as in run()
      throw new S0Error('runtime_failed', `${this.name} ${verb} ${id} failed (${code}): ${log}`)
    }
    return pidPath
  }

  protected async initPid(id: string, pidPath: string): Promise<number> {
    // No pid file (the runtime wrote none): ask `state` instead.
    const pid = Number((await readFile(pidPath, 'utf8').catch(() => '')).trim())
    return Number.isInteger(pid) && pid > 0 ? pid : ((await this.state(id))?.pid ?? 0)
  }

  async freeze(id: string): Promise<void> {
    const r = await this.cli(['pause', id])
    if (r.code !== 0)
      throw new S0Error('runtime_failed', `${this.name} pause ${id} failed: ${r.stderr.trim()}`)
  }

  async thaw(id: string): Promise<void> {
    const r = await this.cli(['resume', id])
    if (r.code !== 0)
      throw new S0Error('runtime_failed', `${this.name} resume ${id} failed: ${r.stderr.trim()}`)
  }

  async exec(id: string, spec: ExecSpec): Promise<ExecChild> {
    const execDir = path.join(this.root, '.exec')
    await mkdir(execDir, { recursive: true })
    const tag = `${id}-${process.pid}-${++this.execSeq}`
    const pidFile = path.join(execDir, `${tag}.pid`)
    const args = [...this.globalArgs(), 'exec', ...this.execPidArgs(pidFile)]
    for (const e of spec.env ?? []) args.push('--env', e)
    if (spec.cwd !== undefined) args.push('--cwd', spec.cwd)
    let argv: [string, ...string[]]
    if (spec.tty) {
      const tty = await this.ttyArgs(spec, path.join(execDir, tag))
      if (tty === undefined)
        throw new S0Error('not_supported', `${this.name}: exec with a terminal is not supported`)
      // Node has no pty: util-linux `script` gives the runtime client one, and the runtime gives
      // the process its own. Output then comes merged on stdout, as on any terminal. The client's
      // pty is made raw before the runtime starts: the runtime makes it raw too, but only once
      // running, and output that came sooner was translated twice ("\r\n" became "\r\r\n").
      // It gets its size then too: the runtime copies it to the process's terminal as it
      // starts, which would otherwise undo a size the process set itself (0x0 over 33x101).
      const inner = [this.bin, ...args, ...tty, id, ...(tty.includes('--process') ? [] : spec.args)]
      const size = spec.ttySize
      const sized =
        size && Number.isInteger(size.rows) && Number.isInteger(size.cols) && size.rows > 0 && size.cols > 0
          ? ` rows ${Math.min(size.rows, 65535)} cols ${Math.min(size.cols, 65535)}`
          : ''
      const command = `stty raw -echo${sized} 2>/dev/null; exec ${inner.map(shellQuote).join(' ')}`
      argv = ['script', '-q', '-e', '-f', '-c', command, '/dev/null']
    } else {
      argv = [this.bin, ...args, id, ...spec.args]
    }
    const child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    child.on('exit', () => {
      // Fire and forget: a file left in .exec is harmless (unique names, the dir is ours).
      void rm(pidFile, { force: true }).catch(() => undefined)
      if (spec.tty) void rm(path.join(execDir, `${tag}.process.json`), { force: true }).catch(() => undefined)
    })
    const kill = async (signal: NodeJS.Signals): Promise<void> => {
      const pid = await waitPidFile(pidFile, child)
      if (pid !== undefined) await this.killExec(id, pid, signal)
    }
    return { child, kill }
  }

  async kill(id: string, signal: NodeJS.Signals, opts: { all?: boolean } = {}): Promise<void> {
    const args = ['kill', ...(opts.all ? ['--all'] : []), id, signal.replace(/^SIG/, '')]
    const r = await this.cli(args)
    if (r.code !== 0 && !isGone(r.stderr)) {
      throw new S0Error('runtime_failed', `${this.name} kill ${id} failed: ${r.stderr.trim()}`)
    }
  }

  async delete(id: string): Promise<void> {
    const r = await this.cli(['delete', '--force', id], limits.ociDeleteTimeoutMs)
    if (r.code !== 0 && !isGone(r.stderr)) {
      throw new S0Error('runtime_failed', `${this.name} delete ${id} failed: ${r.stderr.trim()}`)
    }
  }

  async state(id: string): Promise<ContainerState | undefined> {
    const r = await this.cli(['state', id])
    if (r.code !== 0) {
      if (isGone(r.stderr)) return undefined
      throw new S0Error('runtime_failed', `${this.name} state ${id} failed: ${r.stderr.trim()}`)
    }
    return toState(JSON.parse(r.stdout) as RawState)
  }

  async list(): Promise<ContainerState[]> {
    await mkdir(this.root, { recursive: true })
    const r = await runCliOk(this.bin, [...this.globalArgs(), 'list', '--format', 'json'], {
      timeoutMs: limits.ociQueryTimeoutMs,
    })
    const raw = JSON.parse(r.stdout.trim() || 'null') as RawState[] | null
    return (raw ?? []).map(toState)
  }

  async pids(id: string): Promise<number[]> {
    const r = await this.cli(['ps', '--format', 'json', id])
    if (r.code !== 0) {
      if (isGone(r.stderr)) throw new S0Error('sandbox_not_found', `no container ${id}`)
      throw new S0Error('runtime_failed', `${this.name} ps ${id} failed: ${r.stderr.trim()}`)
    }
    return parsePids(r.stdout)
  }
}

interface RawState {
  id: string
  pid?: number
  status: string
  bundle?: string
}

function toState(raw: RawState): ContainerState {
  const known: ContainerStatus[] = ['creating', 'created', 'running', 'paused', 'stopped']
  const status = (known as string[]).includes(raw.status) ? (raw.status as ContainerStatus) : 'stopped'
  return { id: raw.id, status, pid: raw.pid ?? 0, bundle: raw.bundle ?? '' }
}

/** runc/crun print `[1,2]`; runsc prints `[{"PID":1,...}]`. */
function parsePids(stdout: string): number[] {
  const raw = JSON.parse(stdout.trim() || '[]') as unknown[] | null
  return (raw ?? []).map((p) => (typeof p === 'number' ? p : Number((p as { PID?: number }).PID)))
}

/** Wording of "no such container" across runc ("does not exist"), crun ("not found"), runsc. */
export function isGone(stderr: string): boolean {
  return /does not exist|not found|no such file or directory|cannot load container/i.test(stderr)
}

function spawnToFile(
  bin: string,
  args: string[],
  logPath: string,
  timeoutMs: number,
): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const fd = openSync(logPath, 'w', 0o600)
    const child = spawn(bin, args, { stdio: ['ignore', fd, fd] })
    closeSync(fd)
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(new S0Error('runtime_unavailable', `cannot run ${bin}: ${e.message}`, { cause: e }))
    })
    // 'exit', not 'close': the container's init keeps the log fd open.
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
}

async function readTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '') // no log: the exit code says enough
  return text.slice(-limits.ociInitLogBytesMax).trim().slice(-limits.hostCliErrorCharsMax)
}

/** The pid the runtime wrote for an exec'd process; undefined if the process is already gone. */
async function waitPidFile(file: string, child: ChildProcess): Promise<number | undefined> {
  const deadline = Date.now() + limits.execPidFileWaitMs
  while (Date.now() < deadline) {
    const text = await readFile(file, 'utf8').catch(() => '') // not written yet
    const pid = Number.parseInt(text.trim(), 10)
    if (Number.isInteger(pid) && pid > 0) return pid
    if (child.exitCode !== null || child.signalCode !== null) return undefined
    await new Promise((r) => setTimeout(r, limits.execPidFilePollMs))
  }
  return undefined
}

/** Signals a host pid; a process already gone is not an error. */
export function killHostPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}
