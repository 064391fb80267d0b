// Our side of the sync suite: `s0 sync` run as a real child process, one pass (`--once --json`)
// or live (until SIGINT), with S0_API_URL / S0_TOKEN pointing at the bench's server. Which
// program answers to `s0` is S0_BENCH_SYNC_CLI: `source` (default: the CLI from this checkout
// through tsx) or `dist` (bin/s0.js, after `npm run build`: startup as installed).
import { spawn } from 'node:child_process'
import path from 'node:path'
import { BENCH_DIR, median, REPO_DIR, runCmd, secondsSince, type CmdResult } from '../lib.js'

export type CliMode = 'source' | 'dist'

/** What `s0 sync --once --json` prints (the client's contract). */
export interface OnceReport {
  pushed_files: number
  pulled_files: number
  bytes_sent: number
  bytes_received: number
  conflicts: number
  seconds: number
}

export interface OnceRun {
  /** Wall time of the whole command, process start to exit. */
  wallSeconds: number
  report: OnceReport
}

export interface LiveSync {
  /** Seconds from spawn to the `s0 sync: live` line (the initial pass). */
  readySeconds: number
  /** SIGINT, then the exit (SIGKILL after STOP_TIMEOUT_MS). */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Whether it is still running (a live client that exits on its own is a failure). */
  running(): boolean
  stderrTail(): string
}

export interface SyncClient {
  readonly mode: CliMode
  /** `error` says why `s0` cannot sync (no sync command); also measures the CLI's startup. */
  check(): Promise<{ error?: string; startupSeconds: number }>
  once(dir: string, target: string, opts?: { initFrom?: 'local' | 'remote' }): Promise<OnceRun>
  live(dir: string, target: string): Promise<LiveSync>
}

export const LIVE_LINE = 's0 sync: live'
/** A single pass over the suite's trees that takes longer is hung. */
const ONCE_TIMEOUT_MS = 60 * 60_000
const LIVE_READY_TIMEOUT_MS = 60 * 60_000
const STOP_TIMEOUT_MS = 30_000
const OUTPUT_TAIL_BYTES = 64 * 1024
const STARTUP_RUNS = 3
const REPORT_FIELDS = [
  'pushed_files',
  'pulled_files',
  'bytes_sent',
  'bytes_received',
  'conflicts',
  'seconds',
] as const

export function cliMode(env: NodeJS.ProcessEnv = process.env): CliMode {
  const v = env['S0_BENCH_SYNC_CLI'] ?? 'source'
  if (v !== 'source' && v !== 'dist')
    throw new Error(`S0_BENCH_SYNC_CLI must be source or dist, got ${JSON.stringify(v)}`)
  return v
}

/** argv (after node) that runs `s0` in `mode`. */
function s0Argv(mode: CliMode): string[] {
  if (mode === 'dist') return [path.join(REPO_DIR, 'bin', 's0.js')]
  const entry = 's0-cli.ts'
  return ['--import', 'tsx', path.join(BENCH_DIR, 'sync', entry)]
}

export function parseReport(stdout: string): OnceReport {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .pop()
  if (line === undefined) throw new Error(`no JSON object on stdout: ${stdout.slice(-500)}`)
  const obj = JSON.parse(line) as Record<string, unknown>
  for (const k of REPORT_FIELDS)
    if (typeof obj[k] !== 'number') throw new Error(`--json report has no number ${k}: ${line}`)
  return obj as unknown as OnceReport
}

function tail(s: string): string {
  return s.length > OUTPUT_TAIL_BYTES ? s.slice(-OUTPUT_TAIL_BYTES) : s
}

export function cliSyncClient(conn: { url: string; token: string }, mode: CliMode = cliMode()): SyncClient {
  const argv = s0Argv(mode)
  const env = { ...process.env, S0_API_URL: conn.url, S0_TOKEN: conn.token }
  const opts = { env, cwd: REPO_DIR } // tsx resolves from the repository

  return {
    mode,
    async check() {
      const times: number[] = []
      let r: CmdResult | undefined
      for (let i = 0; i < STARTUP_RUNS; i++) {
        r = await runCmd(process.execPath, [...argv, '--help'], opts)
        if (r.code !== 0) break
        times.push(r.seconds)
      }
      const startupSeconds = median(times)
      if (!r || r.code !== 0)
        return {
          error: `\`s0 --help\` (${mode}) exited ${r?.code}: ${r?.stderr.slice(-500)}`,
          startupSeconds,
        }
      // usage() lists one command a line: `  <name>  <summary>`.
      if (!/^\s+sync\s/m.test(r.stdout))
        return { error: `\`s0 --help\` (${mode}) lists no sync command`, startupSeconds }
      return { startupSeconds }
    },

    async once(dir, target, o = {}) {
      const args = ['sync', dir, target, '--once', '--json']
      if (o.initFrom) args.push('--init-from', o.initFrom)
      const t0 = process.hrtime.bigint()
      const r = await spawnBounded([...argv, ...args], opts, ONCE_TIMEOUT_MS)
      const wallSeconds = secondsSince(t0)
      if (r.code !== 0) throw new Error(`s0 ${args.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}`)
      return { wallSeconds, report: parseReport(r.stdout) }
    },

    live(dir, target) {
      return startLive([...argv, 'sync', dir, target], opts)
    },
  }
}

/** Runs node with `args`, killing it (SIGKILL) after `timeoutMs`. */
function spawnBounded(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string },
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout = tail(stdout + d.toString())))
    child.stderr.on('data', (d: Buffer) => (stderr = tail(stderr + d.toString())))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })
    })
  })
}

function startLive(args: string[], opts: { env: NodeJS.ProcessEnv; cwd: string }): Promise<LiveSync> {
  const t0 = process.hrtime.bigint()
  const child = spawn(process.execPath, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve((exit = { code, signal }))),
  )
  child.stdout.resume() // drained: nothing is expected there in live mode
  const live: LiveSync = {
    readySeconds: NaN,
    running: () => exit === undefined,
    stderrTail: () => stderr,
    async stop() {
      if (exit) return exit
      child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
      const r = await exited
      clearTimeout(timer)
      return r
    },
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void live.stop() // the error below is what matters; stop() cannot fail
      reject(
        new Error(`s0 sync: no "${LIVE_LINE}" within ${LIVE_READY_TIMEOUT_MS} ms: ${stderr.slice(-2000)}`),
      )
    }, LIVE_READY_TIMEOUT_MS)
    let ready = false
    child.stderr.on('data', (d: Buffer) => {
      stderr = tail(stderr + d.toString())
      if (!ready && stderr.includes(LIVE_LINE)) {
        ready = true
        clearTimeout(timer)
        live.readySeconds = secondsSince(t0)
        resolve(live)
      }
    })
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    void exited.then(({ code, signal }) => {
      if (ready) return // a later exit is the caller's to notice, through running()
      clearTimeout(timer)
      reject(new Error(`s0 sync exited (${code ?? signal}) before "${LIVE_LINE}": ${stderr.slice(-2000)}`))
    })
  })
}
