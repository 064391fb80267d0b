// Shared bench helpers: machine description, medians, timing, child processes, result files in the
// format of docs "bench-format" (bench/results/<suite>.json, plus a markdown table appended to
// bench/results/<suite>.md).
import { execFile, spawn } from 'node:child_process'
import { appendFile, mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { openDb, type Db } from '../src/core/db.js'
import { startEmbeddedPg } from '../src/core/embedded-pg.js'
import type { Logger } from '../src/core/log.js'
import { migrate } from '../src/core/migrate.js'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url))
export const REPO_DIR = path.resolve(BENCH_DIR, '..')
export const RESULTS_DIR = path.join(BENCH_DIR, 'results')

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

export interface Machine {
  cpus: number
  memGiB: number
  kernel: string
  node: string
  cpuModel: string
}

export interface Baseline {
  name: string
  value?: number
  unit?: string
  error?: string
}

export interface Target {
  ratio?: number
  value?: number
}

export interface Figure {
  name: string
  value: number
  unit: string
  baseline: Baseline
  ratio: number | null
  higherIsBetter: boolean
  target: Target
  detail: Record<string, unknown>
}

export interface SuiteResult {
  suite: string
  commit: string
  machine: Machine
  startedAt: string
  figures: Figure[]
}

export function machineInfo(): Machine {
  return {
    cpus: os.cpus().length,
    memGiB: round(os.totalmem() / GiB, 1),
    kernel: os.release(),
    node: process.version,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
  }
}

export async function gitCommit(): Promise<string> {
  try {
    const { stdout } = await execFileAsync('git', ['rev-parse', 'HEAD'], { cwd: REPO_DIR })
    const sha = stdout.trim()
    return /^[0-9a-f]{40}$/.test(sha) ? sha : 'uncommitted'
  } catch {
    return 'uncommitted' // no git or no repository: the results say so instead of failing the run
  }
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

export function round(x: number, digits = 2): number {
  if (!Number.isFinite(x)) return x
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** Repeated-run summary: runs, min, max (rounded). */
export function spread(
  xs: readonly number[],
  digits = 2,
): { runs: number; min: number | null; max: number | null } {
  if (xs.length === 0) return { runs: 0, min: null, max: null }
  return { runs: xs.length, min: round(Math.min(...xs), digits), max: round(Math.max(...xs), digits) }
}

/** Seconds since `start` (a process.hrtime.bigint() value). */
export function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9
}

export async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const t0 = process.hrtime.bigint()
  const result = await fn()
  return { seconds: secondsSince(t0), result }
}

export function mibPerSec(bytes: number, seconds: number): number {
  return bytes / MiB / seconds
}

import { freePort } from '../tools/free-port.js'
export { freePort }

export interface CmdResult {
  code: number
  stdout: string
  stderr: string
  seconds: number
}

/** Runs a command to completion, capturing output (bounded) and wall time. Never throws on exit code. */
export async function runCmd(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; stdoutMaxBytes?: number } = {},
): Promise<CmdResult> {
  const max = opts.stdoutMaxBytes ?? 64 * MiB
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint()
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    let outBytes = 0
    let errBytes = 0
    child.stdout.on('data', (d: Buffer) => {
      if (outBytes < max) out.push(d)
      outBytes += d.length
    })
    child.stderr.on('data', (d: Buffer) => {
      if (errBytes < MiB) err.push(d)
      errBytes += d.length
    })
    child.once('error', reject)
    child.once('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        seconds: secondsSince(t0),
      })
    })
  })
}

/** Throws with the command's stderr unless it exited 0. */
export function mustSucceed(r: CmdResult, what: string): CmdResult {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${(r.stderr || r.stdout).slice(-2000)}`)
  return r
}

export async function commandExists(cmd: string): Promise<boolean> {
  const r = await runCmd('sh', ['-c', `command -v ${cmd}`]).catch(() => undefined) // no sh: not there
  return r?.code === 0
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** Builds a figure, computing the ratio from the baseline when it has a value. */
export function figure(f: Omit<Figure, 'ratio' | 'value'> & { value: number }): Figure {
  const b = f.baseline.value
  const ratio =
    b !== undefined &&
    b !== 0 &&
    Number.isFinite(b) &&
    Number.isFinite(f.value) &&
    f.baseline.error === undefined
      ? round(f.value / b, 3)
      : null
  return { ...f, value: round(f.value, 2), ratio }
}

/** Whether the figure meets its target: the ratio bound when given, else the absolute value bound. */
export function meetsTarget(f: Figure): boolean | undefined {
  if (!Number.isFinite(f.value)) return undefined
  if (f.target.ratio !== undefined) {
    if (f.ratio === null) return undefined
    return f.higherIsBetter ? f.ratio >= f.target.ratio : f.ratio <= f.target.ratio
  }
  if (f.target.value !== undefined)
    return f.higherIsBetter ? f.value >= f.target.value : f.value <= f.target.value
  return undefined
}

function targetText(f: Figure): string {
  const op = f.higherIsBetter ? '>=' : '<='
  if (f.target.ratio !== undefined) return `ratio ${op} ${f.target.ratio}`
  if (f.target.value !== undefined) return `${op} ${f.target.value} ${f.unit}`
  return '-'
}

function baselineText(b: Baseline): string {
  if (b.error !== undefined) return `${b.name}: error: ${b.error}`
  return `${b.name}: ${b.value ?? '?'} ${b.unit ?? ''}`.trim()
}

export function markdownTable(r: SuiteResult): string {
  const m = r.machine
  const lines = [
    `## ${r.suite} — ${r.startedAt}`,
    '',
    `commit \`${r.commit}\`; ${m.cpus} cpus (${m.cpuModel}), ${m.memGiB} GiB, Linux ${m.kernel}, node ${m.node}`,
    '',
    '| figure | value | baseline | ratio | target | met |',
    '|---|---|---|---|---|---|',
  ]
  for (const f of r.figures) {
    const met = meetsTarget(f)
    lines.push(
      `| ${f.name} | ${f.value} ${f.unit} | ${baselineText(f.baseline).replace(/\|/g, '\\|')} | ${f.ratio ?? '-'} | ${targetText(f)} | ${met === undefined ? '?' : met ? 'yes' : 'no'} |`,
    )
  }
  return lines.join('\n') + '\n\n'
}

export async function writeResults(r: SuiteResult): Promise<{ json: string; md: string }> {
  await mkdir(RESULTS_DIR, { recursive: true })
  const json = path.join(RESULTS_DIR, `${r.suite}.json`)
  const md = path.join(RESULTS_DIR, `${r.suite}.md`)
  await writeFile(json, JSON.stringify(r, null, 2) + '\n')
  await appendFile(md, markdownTable(r))
  return { json, md }
}

export function printTargets(r: SuiteResult): void {
  const lines = [`\n${r.suite}: figures vs targets`]
  for (const f of r.figures) {
    const met = meetsTarget(f)
    const mark = met === undefined ? 'n/a ' : met ? 'MET ' : 'MISS'
    const ratio = f.ratio === null ? 'ratio -' : `ratio ${f.ratio}`
    lines.push(
      `  [${mark}] ${f.name} = ${f.value} ${f.unit} (${baselineText(f.baseline)}; ${ratio}; target ${targetText(f)})`,
    )
  }
  process.stdout.write(lines.join('\n') + '\n')
}

/** Set while a suite cleans up after SIGINT/SIGTERM: the runner then leaves exiting to it. */
export const shutdown = { inProgress: false }

/** Progress lines on stderr, so stdout stays the summary. */
export function note(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/**
 * An embedded Postgres under `work` with the schema migrated and `team` present: what every
 * storage suite starts from. `close` closes the pool and stops the server.
 */
export async function benchDatabase(
  work: string,
  log: Logger,
  team: string,
): Promise<{ db: Db; close(): Promise<void> }> {
  const pg = await startEmbeddedPg({ dir: path.join(work, 'pg'), port: await freePort(), log })
  const db = openDb(pg.url, { applicationName: 's0-bench' })
  try {
    await migrate(db, log)
    await db.query(`INSERT INTO teams (id, name) VALUES ($1, 'bench') ON CONFLICT DO NOTHING`, [team])
  } catch (err) {
    await db.close()
    await pg.stop()
    throw err
  }
  return {
    db,
    async close() {
      await db.close()
      await pg.stop()
    },
  }
}
