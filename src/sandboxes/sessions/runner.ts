// One session's process while its sandbox runs on this server: starts attempts through the
// host's spawner, journals their output, start, readiness and exit, restarts by the policy
// (exponential backoff, at most max_restarts per window_seconds, then `failed`), stops with
// SIGTERM then SIGKILL after the grace period, and ends its process when the sandbox stops
// (`suspended`; the manager recovers it when the sandbox runs again).
import { randomHexId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { SandboxProcess } from '../../runtime/sandbox-runtime.js'
import type { NewEvent, SessionJournal } from './journal.js'
import type { SessionRow, SessionStore } from './store.js'

/** Starts a process in a sandbox: the host's spawner, with a terminal when asked. */
export type SessionSpawner = (
  sandboxId: string,
  argv: readonly string[],
  opts: { env: Record<string, string>; cwd?: string; timeoutMs: number; tty?: boolean },
) => Promise<SandboxProcess>

export interface RunnerDeps {
  store: SessionStore
  journal: SessionJournal
  spawn: SessionSpawner
  log: Logger
}

export class SessionRunner {
  proc: SandboxProcess | undefined
  private timers = new Set<NodeJS.Timeout>()
  private stopping: { reason: string; kill?: NodeJS.Timeout } | undefined
  /** Set once the sandbox stops: nothing starts again in this runner. */
  private ended = false
  /** A new attempt waits for the current one to end (attempts with replace_current). */
  private replaceNext = false
  /** When each restart of the current window happened (ms). */
  private restarts: number[] = []
  private exitReason: string | undefined
  private exited: Promise<void> = Promise.resolve()

  constructor(
    public row: SessionRow,
    private readonly deps: RunnerDeps,
  ) {}

  get attemptId(): string | undefined {
    return this.row.attempt?.id
  }

  get running(): boolean {
    return this.proc !== undefined
  }

  private event(ev: Omit<NewEvent, 'runtimeGeneration' | 'attemptId'>, now = true): Promise<void> {
    return this.deps.journal.append(
      this.row.id,
      {
        ...ev,
        runtimeGeneration: this.row.runtimeGeneration,
        ...(this.row.attempt ? { attemptId: this.row.attempt.id } : {}),
      },
      { now },
    )
  }

  private async persist(): Promise<void> {
    await this.deps.store.setRuntime(this.row).catch((err: unknown) => {
      this.deps.log.warn('session state not saved', { sessionId: this.row.id, err })
    })
  }

  private timer(ms: number, fn: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t)
      fn()
    }, ms)
    t.unref()
    this.timers.add(t)
    return t
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }

  /** A new attempt now, in the sandbox's `generation`. */
  async start(generation: number, reason: string): Promise<void> {
    if (this.ended) return
    this.clearTimers()
    this.stopping = undefined
    this.exitReason = undefined
    const spec = this.row.spec
    const number = this.row.attempts + 1
    this.row = {
      ...this.row,
      runtimeGeneration: generation,
      attempts: number,
      phase: 'starting',
      attempt: {
        id: `att_${randomHexId(8)}`,
        number,
        runtime_generation: generation,
        started_at: new Date().toISOString(),
      },
    }
    await this.persist()
    await this.event({ type: 'starting', reason })
    const attemptId = this.attemptId
    const pty = spec.io.mode === 'pty'
    let proc: SandboxProcess
    try {
      proc = await this.deps.spawn(this.row.sandboxId, spec.command, {
        env: { ...(pty ? { TERM: spec.io.terminal?.term ?? 'xterm' } : {}), ...spec.env },
        ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}),
        timeoutMs:
          spec.lifecycle.max_lifetime_seconds > 0
            ? Math.min(spec.lifecycle.max_lifetime_seconds * 1000, limits.execTimeoutMsMax)
            : limits.execTimeoutMsMax,
        ...(pty ? { tty: true } : {}),
      })
    } catch (err) {
      if (this.attemptId !== attemptId) return
      this.exitReason = `start_failed: ${(err as Error).message}`.slice(0, 1000)
      await this.onExit(-1)
      return
    }
    if (this.ended || this.attemptId !== attemptId) {
      await proc.kill('SIGKILL').catch(() => undefined)
      return
    }
    this.proc = proc
    proc.stdin.on('error', () => undefined) // EPIPE once the process is gone
    // Queued before any output (the journal keeps append order); listeners go on before any
    // await so no early output is missed.
    const started = this.event({ type: 'started' })
    // A chunk is at most a quarter of the retention cap, so trimming always keeps the newest output.
    const chunk = Math.max(
      1,
      Math.min(limits.sessionOutputChunkBytes, Math.floor(spec.event_retention.max_bytes / 4)),
    )
    for (const stream of ['stdout', 'stderr'] as const)
      proc[stream].on('data', (b: Buffer) => {
        if (this.attemptId !== attemptId) return
        this.touch()
        for (let i = 0; i < b.length; i += chunk)
          void this.event(
            {
              type: 'output',
              stream: pty ? 'pty' : stream,
              data: b.subarray(i, i + chunk),
            },
            false,
          )
      })
    this.watchReadiness(proc)
    this.touch()
    this.exited = proc.wait().then(
      (res) => this.onExit(res.exitCode ?? (res.signal ? 128 + 9 : -1), proc),
      () => this.onExit(-1, proc),
    )
    if (pty && spec.io.terminal)
      await proc.resize(spec.io.terminal.rows, spec.io.terminal.cols).catch(() => undefined)
    await started
  }

  private watchReadiness(proc: SandboxProcess): void {
    const r = this.row.spec.readiness
    const attemptId = this.attemptId
    const ready = (): void => {
      if (this.proc !== proc || this.row.phase !== 'starting' || this.attemptId !== attemptId) return
      this.row = { ...this.row, phase: 'running' }
      void this.persist()
      void this.event({ type: 'ready' })
    }
    if (r.type === 'process') return ready()
    if (r.type === 'delay') this.timer(r.delay_ms ?? 0, ready)
    if (r.type === 'output' && r.output) {
      const want = r.output
      let seen = ''
      for (const s of [proc.stdout, proc.stderr])
        s.on('data', (b: Buffer) => {
          if (this.row.phase !== 'starting') return
          seen = (seen + b.toString('utf8')).slice(-Math.max(4096, want.length * 2))
          if (seen.includes(want)) ready()
        })
    }
    if (r.timeout_ms !== undefined)
      this.timer(r.timeout_ms, () => {
        if (this.proc !== proc || this.row.phase !== 'starting') return
        this.exitReason = 'readiness_timeout'
        void this.event({ type: 'readiness_timeout', reason: `not ready within ${r.timeout_ms} ms` })
        void proc.kill('SIGKILL').catch(() => undefined)
      })
  }

  /** Activity (output, input): the idle timer starts again. */
  touch(): void {
    const idle = this.row.spec.lifecycle.idle_timeout_seconds
    if (idle <= 0 || !this.proc) return
    const proc = this.proc
    for (const t of this.timers) if ((t as NodeJS.Timeout & { idle?: boolean }).idle) this.dropTimer(t)
    const t = this.timer(idle * 1000, () => {
      if (this.proc === proc) void this.stop('idle_timeout')
    }) as NodeJS.Timeout & { idle?: boolean }
    t.idle = true
  }

  private dropTimer(t: NodeJS.Timeout): void {
    clearTimeout(t)
    this.timers.delete(t)
  }

  private async onExit(code: number, proc?: SandboxProcess): Promise<void> {
    if (proc && this.proc !== proc) return
    this.proc = undefined
    this.clearTimers()
    const reason =
      this.exitReason ??
      this.stopping?.reason ??
      (this.ended ? 'sandbox_stopped' : code === 0 ? 'exited' : 'failed')
    if (this.row.attempt)
      this.row.attempt = {
        ...this.row.attempt,
        finished_at: new Date().toISOString(),
        exit_code: code,
        reason,
      }
    await this.event({ type: 'exited', exitCode: code, reason })
    if (this.ended) return
    if (this.stopping) {
      clearTimeout(this.stopping.kill)
      this.stopping = undefined
      if (this.replaceNext) {
        this.replaceNext = false
        return this.start(this.row.runtimeGeneration, 'replace_current')
      }
      this.row = { ...this.row, phase: 'stopped' }
      await this.persist()
      await this.event({ type: 'stopped', reason })
      return
    }
    const r = this.row.spec.lifecycle.restart
    const restart = r.policy === 'always' || (r.policy === 'on_failure' && code !== 0)
    if (!restart || this.row.spec.lifecycle.desired_state !== 'running') {
      this.row = { ...this.row, phase: 'exited' }
      await this.persist()
      return
    }
    const now = Date.now()
    this.restarts = this.restarts.filter((t) => now - t < r.window_seconds * 1000)
    if (this.restarts.length >= r.max_restarts) {
      this.row = { ...this.row, phase: 'failed' }
      await this.persist()
      await this.event({
        type: 'failed',
        reason: `restart budget exhausted: ${r.max_restarts} restarts within ${r.window_seconds} s`,
      })
      return
    }
    const delay = Math.min(r.initial_backoff_ms * 2 ** this.restarts.length, r.max_backoff_ms)
    this.restarts.push(now)
    this.row = { ...this.row, phase: 'backoff', restartCount: this.row.restartCount + 1 }
    await this.persist()
    await this.event({ type: 'backoff', reason: `restarting in ${delay} ms (exit code ${code})` })
    this.timer(delay, () => void this.start(this.row.runtimeGeneration, 'restart'))
  }

  /** desired_state stopped (or a timeout): SIGTERM, then SIGKILL after the grace period. */
  async stop(reason: string): Promise<void> {
    this.clearTimers()
    const proc = this.proc
    if (!proc) {
      if (this.row.phase !== 'stopped') {
        this.row = { ...this.row, phase: 'stopped' }
        await this.persist()
        await this.event({ type: 'stopped', reason })
      }
      return
    }
    if (this.stopping) return
    this.stopping = { reason }
    this.row = { ...this.row, phase: 'stopping' }
    await this.persist()
    await this.event({ type: 'stopping', reason })
    await proc.kill('SIGTERM').catch(() => undefined)
    const grace = this.row.spec.lifecycle.stop_grace_period_seconds * 1000
    this.stopping.kill = setTimeout(() => void proc.kill('SIGKILL').catch(() => undefined), grace)
    this.stopping.kill.unref()
  }

  /** A new attempt: now if none runs; after the current one ends with `replace`. */
  async newAttempt(replace: boolean): Promise<void> {
    if (!this.proc) return this.start(this.row.runtimeGeneration, 'attempt')
    if (!replace) return
    this.replaceNext = true
    await this.stop('replace_current')
  }

  /** The sandbox stops (pause, delete, server shutdown): the process ends, the session is `suspended`. */
  async suspend(reason: string): Promise<void> {
    this.ended = true
    this.clearTimers()
    if (this.stopping) clearTimeout(this.stopping.kill)
    const proc = this.proc
    if (proc) {
      await proc.kill('SIGKILL').catch(() => undefined)
      await Promise.race([this.exited, new Promise((r) => setTimeout(r, limits.execKillGraceMs).unref())])
      this.proc = undefined
    }
    const active = ['pending', 'starting', 'running', 'backoff', 'stopping'].includes(this.row.phase)
    if (!active) return
    this.row = { ...this.row, phase: 'suspended' }
    await this.persist()
    await this.event({ type: 'suspended', reason })
  }

  /** The session is deleted: its process goes, nothing is journaled. */
  async discard(): Promise<void> {
    this.ended = true
    this.clearTimers()
    await this.proc?.kill('SIGKILL').catch(() => undefined)
    this.proc = undefined
  }
}
