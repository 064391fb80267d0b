// One process exec'd into a sandbox, as callers hold it: its stdio, and a wait() that ends in
// exit code, timeout, abort or OOM. Also the host-side look at whether a process is alive.
import type { Readable, Writable } from 'node:stream'
import { readFile } from 'node:fs/promises'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { ExecChild } from './driver.js'
import { resizeExecTerminal } from './pty-resize.js'

export interface ExecOptions {
  env?: Record<string, string>
  cwd?: string
  tty?: boolean
  /** With `tty`: the terminal's size from the start (an SSH client's window). */
  ttySize?: { rows: number; cols: number }
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
  /** A terminal exec's window size (rows, columns); `not_supported` for a process on pipes. */
  resize(rows: number, cols: number): Promise<void>
}

export interface RunResult extends ExecResult {
  stdout: string
  stderr: string
  /** Bytes beyond the output cap, dropped. */
  droppedBytes: number
}

export interface ExecHandleOptions {
  timeoutMs: number
  startedAt: number
  signal?: AbortSignal
  /** Asked once the process is gone: did the sandbox's OOM killer fire meanwhile? */
  oomKilled: () => Promise<boolean>
  /** The process runs on a terminal (ExecSpec.tty): it can be resized. */
  tty?: boolean
}

/** Timeout, abort and OOM bookkeeping around the driver's child. */
export class ExecHandle implements SandboxProcess {
  readonly stdin: Writable
  readonly stdout: Readable
  readonly stderr: Readable
  private readonly done: Promise<ExecResult>
  private readonly tty: boolean

  constructor(
    private readonly ec: ExecChild,
    opts: ExecHandleOptions,
  ) {
    const child = ec.child
    if (!child.stdin || !child.stdout || !child.stderr) throw new Error('exec child without pipes')
    this.stdin = child.stdin
    this.stdout = child.stdout
    this.stderr = child.stderr
    this.tty = opts.tty ?? false
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      this.killQuietly()
    }, opts.timeoutMs)
    const onAbort = (): void => this.killQuietly()
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    this.done = new Promise((resolve, reject) => {
      child.on('error', (e) => {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        reject(new S0Error('runtime_unavailable', `exec failed: ${e.message}`, { cause: e }))
      })
      child.on('close', (code, signal) => {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        const result = (oomKilled: boolean): ExecResult => ({
          exitCode: code,
          signal,
          timedOut,
          oomKilled,
          durationMs: Date.now() - opts.startedAt,
        })
        // A cgroup that cannot be read (the sandbox is being deleted) reports no OOM.
        opts.oomKilled().then(
          (oom) => resolve(result(oom)),
          () => resolve(result(false)),
        )
      })
    })
  }

  wait(): Promise<ExecResult> {
    return this.done
  }

  async resize(rows: number, cols: number): Promise<void> {
    if (!this.tty) throw new S0Error('not_supported', 'the process has no terminal to resize')
    if (this.ec.resize) return this.ec.resize(rows, cols) // the driver's own way (containerd)
    const pid = this.ec.child.pid
    if (pid !== undefined && this.ec.child.exitCode === null) await resizeExecTerminal(pid, rows, cols)
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.ec.kill(signal)
    // If the process left children holding our pipes, stop waiting on them after a grace period.
    setTimeout(() => {
      if (this.ec.child.exitCode === null) this.ec.child.kill('SIGKILL')
    }, limits.execKillGraceMs).unref()
  }

  /**
   * A kill from a timer or an abort, where nobody awaits it: if the runtime cannot signal the
   * process (the container is gone), the client is killed so wait() still ends.
   */
  private killQuietly(): void {
    this.kill('SIGKILL').catch(() => {
      if (this.ec.child.exitCode === null) this.ec.child.kill('SIGKILL')
    })
  }
}

/**
 * True if the process exists and is not a zombie. runsc's sandbox process is re-parented to the
 * host's init, which may reap it late: a dead sentry can linger as a zombie, and kill(pid, 0)
 * succeeds on zombies.
 */
export async function pidAlive(pid: number): Promise<boolean> {
  if (pid <= 0) return false
  let stat: string
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return false // no such process (ENOENT, or ESRCH when it exits while being read)
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  return state !== '' && state !== 'Z' && state !== 'X'
}
