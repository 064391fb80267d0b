// A context: a long-lived process in a sandbox that the API drives. A REPL (python, bash, node)
// runs on pipes with its prompts silenced; each input is followed by a sentinel statement that
// prints a unique token on stdout and on stderr, so "this input is done" is exact whatever the
// code prints, and output is attributed to the input that produced it. A cmd context runs one
// argv with stdout and stderr apart. Every buffer is bounded; processes end with their sandbox.
import { randomBytes } from 'node:crypto'
import { StringDecoder } from 'node:string_decoder'
import { S0Error } from '../../core/errors.js'
import { randomHexId, type SandboxId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { SandboxProcess } from '../../runtime/sandbox-runtime.js'
import { Collector, ReplayWindow } from './output-buffer.js'
import { REPLS, type ReplSpec } from './repls.js'
import type {
  ContextObserver,
  ContextState,
  CreateContextOptions,
  ExecOutput,
  Frame,
  Spawner,
  StreamName,
} from './types.js'

interface PendingInput {
  token: string
  requestId: string | undefined
  /** The start-up sentinel: its output (banners, warnings) is nobody's. */
  internal: boolean
  seen: Record<StreamName, boolean>
  output: Collector
  done: Promise<void>
  finish: () => void
}

/** Length of the longest suffix of `text` that is a proper prefix of `token`. */
function partialSuffix(text: string, token: string): number {
  for (let k = Math.min(token.length - 1, text.length); k > 0; k--) {
    if (text.endsWith(token.slice(0, k))) return k
  }
  return 0
}

function stateOf(exitCode: number | null, signal: NodeJS.Signals | null): ContextState {
  if (exitCode === 0) return 'stopped'
  if (signal !== null || exitCode === null || exitCode === 137 || exitCode === -1) return 'killed'
  return 'crashed'
}

export class Context {
  readonly id = `ctx-${randomHexId(4)}`
  readonly createdAt = new Date().toISOString()
  ptySize: { rows: number; cols: number } | undefined
  state: ContextState = 'running'
  exitCode: number | undefined
  private proc: SandboxProcess | undefined
  private generation = 0
  private readonly repl: ReplSpec | undefined
  private pending: PendingInput[] = []
  private hold: Record<StreamName, string> = { stdout: '', stderr: '' }
  private output = new Collector()
  private readonly replay = new ReplayWindow()
  private readonly subscribers = new Set<(f: Frame) => void>()
  private exited: Promise<void> = Promise.resolve()
  private timers: NodeJS.Timeout[] = []
  private idleTimer: NodeJS.Timeout | undefined

  /** Whose it is: unset for a warm context until it is handed out (its output is nobody's yet). */
  teamId: string | undefined

  constructor(
    readonly sandboxId: SandboxId,
    readonly opts: CreateContextOptions,
    private readonly spawn: Spawner,
    private readonly observer?: ContextObserver,
  ) {
    this.teamId = opts.teamId
    this.ptySize = opts.ptySize
    if (opts.type === 'repl') {
      const alias = opts.alias ?? 'python'
      this.repl = REPLS[alias]
      if (!this.repl)
        throw new S0Error(
          'invalid_request',
          `unknown REPL ${JSON.stringify(alias)}: use ${Object.keys(REPLS).join(', ')}`,
        )
    }
  }

  /** A warm REPL already given to a `create` (each is handed out once). */
  handedOut = false

  get running(): boolean {
    return this.proc !== undefined && this.state === 'running'
  }

  /** The REPL's canonical alias (python3 and python are one), undefined for cmd contexts. */
  get replName(): string | undefined {
    return this.repl ? this.repl.argv[0] : undefined
  }

  /** Resolves when `text` appears in the output (or the process ends: false). */
  waitForOutput(text: string): Promise<boolean> {
    return new Promise((resolve) => {
      let seen = ''
      let result: boolean | undefined
      // Assigned once, but read by `finish` before that when attach() replays synchronously.
      // eslint-disable-next-line prefer-const
      let detach: (() => void) | undefined
      const finish = (v: boolean): void => {
        if (result !== undefined) return
        result = v
        detach?.()
        resolve(v)
      }
      // attach() may replay output (or the end) before it returns.
      detach = this.attach((f) => {
        if (f.type === 'output') {
          seen = (seen + f.data).slice(-Math.max(4096, text.length * 2))
          if (seen.includes(text)) finish(true)
        } else if ('state' in f) finish(false)
      })
      if (result !== undefined) detach()
    })
  }

  /** Starts the process; a REPL is ready when its first sentinel comes back. */
  async start(): Promise<void> {
    const gen = ++this.generation
    this.state = 'running'
    this.exitCode = undefined
    this.pending = []
    this.hold = { stdout: '', stderr: '' }
    this.eatNewline.stdout = this.eatNewline.stderr = false
    this.output = new Collector()
    this.replay.clear()
    const argv = this.repl ? this.repl.argv : (this.opts.command ?? [])
    const lifetimeMs = Math.min(
      this.opts.ttlSec ? this.opts.ttlSec * 1000 : limits.contextLifetimeMsMax,
      limits.contextLifetimeMsMax,
    )
    let proc: SandboxProcess
    try {
      proc = await this.spawn(this.sandboxId, argv, {
        env: { ...this.opts.env, ...this.repl?.env },
        ...(this.opts.cwd === undefined ? {} : { cwd: this.opts.cwd }),
        timeoutMs: lifetimeMs,
      })
    } catch (err) {
      this.state = 'crashed'
      this.exitCode = -1
      throw err
    }
    this.proc = proc
    this.observer?.started(this)
    proc.stdin.on('error', () => undefined) // EPIPE once the process is gone
    for (const source of ['stdout', 'stderr'] as const) {
      const dec = new StringDecoder('utf8')
      proc[source].on('data', (b: Buffer) => {
        if (gen === this.generation) this.onData(source, dec.write(b))
      })
    }
    this.exited = proc.wait().then(
      (res) => {
        if (gen === this.generation) this.onExit(res.exitCode, res.signal)
      },
      () => {
        if (gen === this.generation) this.onExit(null, 'SIGKILL')
      },
    )
    this.touch()
    if (this.repl) {
      const ready = this.write('', { internal: true })
      const timer = new Promise<'timeout'>((r) => {
        const t = setTimeout(() => r('timeout'), limits.contextReadyTimeoutMs)
        this.timers.push(t)
      })
      if ((await Promise.race([ready.done, timer])) === 'timeout') {
        await this.kill()
        throw new S0Error(
          'timeout',
          `REPL ${this.opts.alias ?? 'python'} did not start within ${limits.contextReadyTimeoutMs} ms`,
        )
      }
      if (!this.running) this.output = ready.output // why it died (e.g. "python3: not found")
    }
  }

  /** Writes an input (REPL: plus its sentinel) and returns its pending record. */
  private write(data: string, opts: { internal?: boolean; requestId?: string } = {}): PendingInput {
    if (!this.proc || !this.repl) throw new S0Error('process_not_running', `context ${this.id} has no REPL`)
    if (this.pending.length >= limits.contextPendingInputsMax)
      throw new S0Error('conflict', `context ${this.id} has ${this.pending.length} inputs still running`)
    let finish!: () => void
    const done = new Promise<void>((r) => (finish = r))
    const p: PendingInput = {
      token: `__S0_${randomBytes(8).toString('hex')}__`,
      requestId: opts.requestId,
      internal: opts.internal ?? false,
      seen: { stdout: false, stderr: false },
      output: new Collector(),
      done,
      finish,
    }
    this.pending.push(p)
    const text = data === '' || data.endsWith('\n') || data.endsWith('\r') ? data : data + '\n'
    this.proc.stdin.write(text + this.repl.sentinel(p.token))
    return p
  }

  private checkLive(): SandboxProcess {
    if (this.state !== 'running')
      throw new S0Error(
        'process_finished',
        `context ${this.id} has exited (${this.state}); restart it to run again`,
      )
    if (!this.proc) throw new S0Error('process_not_running', `context ${this.id} has no process`)
    return this.proc
  }

  /** `/exec`: REPL input until its sentinel, or cmd input until the process exits. */
  async exec(data: string, timeoutMs: number = limits.execTimeoutMsDefault): Promise<ExecOutput> {
    const proc = this.checkLive()
    this.touch()
    let collector: Collector
    let done: Promise<void>
    let unsubscribe = (): void => undefined
    if (this.repl) {
      const p = this.write(data)
      collector = p.output
      done = p.done
    } else {
      const c = new Collector()
      collector = c
      const listener = (f: Frame): void => {
        if (f.type === 'output') c.push(f.source, f.data)
      }
      this.subscribers.add(listener)
      unsubscribe = () => this.subscribers.delete(listener)
      proc.stdin.write(data)
      done = this.exited
    }
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)))
    try {
      if ((await Promise.race([done, timeout])) === 'timeout') {
        throw new S0Error('exec_timeout', `execution timed out after ${timeoutMs} ms`, {
          details: { output_raw: collector.raw.text() },
        })
      }
    } finally {
      clearTimeout(timer)
      unsubscribe()
    }
    return this.result(collector)
  }

  /** The whole process's output (cmd contexts). */
  result(c: Collector = this.output): ExecOutput {
    return {
      outputRaw: c.raw.text(),
      stdout: c.out.text(),
      stderr: c.err.text(),
      ...(this.exitCode === undefined ? {} : { exitCode: this.exitCode }),
      state: this.state,
    }
  }

  /** Waits for the process to end (cmd with wait_until_done). */
  async waitExit(): Promise<void> {
    await this.exited
  }

  /** Raw bytes to stdin; a REPL input from the WebSocket gets a sentinel and a `done` frame. */
  input(data: string, requestId?: string): void {
    const proc = this.checkLive()
    this.touch()
    if (this.repl && requestId !== undefined) this.write(data, { requestId })
    else proc.stdin.write(data)
  }

  async signal(sig: NodeJS.Signals): Promise<void> {
    const proc = this.checkLive()
    await proc.kill(sig)
    // An interrupted REPL may still print (python's newline after KeyboardInterrupt). An
    // internal sentinel behind the interrupted input soaks that up, so the next input's output
    // is its own: streams are read in order, and the interpreter prints it before reading on.
    if (this.repl && this.state === 'running' && this.pending.length < limits.contextPendingInputsMax) {
      const settle = this.write('', { internal: true })
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        settle.done,
        new Promise<void>((r) => (timer = setTimeout(r, limits.contextSignalSettleMs))),
      ])
      clearTimeout(timer)
    }
  }

  /** Kills the process (if any) and waits a bounded time for it to go. */
  async kill(): Promise<void> {
    for (const t of this.timers) clearTimeout(t)
    this.timers = []
    clearTimeout(this.idleTimer)
    const proc = this.proc
    if (!proc || this.state !== 'running') return
    // It may be gone already (kill races its exit); whether it ends is what the wait below checks.
    await proc.kill('SIGKILL').catch(() => undefined)
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, limits.contextKillWaitMs).unref())])
  }

  async restart(): Promise<void> {
    await this.kill()
    this.generation++ // late output of the old process is ignored
    await this.start()
  }

  /**
   * Attaches a WebSocket: a cmd context first replays what it printed so far; a finished
   * context then sends its terminal `done` at once. Returns the detach function.
   */
  attach(send: (f: Frame) => void): () => void {
    if (!this.repl) for (const f of this.replay.all) send(f)
    if (this.state !== 'running') {
      send({ type: 'done', exit_code: this.exitCode ?? -1, state: this.state })
      return () => undefined
    }
    if (this.subscribers.size >= limits.contextSubscribersMax)
      throw new S0Error('conflict', `context ${this.id} has too many streams attached`)
    this.subscribers.add(send)
    return () => this.subscribers.delete(send)
  }

  private touch(): void {
    const idleSec = this.opts.idleTimeoutSec
    if (!idleSec) return
    clearTimeout(this.idleTimer)
    this.idleTimer = setTimeout(() => void this.kill(), idleSec * 1000)
    this.idleTimer.unref()
  }

  private broadcast(f: Frame): void {
    if (!this.repl) this.replay.push(f)
    for (const s of this.subscribers) s(f)
  }

  private emit(source: StreamName, data: string, p: PendingInput | undefined): void {
    if (data === '') return
    if (p) p.output.push(source, data)
    else this.output.push(source, data)
    if (!p?.internal) {
      this.broadcast({ type: 'output', source, data })
      this.observer?.output(this, this.opts.ptySize ? 'pty' : source, data)
    }
  }

  /** A sentinel token ended the last chunk of this stream: drop the newline that follows it. */
  private readonly eatNewline: Record<StreamName, boolean> = { stdout: false, stderr: false }

  private onData(source: StreamName, text: string): void {
    if (!this.repl) return this.emit(source, text, undefined)
    let buf = this.hold[source] + text
    this.hold[source] = ''
    if (this.eatNewline[source] && buf !== '') {
      // The newline ending a sentinel line that arrived in a chunk of its own.
      this.eatNewline[source] = false
      buf = buf.replace(/^\r?\n/, '')
    }
    while (buf !== '') {
      const p = this.pending.find((x) => !x.seen[source])
      if (!p) return this.emit(source, buf, undefined)
      const i = buf.indexOf(p.token)
      if (i < 0) {
        const k = partialSuffix(buf, p.token)
        this.emit(source, buf.slice(0, buf.length - k), p)
        this.hold[source] = buf.slice(buf.length - k)
        return
      }
      this.emit(source, buf.slice(0, i), p)
      const rest = buf.slice(i + p.token.length)
      // The sentinel's own newline may come in the next chunk: it must not open the next input.
      if (rest === '') this.eatNewline[source] = true
      buf = rest.replace(/^\r?\n/, '')
      p.seen[source] = true
      if (p.seen.stdout && p.seen.stderr) this.finishInput(p)
    }
  }

  private finishInput(p: PendingInput): void {
    this.pending = this.pending.filter((x) => x !== p)
    p.finish()
    if (p.requestId !== undefined) this.broadcast({ type: 'done', request_id: p.requestId })
  }

  private onExit(exitCode: number | null, signal: NodeJS.Signals | null): void {
    for (const source of ['stdout', 'stderr'] as const) {
      const rest = this.hold[source]
      this.hold[source] = ''
      this.emit(
        source,
        rest,
        this.pending.find((x) => !x.seen[source]),
      )
    }
    this.state = stateOf(exitCode, signal)
    this.exitCode = exitCode ?? (this.state === 'killed' ? 137 : -1)
    for (const p of this.pending) p.finish()
    this.pending = []
    for (const t of this.timers) clearTimeout(t)
    clearTimeout(this.idleTimer)
    this.broadcast({ type: 'done', exit_code: this.exitCode, state: this.state })
    this.subscribers.clear()
    this.observer?.exited(this, this.exitCode, this.state)
  }
}
