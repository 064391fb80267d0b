// Figures chunk_hash_throughput and chunk_and_hash_throughput: the write path's CPU work
// (FastCDC + BLAKE3 per chunk, one core, corpus in memory) vs b3sum hashing the same bytes.
import { open, rm } from 'node:fs/promises'
import path from 'node:path'
import { DEFAULT_CHUNKER_PARAMS, StreamingChunker, chunkBuffer } from '../../src/blockstore/chunker.js'
import { HashPool } from '../../src/blockstore/hash-pool.js'
import { hashChunk, hashChunkPortable } from '../../src/blockstore/hash.js'
import { limits } from '../../src/core/limits.js'
import { sliceCorpus, type Corpus, type CorpusFile } from '../corpus.js'
import {
  MiB,
  commandExists,
  errorMessage,
  figure,
  median,
  mibPerSec,
  note,
  round,
  secondsSince,
  spread,
  type Figure,
} from '../lib.js'
import { b3sumFile, b3sumFiles } from '../peers/b3sum.js'

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

/** Hashing alone: BLAKE3 of every chunk as the chunker cut them (chunk boundaries precomputed). */
function hashChunksOnly(
  files: readonly CorpusFile[],
  cuts: ReadonlyArray<ReadonlyArray<[number, number]>>,
): void {
  files.forEach((f, i) => {
    for (const [a, b] of cuts[i] as ReadonlyArray<[number, number]>) hashChunk(f.data.subarray(a, b))
  })
}

/** Hashing alone through the npm blake3 package (the fallback; what hashChunk was before the addon). */
function hashChunksPortable(
  files: readonly CorpusFile[],
  cuts: ReadonlyArray<ReadonlyArray<[number, number]>>,
): void {
  files.forEach((f, i) => {
    for (const [a, b] of cuts[i] as ReadonlyArray<[number, number]>) hashChunkPortable(f.data.subarray(a, b))
  })
}

/**
 * The ingest's cutting + hashing on every core: files from hashPoolJobBytesMin up go to the hash
 * pool as whole-file jobs (their bytes copied into shared memory beforehand, outside the timing),
 * smaller ones are cut and hashed on this thread meanwhile, as ChunkWriteSession does.
 */
async function chunkAndHashPooled(
  pool: HashPool,
  files: readonly CorpusFile[],
  shared: ReadonlyMap<CorpusFile, Buffer>,
  chunker: StreamingChunker,
): Promise<void> {
  const inflight = new Set<Promise<unknown>>()
  for (const f of files) {
    const buf = shared.get(f)
    if (buf) {
      const p = pool.cutAndHash({ buf, used: buf.length, final: true, params: DEFAULT_CHUNKER_PARAMS })
      inflight.add(p)
      void p.finally(() => inflight.delete(p))
      if (inflight.size >= 2 * pool.size) await Promise.race(inflight)
      continue
    }
    chunker.fill(f.data)
    for (const c of chunker.end()) hashChunk(c)
  }
  await Promise.all(inflight)
}

export async function benchChunkHash(
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
  const portable: number[] = []
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint()
    hashChunksPortable(corpus.files, cuts)
    portable.push(mibPerSec(corpus.bytes, secondsSince(t0)))
  }
  const pool = new HashPool()
  const pooled: number[] = []
  try {
    const shared = new Map<CorpusFile, Buffer>()
    for (const f of corpus.files) {
      if (f.data.length < limits.hashPoolJobBytesMin) continue
      const b = Buffer.from(new SharedArrayBuffer(f.data.length))
      f.data.copy(b)
      shared.set(f, b)
    }
    await chunkAndHashPooled(pool, warm, shared, chunker)
    for (let r = 0; r < runs; r++) {
      const t0 = process.hrtime.bigint()
      await chunkAndHashPooled(pool, corpus.files, shared, chunker)
      pooled.push(mibPerSec(corpus.bytes, secondsSince(t0)))
    }
  } finally {
    await pool.close()
  }
  note(`chunk_and_hash_throughput: hash pool of ${pool.size} ${round(median(pooled))} MiB/s`)

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
      await b3sumFile(concat)
      for (let r = 0; r < runs; r++) {
        perFile.push(mibPerSec(corpus.bytes, await b3sumFiles(corpusDir, rel)))
        oneFile.push(mibPerSec(corpus.bytes, await b3sumFile(concat)))
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
          "one core, corpus in pre-touched memory: BLAKE3-256 of every chunk through hashChunk (the project's addon: BLAKE3's C implementation vendored in native/blake3, one N-API call per chunk), with the chunk boundaries FastCDC cut beforehand; chunking itself is measured by chunk_and_hash_throughput. The b3sum baseline hashes one big file, so it pays no per-chunk or per-file cost; ~20k of the corpus's chunks are small files",
        npmBlake3MiBs: {
          median: round(median(portable)),
          ...spread(portable),
          method:
            'the same through the npm blake3 package (the fallback, and hashChunk before the addon): a stream.Transform per hash',
        },
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
          'one core, corpus in pre-touched memory; per file: StreamingChunker (the inline ChunkWriteSession path) + BLAKE3 of every chunk. The target is the anchor "chunking + hashing >= 1 GiB/s/core end to end"; the FastCDC gear loop is C (native/cdc.c)',
        hashPoolMiBs: {
          median: round(median(pooled)),
          ...spread(pooled),
          workers: pool.size,
          method: `all cores: files >= ${limits.hashPoolJobBytesMin / 1024} KiB cut + hashed as one job each on the hash pool (at most ${2 * pool.size} in flight, bytes already in shared memory), smaller ones on the main thread meanwhile. Not one core: not comparable with the value above`,
        },
        chunker: DEFAULT_CHUNKER_PARAMS,
        inPlaceChunkBufferMiBs: { median: round(median(inPlace)), ...spread(inPlace) },
        ...b3sumDetail,
      },
    }),
  ]
}
