// What the sync suite's phases share: the knobs (environment), the server, our client, the work
// directory, and small helpers (flush, verification, a figure for a side that could not run).
import { readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { errorMessage, figure, mustSucceed, runCmd, type Figure } from '../lib.js'
import type { SyncClient } from './client.js'
import { STATE_DIR_NAME } from './peers.js'
import type { SyncServer } from './server.js'

export interface SyncBenchContext {
  work: string
  server: SyncServer
  client: SyncClient
  /** Why our client cannot run (no `s0 sync` yet); undefined when it can. */
  oursError: string | undefined
  /** `s0 --help` wall time through the same launcher: the CLI's startup in every figure of ours. */
  cliStartupSeconds: number
  knobs: Knobs
  defer: (step: () => Promise<void>) => void
}

/** A positive number from the environment, or `dflt`. */
export function envNumber(name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`)
  return n
}

export interface Knobs {
  /** Multiplies the trees' file counts (S0_BENCH_SYNC_SCALE=0.1 for a quick run). */
  scale: number
  /** Edit propagation samples per direction (S0_BENCH_SYNC_SAMPLES). */
  samples: number
  /** Repeats of the no-change rescan, ours and git status alternating (S0_BENCH_SYNC_RUNS). */
  runs: number
  /** Repeats of the ~1 GiB initial sync, each side from empty again (S0_BENCH_SYNC_INITIAL_RUNS). */
  initialRuns: number
}

/** Read when the suite starts (not at import: a bad value must not break the other suites). */
export function readKnobs(): Knobs {
  return {
    scale: envNumber('S0_BENCH_SYNC_SCALE', 1),
    samples: Math.round(envNumber('S0_BENCH_SYNC_SAMPLES', 50)),
    runs: Math.round(envNumber('S0_BENCH_SYNC_RUNS', 3)),
    initialRuns: Math.round(envNumber('S0_BENCH_SYNC_INITIAL_RUNS', 1)),
  }
}

/** Writes back dirty pages, so a timed run does not pay for the one before it. */
export async function flush(): Promise<void> {
  mustSucceed(await runCmd('sync', []), 'sync')
}

/** Forget our client's state in `dir`: the next pass starts over. */
export function forgetState(dir: string): Promise<void> {
  return rm(path.join(dir, STATE_DIR_NAME), { recursive: true, force: true })
}

/** The paths among `rels` whose bytes differ between `dir` and the volume. */
export async function mismatches(
  ctx: SyncBenchContext,
  dir: string,
  volumeId: string,
  rels: readonly string[],
): Promise<string[]> {
  const bad: string[] = []
  for (const rel of rels) {
    const [local, remote] = await Promise.all([
      readFile(path.join(dir, rel)),
      ctx.server.readFile(volumeId, rel).catch((err: unknown) => Buffer.from(`error: ${errorMessage(err)}`)),
    ])
    if (!remote?.equals(local)) bad.push(rel)
  }
  return bad
}

/** A figure of ours that has no value (our side failed or cannot run yet), peer kept. */
export function unavailable(f: Omit<Figure, 'ratio' | 'value'>, error: string): Figure {
  return figure({ ...f, value: NaN, detail: { ...f.detail, error } })
}
