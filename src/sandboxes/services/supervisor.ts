// Runs the `cmd` and `function` services of the sandboxes this server runs: starts each in its
// sandbox when the sandbox starts (claim, resume, fork, warm claim) or its services change,
// restarts one that exits (backoff 0.5 s doubling to 30 s, reset after a minute of running),
// and stops them with the sandbox. Their output is not kept beyond a small tail, which the
// services view reports when one keeps failing.
import { createHash } from 'node:crypto'
import type { SandboxId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { SandboxProcess } from '../../runtime/sandbox-runtime.js'
import type { Spawner } from '../contexts/types.js'
import { FUNCTION_RUNNER } from './function-runner.js'
import type { AppService } from './model.js'

export interface ProcessState {
  /** running: up now; backoff: exited, restarting at `restartAt`; failed: could not be started. */
  state: 'running' | 'backoff' | 'failed'
  restarts: number
  lastExitCode: number | null
  /** The end of what it printed last (for the blockers). */
  tail: string
  restartAt?: number
  error?: string
}

const TAIL_BYTES = 2048

interface Supervised {
  key: string
  service: AppService
  proc: SandboxProcess | undefined
  status: ProcessState
  stopped: boolean
  timer: NodeJS.Timeout | undefined
  backoffMs: number
}

/** What a supervised service is: its spec as far as the process goes (a change restarts it). */
function processKey(s: AppService): string {
  return createHash('sha256')
    .update(JSON.stringify([s.port, s.runtime]))
    .digest('hex')
}

export class ServiceSupervisor {
  private readonly bySandbox = new Map<SandboxId, Map<string, Supervised>>()

  constructor(
    private readonly spawn: Spawner,
    private readonly log: Logger,
  ) {}

  /**
   * Makes the sandbox run exactly its supervised services: new or changed ones start, removed
   * or changed ones stop. `env` is the sandbox's own environment (its config's env_vars).
   */
  async apply(id: SandboxId, services: readonly AppService[], env: Record<string, string>): Promise<void> {
    let map = this.bySandbox.get(id)
    if (!map) this.bySandbox.set(id, (map = new Map()))
    const wanted = new Map(
      services
        .filter((s) => s.runtime?.type === 'cmd' || s.runtime?.type === 'function')
        .map((s) => [s.id, s]),
    )
    for (const [sid, sup] of [...map]) {
      const want = wanted.get(sid)
      if (!want || processKey(want) !== sup.key) {
        map.delete(sid)
        await this.stopOne(sup)
      }
    }
    for (const [sid, s] of wanted) {
      if (map.has(sid)) continue
      const sup: Supervised = {
        key: processKey(s),
        service: s,
        proc: undefined,
        status: { state: 'backoff', restarts: 0, lastExitCode: null, tail: '' },
        stopped: false,
        timer: undefined,
        backoffMs: limits.serviceRestartBackoffMinMs,
      }
      map.set(sid, sup)
      await this.startOne(id, sup, env)
    }
  }

  /** The state of a supervised service of a sandbox this server runs; undefined if none. */
  status(id: SandboxId, serviceId: string): ProcessState | undefined {
    return this.bySandbox.get(id)?.get(serviceId)?.status
  }

  /** Stops every supervised process of the sandbox (it stops, pauses or goes). */
  async stop(id: SandboxId): Promise<void> {
    const map = this.bySandbox.get(id)
    this.bySandbox.delete(id)
    await Promise.all([...(map?.values() ?? [])].map((s) => this.stopOne(s)))
  }

  async close(): Promise<void> {
    await Promise.all([...this.bySandbox.keys()].map((id) => this.stop(id)))
  }

  private async startOne(id: SandboxId, sup: Supervised, env: Record<string, string>): Promise<void> {
    if (sup.stopped) return
    const s = sup.service
    const rt = s.runtime
    const started = Date.now()
    let proc: SandboxProcess
    try {
      const argv = rt?.type === 'function' ? ['python3', '-c', FUNCTION_RUNNER] : [...(rt?.command ?? [])]
      proc = await this.spawn(id, argv, {
        env: {
          ...env,
          ...rt?.env_vars,
          ...(rt?.type === 'function'
            ? {
                S0_FUNCTION_PORT: String(s.port),
                S0_FUNCTION_HANDLER: rt.function?.handler ?? 'handler',
                S0_FUNCTION_MAX_CONCURRENCY: String(rt.function?.max_concurrency ?? 0),
              }
            : {}),
        },
        ...(rt?.cwd !== undefined ? { cwd: rt.cwd } : {}),
        timeoutMs: limits.execTimeoutMsMax,
      })
    } catch (err) {
      // The sandbox is stopping, or the command cannot start (no such binary is an exit code,
      // not this): retried like an exit.
      sup.status = { ...sup.status, state: 'failed', error: (err as Error).message }
      this.scheduleRestart(id, sup, env)
      return
    }
    if (sup.stopped) {
      await proc.kill('SIGKILL').catch(() => undefined)
      return
    }
    sup.proc = proc
    sup.status = { ...sup.status, state: 'running' }
    delete sup.status.error
    delete sup.status.restartAt
    const keepTail = (chunk: Buffer): void => {
      sup.status.tail = (sup.status.tail + chunk.toString('utf8')).slice(-TAIL_BYTES)
    }
    proc.stdout.on('data', keepTail)
    proc.stderr.on('data', keepTail)
    if (rt?.type === 'function') {
      // The runner reads the handler's source from stdin (it may be larger than an argument).
      proc.stdin.on('error', () => undefined)
      proc.stdin.end(rt.function?.source.code ?? '')
    } else proc.stdin.end()
    void proc.wait().then(
      (res) => {
        sup.proc = undefined
        if (sup.stopped) return
        sup.status.lastExitCode = res.exitCode
        if (Date.now() - started >= limits.serviceRestartResetAfterMs)
          sup.backoffMs = limits.serviceRestartBackoffMinMs
        this.log.info('service exited', { sandboxId: id, service: s.id, exitCode: res.exitCode })
        this.scheduleRestart(id, sup, env)
      },
      () => undefined,
    )
  }

  private scheduleRestart(id: SandboxId, sup: Supervised, env: Record<string, string>): void {
    if (sup.stopped) return
    const wait = sup.backoffMs
    sup.backoffMs = Math.min(sup.backoffMs * 2, limits.serviceRestartBackoffMaxMs)
    sup.status = {
      ...sup.status,
      state: sup.status.state === 'failed' ? 'failed' : 'backoff',
      restartAt: Date.now() + wait,
    }
    sup.timer = setTimeout(() => {
      sup.timer = undefined
      sup.status.restarts++
      void this.startOne(id, sup, env)
    }, wait)
    sup.timer.unref()
  }

  private async stopOne(sup: Supervised): Promise<void> {
    sup.stopped = true
    clearTimeout(sup.timer)
    const proc = sup.proc
    sup.proc = undefined
    if (proc) {
      await proc.kill('SIGTERM').catch(() => undefined)
      // A process that ignores SIGTERM does not hold the sandbox up.
      const t = setTimeout(() => void proc.kill('SIGKILL').catch(() => undefined), 2_000)
      t.unref()
      await proc.wait().catch(() => undefined)
      clearTimeout(t)
    }
  }
}
