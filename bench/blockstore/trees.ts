// Storing and reading whole file trees through the chunk store, as a backup's ingest and a
// restore do: the workload of the ingest, dedup and put/get figures.
import { readFile, readdir } from 'node:fs/promises'
import path from 'node:path'
import type { ChunkRef, ChunkStore } from '../../src/blockstore/chunk-store.js'
import type { CorpusFile } from '../corpus.js'
import { MiB, round, secondsSince } from '../lib.js'
import { READ_CONCURRENCY, RESTORE_BATCH_BYTES, TEAM } from './env.js'

export interface Source {
  path: string
  size: number
  load(): Promise<Buffer>
}

/**
 * Stores every file as a backup-style ingest does (restic's semantics): one writer per file,
 * `finish({ durable: false })`, `concurrency` files in flight, and one durability barrier
 * (`store.flush()`) for the whole tree at the end, so packs fill to 16 MiB.
 */
export async function storeTree(
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
    // Settle what is in flight; the writer's error below is the one to report.
    await store.flush().catch(() => undefined)
    const progress = `after ${refs.size} of ${sources.length} files (${round(doneBytes / MiB)} MiB) in ${round(secondsSince(t0), 1)} s`
    const reason: unknown = failure.reason
    if (reason instanceof Error) reason.message = `${reason.message} [${progress}]`
    throw reason
  }
  await store.flush()
  return refs
}

export function memorySources(files: readonly CorpusFile[]): Source[] {
  return files.map((f) => ({ path: f.path, size: f.data.length, load: () => Promise.resolve(f.data) }))
}

/** Walks the tree on disk (as an ingest would) and reads each file when its turn comes. */
export async function diskSources(root: string): Promise<Source[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true })
  return entries
    .filter((e) => e.isFile())
    .map((e) => {
      const abs = path.join(e.parentPath, e.name)
      return { path: path.relative(root, abs), size: -1, load: () => readFile(abs) }
    })
}

/**
 * Restores every file as a restore does (restic's restorer, ours: ChunkStore.readPlanned): every
 * chunk of the tree is asked for in one planned read, which fetches them pack by pack in offset
 * order (≤ 4 ranged GETs in flight) and hands each chunk to every file position that wants it;
 * every byte is checked against the corpus, and every position must be filled exactly once.
 */
export async function readTree(
  store: ChunkStore,
  files: readonly CorpusFile[],
  refs: Map<string, ChunkRef[]>,
): Promise<number> {
  const hashes: Buffer[] = []
  const fileOf: number[] = []
  const offsetOf: number[] = []
  files.forEach((f, i) => {
    const r = refs.get(f.path)
    if (!r) throw new Error(`no refs for ${f.path}`)
    let off = 0
    for (const c of r) {
      hashes.push(c.hash)
      fileOf.push(i)
      offsetOf.push(off)
      off += c.size
    }
    if (off !== f.data.length) throw new Error(`${f.path}: refs cover ${off} of ${f.data.length} bytes`)
  })
  const filled = new Uint8Array(hashes.length)
  let bytes = 0
  for await (const c of store.readPlanned(TEAM, hashes)) {
    for (const p of c.positions) {
      const f = files[fileOf[p] as number] as CorpusFile
      const off = offsetOf[p] as number
      if (filled[p] !== 0) throw new Error(`${f.path}: chunk at ${off} delivered twice`)
      filled[p] = 1
      if (!c.bytes.equals(f.data.subarray(off, off + c.bytes.length)))
        throw new Error(`${f.path}: bytes differ at ${off}`)
      bytes += c.bytes.length
    }
  }
  const missing = filled.indexOf(0)
  if (missing >= 0) throw new Error(`${files[fileOf[missing] as number]?.path}: a chunk never arrived`)
  return bytes
}

/**
 * The restore this bench used before the planner: files in the order their first chunk lies in
 * the packs, in batches of RESTORE_BATCH_BYTES, one readMany per batch (coalesced ranged GETs
 * within the batch), READ_CONCURRENCY batches at a time. Kept to report what planning saves.
 */
export async function readTreeBatched(
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
