// What the sandboxes bench suites share: the server under test, API calls, timing and stats.
import { spawn } from 'node:child_process'
import type { SandboxService } from '../src/sandboxes/index.js'
import type { Db } from '../src/core/db.js'
import type { DriverName } from '../src/runtime/driver.js'
import { median, round } from './lib.js'

/** A bare `run` or `exec` that takes longer than this is a hung runtime, not a data point. */
export const BARE_TIMEOUT_MS = 60_000

export interface Env {
  db: Db
  url: string
  token: string
  svc: SandboxService
  /** SandboxService state: `<runtimeDir>/<driver>/{<driver>,sandboxes/<id>}`. */
  runtimeDir: string
  work: string
  tag: string
}

export function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6
}

export function pct(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(s.length * p) - 1))] as number
}

export function stats(xs: readonly number[]): Record<string, number> {
  return {
    runs: xs.length,
    median: round(median(xs)),
    p95: round(pct(xs, 0.95)),
    min: round(Math.min(...xs)),
    max: round(Math.max(...xs)),
  }
}

export async function api<T>(env: Env, method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(env.url + url, {
    method,
    headers: {
      authorization: `Bearer ${env.token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const json = (await res.json()) as { data?: T; error?: { code: string; message: string } }
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${json.error?.code}: ${json.error?.message}`)
  return json.data as T
}

export interface CmdOut {
  stdout: string
  exit_code?: number
}

export async function claim(env: Env, template: string): Promise<{ id: string }> {
  const r = await api<{ sandbox_id: string }>(env, 'POST', '/api/v1/sandboxes', { template })
  return { id: r.sandbox_id }
}

export async function cmd(env: Env, id: string, command: string[]): Promise<CmdOut> {
  const r = await api<CmdOut>(env, 'POST', `/api/v1/sandboxes/${id}/contexts`, {
    type: 'cmd',
    cmd: { command },
    wait_until_done: true,
  })
  if (r.exit_code !== 0) throw new Error(`${command.join(' ')} in ${id}: exit ${r.exit_code}`)
  return r
}

/** argv of the runtime CLI as our drivers call it (minus runsc's network wrapper). */
export function runtimeArgv(
  driver: DriverName,
  root: string,
  args: string[],
  runscNetwork = 'sandbox',
): string[] {
  const global = ['--root', root]
  if (driver === 'runsc')
    global.push('--platform=ptrace', `--network=${runscNetwork}`, '--file-access=shared')
  return [driver, ...global, ...args]
}

/**
 * Spawns argv; resolves with the time to the first stdout byte and to exit. Throws unless it
 * exits 0 with `expect` in its output.
 */
export function timeProcess(
  argv: string[],
  opts: { expect: string },
): Promise<{ firstByteMs: number; exitMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    let firstByteMs = -1
    let out = ''
    let err = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), BARE_TIMEOUT_MS)
    child.stdout.on('data', (b: Buffer) => {
      if (firstByteMs < 0) firstByteMs = ms(t0)
      out += b.toString()
    })
    child.stderr.on('data', (b: Buffer) => (err += b.toString()))
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      if (code !== 0 || !out.includes(opts.expect))
        reject(new Error(`${argv.slice(0, 6).join(' ')}: exit ${code}, out ${out.trim()}, err ${err.trim()}`))
      else resolve({ firstByteMs, exitMs: ms(t0) })
    })
  })
}
