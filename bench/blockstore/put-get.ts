// Figures put_throughput_{local,s3} and get_throughput_{local,s3}: the corpus stored through the
// chunk store and restored cold, vs the raw object store peer moving the same bytes.
import { PutObjectCommand } from '@aws-sdk/client-s3'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { ChunkStore } from '../../src/blockstore/chunk-store.js'
import { ResilientObjectStore } from '../../src/blockstore/resilient-object-store.js'
import { S3ObjectStore } from '../../src/blockstore/s3-object-store.js'
import { sliceCorpus, type Corpus } from '../corpus.js'
import {
  MiB,
  errorMessage,
  figure,
  median,
  mibPerSec,
  note,
  round,
  spread,
  timed,
  type Figure,
} from '../lib.js'
import { rawLocalRead, rawLocalWrite, rawS3Read, rawS3Write, s3Client } from '../peers/raw-object-store.js'
import { startS3rver, type S3rverHandle } from '../../tools/s3rver.js'
import {
  READ_CONCURRENCY,
  RESTORE_BATCH_BYTES,
  WRITE_CONCURRENCY,
  dropStore,
  freshDb,
  openLocalStore,
  reopenCold,
  withRetry,
  type Env,
} from './env.js'
import { memorySources, readTree, readTreeBatched, storeTree } from './trees.js'

export interface PutGetRun {
  putSeconds: number
  getSeconds: number
  puts: number
  putBytes: number
  gets: number
  getBytes: number
  rangeGets: number
  /** The same restore through per-batch readMany (the pre-planner way), cold: its GETs. */
  batchedGets?: number
  batchedGetSeconds?: number
}

/** The raw baseline of one run (kept even when our store fails in that run). */
export interface RawRun {
  putSeconds: number
  getSeconds: number
  objects: number
}

export function putGetFigures(
  suffix: 'local' | 's3',
  runs: PutGetRun[],
  raws: RawRun[],
  bytes: number,
  files: number,
  baselineNames: { put: string; get: string },
  extra: Record<string, unknown>,
): Figure[] {
  const put = runs.map((r) => mibPerSec(bytes, r.putSeconds))
  const get = runs.map((r) => mibPerSec(bytes, r.getSeconds))
  const rawPut = raws.map((r) => mibPerSec(bytes, r.putSeconds))
  const rawGet = raws.map((r) => mibPerSec(bytes, r.getSeconds))
  const common = { bytes, files, ...extra }
  const reqs = runs.map((r) => ({
    puts: r.puts,
    putBytes: r.putBytes,
    gets: r.gets,
    getBytes: r.getBytes,
    rangeGets: r.rangeGets,
    ...(r.batchedGets !== undefined
      ? { batchedGets: r.batchedGets, batchedGetSeconds: round(r.batchedGetSeconds ?? NaN, 3) }
      : {}),
  }))
  return [
    figure({
      name: `put_throughput_${suffix}`,
      value: median(put),
      unit: 'MiB/s',
      baseline: { name: baselineNames.put, value: round(median(rawPut)), unit: 'MiB/s' },
      higherIsBetter: true,
      target: {},
      detail: { ...spread(put), ...common, baselineRuns: spread(rawPut), requests: reqs },
    }),
    figure({
      name: `get_throughput_${suffix}`,
      value: median(get),
      unit: 'MiB/s',
      baseline: { name: baselineNames.get, value: round(median(rawGet)), unit: 'MiB/s' },
      higherIsBetter: true,
      target: {},
      detail: { ...spread(get), ...common, baselineRuns: spread(rawGet), requests: reqs },
    }),
  ]
}

export async function benchPutGetLocal(
  env: Env,
  corpus: Corpus,
  runs: number,
): Promise<{ figures: Figure[]; perRun: PutGetRun[] }> {
  const out: PutGetRun[] = []
  const raws: RawRun[] = []
  const errors: string[] = []
  const rawDir = path.join(env.work, 'raw-local')
  for (let r = 0; r < runs; r++) {
    const rawPut = await timed(() => rawLocalWrite(rawDir, corpus.files))
    const rawGet = await timed(() => rawLocalRead(rawDir, rawPut.result))
    if (rawGet.result !== corpus.bytes) throw new Error(`raw read ${rawGet.result} != ${corpus.bytes}`)
    await rm(rawDir, { recursive: true, force: true })
    raws.push({ putSeconds: rawPut.seconds, getSeconds: rawGet.seconds, objects: rawPut.result })

    const got = await withRetry(`local put/get run ${r + 1}`, errors, async () => {
      const s = await openLocalStore(env, `putget${r}`)
      try {
        const put = await timed(() => storeTree(s.store, memorySources(corpus.files), WRITE_CONCURRENCY))
        const cold = await reopenCold(env, s, s.objects.inner)
        const get = await timed(() => readTree(cold.store, corpus.files, put.result))
        const coldBatched = await reopenCold(env, s, s.objects.inner)
        const batched = await timed(() => readTreeBatched(coldBatched.store, corpus.files, put.result))
        return {
          s,
          put,
          cold,
          get,
          batched: { seconds: batched.seconds, gets: coldBatched.objects.stats.gets },
        }
      } catch (err) {
        await dropStore(env, s).catch(() => undefined) // the store's own error is the one to keep
        throw err
      }
    })
    if (!got) continue
    const { s, put, cold, get, batched } = got
    out.push({
      batchedGets: batched.gets,
      batchedGetSeconds: batched.seconds,
      putSeconds: put.seconds,
      getSeconds: get.seconds,
      puts: s.objects.stats.puts,
      putBytes: s.objects.stats.putBytes,
      gets: cold.objects.stats.gets,
      getBytes: cold.objects.stats.getBytes,
      rangeGets: cold.store.counters.rangeGets,
    })
    note(
      `local put/get run ${r + 1}: put ${round(mibPerSec(corpus.bytes, put.seconds))} MiB/s (raw ${round(mibPerSec(corpus.bytes, rawPut.seconds))}), ` +
        `get ${round(mibPerSec(corpus.bytes, get.seconds))} MiB/s (raw ${round(mibPerSec(corpus.bytes, rawGet.seconds))}), ${s.objects.stats.puts} puts, ${cold.objects.stats.gets} gets`,
    )
    await dropStore(env, s)
  }
  const figures = putGetFigures(
    'local',
    out,
    raws,
    corpus.bytes,
    corpus.files.length,
    {
      put: 'sequential write of the same bytes as 16 MiB files, fsync each',
      get: 'sequential read of those 16 MiB files (page cache warm)',
    },
    {
      storeErrors: errors,
      method: `put: writer(team).write + finish({ durable: false }) per file from pre-touched memory, ${WRITE_CONCURRENCY} files in flight, one durability barrier (flush) at the end; fresh database + directory per run. get: a new ChunkStore (memory cache dropped, no disk cache) restores every file through one planned read (ChunkStore.readPlanned: chunks by pack and offset, ranges merged, 4 GETs in flight), bytes verified; the packs are in the page cache, as are the raw baseline files. requests[].batchedGets: a second cold store restoring the same way as before the planner (batches of ${RESTORE_BATCH_BYTES / MiB} MiB, one readMany each, ${READ_CONCURRENCY} at a time)`,
    },
  )
  return { figures, perRun: out }
}

export async function benchPutGetS3(
  env: Env,
  corpus: Corpus,
  sliceBytes: number,
  runs: number,
): Promise<{ figures: Figure[]; perRun: PutGetRun[]; sliceBytes: number } | { error: string }> {
  let s3: S3rverHandle | undefined
  try {
    s3 = await startS3rver({ bucket: 's0-bench', dir: path.join(env.work, 's3rver') })
    const cfg = s3.config
    const files = sliceCorpus(corpus, sliceBytes)
    const bytes = files.reduce((s, f) => s + f.data.length, 0)
    const client = s3Client(cfg)
    const out: PutGetRun[] = []
    const raws: RawRun[] = []
    const errors: string[] = []
    // Warm-up: one small raw object round trip (connection, SDK lazy init).
    await client.send(new PutObjectCommand({ Bucket: cfg.bucket, Key: 'warmup', Body: Buffer.alloc(1024) }))
    for (let r = 0; r < runs; r++) {
      const rawPut = await timed(() => rawS3Write(client, cfg.bucket, `raw${r}/`, files))
      const rawGet = await timed(() => rawS3Read(client, cfg.bucket, `raw${r}/`, rawPut.result))
      if (rawGet.result !== bytes) throw new Error(`raw S3 read ${rawGet.result} != ${bytes}`)
      raws.push({ putSeconds: rawPut.seconds, getSeconds: rawGet.seconds, objects: rawPut.result })

      const got = await withRetry(`s3 put/get run ${r + 1}`, errors, async () => {
        const db = await freshDb(env)
        const inner = new S3ObjectStore({ ...cfg, prefix: `run${r}-${randomBytes(3).toString('hex')}` })
        const objects = new ResilientObjectStore(inner)
        const store = await ChunkStore.open({ db, objects, log: env.log })
        try {
          const put = await timed(() => storeTree(store, memorySources(files), WRITE_CONCURRENCY))
          const cold = await reopenCold(env, { store, objects, db, dir: undefined }, inner)
          const get = await timed(() => readTree(cold.store, files, put.result))
          return { store, objects, put, cold, get }
        } catch (err) {
          // The store's own error is the one to keep; s3rver and its files go with the run.
          await store.close().catch(() => undefined)
          await objects.close().catch(() => undefined)
          throw err
        }
      })
      if (!got) continue
      const { store, objects, put, cold, get } = got
      out.push({
        putSeconds: put.seconds,
        getSeconds: get.seconds,
        puts: objects.stats.puts,
        putBytes: objects.stats.putBytes,
        gets: cold.objects.stats.gets,
        getBytes: cold.objects.stats.getBytes,
        rangeGets: cold.store.counters.rangeGets,
      })
      note(
        `s3 put/get run ${r + 1}: put ${round(mibPerSec(bytes, put.seconds))} MiB/s (raw ${round(mibPerSec(bytes, rawPut.seconds))}), ` +
          `get ${round(mibPerSec(bytes, get.seconds))} MiB/s (raw ${round(mibPerSec(bytes, rawGet.seconds))}), ${objects.stats.puts} puts, ${cold.objects.stats.gets} gets`,
      )
      await store.close()
      await objects.close() // the S3 client under both stores of this run
    }
    client.destroy()
    const figures = putGetFigures(
      's3',
      out,
      raws,
      bytes,
      files.length,
      {
        put: 'raw S3 PutObject of the same bytes as 16 MiB objects, sequential (@aws-sdk/client-s3)',
        get: 'raw S3 GetObject of those 16 MiB objects, sequential',
      },
      {
        storeErrors: errors,
        server: 's3rver 3.7.1 on 127.0.0.1 (tools/s3rver.ts), its files on the local disk',
        slice: `a ${round(bytes / MiB)} MiB slice of the corpus with the same mix (S0_BENCH_S3_MIB), to keep the run short`,
        method: `as for local: put per file with finish({ durable: false }), ${WRITE_CONCURRENCY} in flight, one flush at the end; get cold through one planned read (ChunkStore.readPlanned)`,
      },
    )
    return { figures, perRun: out, sliceBytes: bytes }
  } catch (err) {
    return { error: errorMessage(err) }
  } finally {
    await s3?.stop()
  }
}
