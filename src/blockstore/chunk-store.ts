// The content-addressed chunk store: the only way file content is stored or read. Writes are
// chunked (FastCDC), hashed (BLAKE3), deduplicated within the team and packed; reads are
// coalesced ranged GETs behind two caches, and every chunk is re-hashed before it is returned.
import { assert } from '../core/assert.js'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { newRootId, type RootId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import { ChunkIndex, type ChunkLocation } from './chunk-index.js'
import { DiskChunkCache, MemoryChunkCache } from './chunk-cache.js'
import { DEFAULT_CHUNKER_PARAMS, StreamingChunker, type ChunkerParams } from './chunker.js'
import { HASH_BYTES, hashChunk } from './hash.js'
import { sharedHashPool, type HashPool } from './hash-pool.js'
import type { ObjectStore } from './object-store.js'
import { PackWriter, type PackWriterOptions } from './pack-writer.js'
import { coalesce, readPlanned, verifiedChunk, type PlannedChunk } from './read-plan.js'

export type { PlannedChunk } from './read-plan.js'

/** A chunk as a file refers to it. */
export interface ChunkRef {
  readonly hash: Buffer
  readonly size: number
}

export interface ChunkStoreOptions {
  db: Db
  objects: ObjectStore
  log: Logger
  memoryCacheBytes?: number
  /** Directory of the disk cache; omitted or diskCacheBytes 0 disables it. */
  diskCacheDir?: string
  diskCacheBytes?: number
  chunker?: ChunkerParams
  packs?: PackWriterOptions
  /**
   * Where large writes are cut and hashed: omitted, the process's shared pool (when the addon
   * has cutAndHash); null, always the calling thread.
   */
  hashPool?: HashPool | null
}

export interface ReadOptions {
  signal?: AbortSignal
}

export interface ChunkStoreCounters {
  chunksWritten: number
  chunksDeduped: number
  bytesWritten: number
  bytesDeduped: number
  chunksRead: number
  memoryHits: number
  diskHits: number
  rangeGets: number
}

export class ChunkStore {
  readonly index: ChunkIndex
  readonly objects: ObjectStore
  readonly log: Logger
  readonly db: Db
  readonly chunkerParams: ChunkerParams
  readonly counters: ChunkStoreCounters = {
    chunksWritten: 0,
    chunksDeduped: 0,
    bytesWritten: 0,
    bytesDeduped: 0,
    chunksRead: 0,
    memoryHits: 0,
    diskHits: 0,
    rangeGets: 0,
  }
  /** @internal Read by ChunkWriteSession. */
  readonly hashPool: HashPool | undefined
  private readonly packs: PackWriter
  /** @internal Read by ChunkWriter (write-through of small chunks). */
  readonly memory: MemoryChunkCache
  private readonly disk: DiskChunkCache | undefined
  private readonly inflightReads = new Map<string, Promise<Buffer>>()
  private readonly undurable = new Set<Promise<void>>()

  private constructor(opts: ChunkStoreOptions, disk: DiskChunkCache | undefined) {
    this.db = opts.db
    this.objects = opts.objects
    this.log = opts.log
    this.index = new ChunkIndex(opts.db)
    this.chunkerParams = opts.chunker ?? DEFAULT_CHUNKER_PARAMS
    this.packs = new PackWriter(opts.objects, this.index, opts.log, {
      chunkSizeMaxBytes: this.chunkerParams.maxBytes,
      ...opts.packs,
    })
    this.memory = new MemoryChunkCache(opts.memoryCacheBytes ?? limits.memoryCacheBytesMax)
    this.disk = disk
    this.hashPool = opts.hashPool === null ? undefined : (opts.hashPool ?? sharedHashPool())
  }

  static async open(opts: ChunkStoreOptions): Promise<ChunkStore> {
    const diskBytes = opts.diskCacheBytes ?? limits.diskCacheBytesMax
    const disk =
      opts.diskCacheDir && diskBytes > 0
        ? await DiskChunkCache.open(opts.diskCacheDir, diskBytes, opts.log)
        : undefined
    return new ChunkStore(opts, disk)
  }

  /** A streaming write of one file (or any byte stream). */
  writer(teamId: TeamId): ChunkWriteSession {
    return new ChunkWriteSession(this, teamId)
  }

  /** Stores `data`; resolves when every chunk is durable and indexed. */
  async put(teamId: TeamId, data: Uint8Array): Promise<ChunkRef[]> {
    const w = this.writer(teamId)
    await w.write(data)
    return w.finish()
  }

  /** @internal used by ChunkWriteSession */
  get packWriter(): PackWriter {
    return this.packs
  }

  async read(teamId: TeamId, hash: Buffer, opts: ReadOptions = {}): Promise<Buffer> {
    const [buf] = await this.readMany(teamId, [hash], opts)
    return buf as Buffer
  }

  /**
   * Reads chunks, in order. Chunks of one pack that lie close together are fetched with one
   * ranged GET (up to readRangeMaxBytes), so asking for a file's next few chunks at once costs
   * one request per ~16 MiB.
   */
  async readMany(teamId: TeamId, hashes: Buffer[], opts: ReadOptions = {}): Promise<Buffer[]> {
    const out = new Array<Buffer | undefined>(hashes.length)
    const waits: Array<Promise<void>> = []
    const toFetch: Array<{ key: string; hash: Buffer }> = []
    const fetchKeys = new Set<string>()
    hashes.forEach((hash, i) => {
      const key = `${teamId}:${hash.toString('hex')}`
      const hit = this.memory.get(key)
      if (hit) {
        this.counters.memoryHits++
        out[i] = hit
        return
      }
      const inflight = this.inflightReads.get(key)
      if (inflight) {
        waits.push(inflight.then((b) => void (out[i] = b)))
        return
      }
      if (!fetchKeys.has(key)) {
        fetchKeys.add(key)
        toFetch.push({ key, hash })
      }
    })
    if (toFetch.length > 0) {
      const fetched = this.fetch(teamId, toFetch, opts)
      for (const { key } of toFetch) {
        const p = fetched.then((m) => m.get(key) as Buffer)
        // Readers that join this fetch await `p`, this one awaits `fetched`: both see a failure.
        // These two handlers only keep an unobserved copy from being an unhandled rejection.
        p.catch(() => undefined)
        this.inflightReads.set(key, p)
        void p.finally(() => this.inflightReads.delete(key)).catch(() => undefined)
      }
      const m = await fetched
      hashes.forEach((hash, i) => {
        if (out[i] === undefined) {
          const b = m.get(`${teamId}:${hash.toString('hex')}`)
          if (b) out[i] = b
        }
      })
    }
    await Promise.all(waits)
    this.counters.chunksRead += hashes.length
    return out.map((b, i) => {
      assert(b !== undefined, `chunk ${i} unresolved`)
      return b
    })
  }

  private async fetch(
    teamId: TeamId,
    wanted: Array<{ key: string; hash: Buffer }>,
    opts: ReadOptions,
  ): Promise<Map<string, Buffer>> {
    const got = new Map<string, Buffer>()
    let missing = wanted
    if (this.disk) {
      const left: typeof wanted = []
      for (const w of wanted) {
        const b = await this.disk.get(w.key)
        if (b && hashChunk(b).equals(w.hash)) {
          this.counters.diskHits++
          this.memory.set(w.key, b)
          got.set(w.key, b)
        } else {
          if (b) await this.disk.invalidate(w.key)
          left.push(w)
        }
      }
      missing = left
    }
    if (missing.length === 0) return got

    let locations = await this.index.locate(
      teamId,
      missing.map((m) => m.hash),
    )
    for (let attempt = 0; ; attempt++) {
      try {
        await this.fetchFromPacks(missing, locations, got, opts)
        return got
      } catch (err) {
        // A pack may have been rewritten by GC between the lookup and the GET: look again once.
        if (attempt > 0 || !(err instanceof S0Error && err.code === 'object_not_found')) throw err
        missing = missing.filter((m) => !got.has(m.key))
        const fresh = await this.index.locate(
          teamId,
          missing.map((m) => m.hash),
        )
        const moved = missing.some(
          (m) =>
            fresh.get(m.key.slice(teamId.length + 1))?.objectKey !==
            locations.get(m.key.slice(teamId.length + 1))?.objectKey,
        )
        if (!moved) throw err
        locations = fresh
      }
    }
  }

  private async fetchFromPacks(
    wanted: Array<{ key: string; hash: Buffer }>,
    locations: Map<string, ChunkLocation>,
    got: Map<string, Buffer>,
    opts: ReadOptions,
  ): Promise<void> {
    const byObject = new Map<string, Array<{ key: string; hash: Buffer; loc: ChunkLocation }>>()
    for (const w of wanted) {
      const hex = w.hash.toString('hex')
      const loc = locations.get(hex)
      if (!loc)
        throw new S0Error('chunk_not_found', `chunk ${hex} is not in the index`, { details: { hash: hex } })
      let list = byObject.get(loc.objectKey)
      if (!list) byObject.set(loc.objectKey, (list = []))
      list.push({ ...w, loc })
    }
    const gets: Array<Promise<void>> = []
    for (const [objectKey, list] of byObject) {
      list.sort((a, b) => a.loc.offset - b.loc.offset)
      for (const run of coalesce(list)) gets.push(this.fetchRun(objectKey, run, got, opts))
    }
    await Promise.all(gets)
  }

  private async fetchRun(
    objectKey: string,
    run: Array<{ key: string; hash: Buffer; loc: ChunkLocation }>,
    got: Map<string, Buffer>,
    opts: ReadOptions,
  ): Promise<void> {
    const first = run[0] as (typeof run)[number]
    const last = run[run.length - 1] as (typeof run)[number]
    const start = first.loc.offset
    const length = last.loc.offset + last.loc.storedBytes - start
    this.counters.rangeGets++
    const bytes = await this.objects.get(objectKey, {
      range: { offset: start, length },
      ...(opts.signal ? { signal: opts.signal } : {}),
    })
    for (const c of run) {
      // Copy out of the range buffer so caching one chunk does not pin the whole range.
      const chunk = verifiedChunk(objectKey, bytes, start, c, run.length > 1)
      got.set(c.key, chunk)
      this.memory.set(c.key, chunk)
      // A background cache fill: DiskChunkCache.set logs its own failures and never rejects.
      if (this.disk) void this.disk.set(c.key, chunk)
    }
  }

  /**
   * A restore's read (a whole tree, an export): every chunk of `hashes` once, in the order that
   * costs the fewest GETs rather than the order asked (see read-plan.ts). Each yield carries
   * the positions in `hashes` that asked for the chunk.
   */
  readPlanned(
    teamId: TeamId,
    hashes: readonly Buffer[],
    opts: ReadOptions = {},
  ): AsyncGenerator<PlannedChunk> {
    return readPlanned(
      {
        index: this.index,
        objects: this.objects,
        counters: this.counters,
        cached: (key, hash) => this.cached(key, hash),
        refetch: (team, wanted, o) => this.fetch(team, wanted, o),
      },
      teamId,
      hashes,
      opts,
    )
  }

  /** A chunk from the memory cache, else the disk cache (re-hashed), counted; not re-cached. */
  private async cached(key: string, hash: Buffer): Promise<Buffer | undefined> {
    const hit = this.memory.get(key)
    if (hit) {
      this.counters.memoryHits++
      return hit
    }
    const b = await this.disk?.get(key)
    if (!b) return undefined
    if (!hashChunk(b).equals(hash)) {
      await this.disk?.invalidate(key)
      return undefined
    }
    this.counters.diskHits++
    return b
  }

  /** Registers a set of chunks as a GC root (pins them) until deleteRoot or expiry. */
  async createRoot(
    teamId: TeamId,
    opts: { kind: string; label?: string; hashes: Buffer[]; expiresAt?: Date },
  ): Promise<RootId> {
    const id = newRootId()
    await this.db.tx(async (c) => {
      await c.query(
        `INSERT INTO gc_roots (id, team_id, kind, label, expires_at) VALUES ($1, $2, $3, $4, $5)`,
        [id, teamId, opts.kind, opts.label ?? '', opts.expiresAt ?? null],
      )
      await c.query(
        `INSERT INTO gc_root_chunks (root_id, hash) SELECT $1, h FROM unnest($2::bytea[]) AS t(h) ON CONFLICT DO NOTHING`,
        [id, opts.hashes],
      )
    })
    return id
  }

  async deleteRoot(id: RootId): Promise<void> {
    await this.db.query(`DELETE FROM gc_roots WHERE id = $1`, [id])
  }

  /**
   * The durability barrier: seals open packs, waits for their uploads, and throws if a chunk
   * of a write finished with `durable: false` since the last barrier did not make it.
   */
  async flush(): Promise<void> {
    await this.packs.drain()
    const waits = [...this.undurable]
    this.undurable.clear()
    const failed = (await Promise.allSettled(waits)).find(
      (r): r is PromiseRejectedResult => r.status === 'rejected',
    )
    if (failed) throw failed.reason
  }

  /** @internal Chunk commits that the next flush() must see succeed. */
  awaitAtFlush(waits: Array<Promise<void>>): void {
    for (const w of waits) {
      w.catch(() => undefined) // observed by flush(); never an unhandled rejection
      this.undurable.add(w) // one promise per pack: the set stays small
    }
  }

  async close(): Promise<void> {
    await this.packs.drain()
  }

  get memoryCacheBytes(): number {
    return this.memory.bytes
  }

  get diskCacheBytes(): number {
    return this.disk?.bytes ?? 0
  }

  /** Drops the memory cache (bench: cold reads). */
  dropMemoryCache(): void {
    this.memory.clear()
  }
}

/** One streaming write: chunk, hash, dedup, append; `finish` makes it durable. */
export class ChunkWriteSession {
  private readonly chunker: StreamingChunker
  private readonly refs: ChunkRef[] = []
  private readonly waits: Array<Promise<void>> = []
  private finished = false
  private busy = false

  constructor(
    private readonly store: ChunkStore,
    private readonly teamId: TeamId,
  ) {
    // Staging that grows to the pool's job size is shared memory, so a worker cuts it in place.
    this.chunker = new StreamingChunker(
      store.chunkerParams,
      undefined,
      store.hashPool ? limits.hashPoolJobBytesMin : Infinity,
    )
  }

  async write(data: Uint8Array): Promise<void> {
    assert(!this.finished, 'write after finish')
    assert(!this.busy, 'concurrent writes to one session')
    this.busy = true
    try {
      for (let pos = 0; pos < data.length;) {
        pos += this.chunker.fill(data.subarray(pos))
        if (this.chunker.full) await this.cutStaged(false)
      }
    } finally {
      this.busy = false
    }
  }

  /**
   * Cuts and hashes what is staged: on the hash pool when there is enough of it (a large file
   * streams through in staging-sized jobs), on this thread otherwise. Both give the same chunks.
   */
  private async cutStaged(final: boolean): Promise<void> {
    const c = this.chunker
    const used = c.stage()
    const pool = this.store.hashPool
    if (
      pool !== undefined &&
      used >= limits.hashPoolJobBytesMin &&
      c.stagingBuffer.buffer instanceof SharedArrayBuffer &&
      pool.accepting
    ) {
      const r = await pool.cutAndHash({ buf: c.stagingBuffer, used, final, params: this.store.chunkerParams })
      const chunks = c.applyCuts(r.ends, r.count, final)
      const hashes = chunks.map((_, k) =>
        Buffer.from(r.hashes.buffer, r.hashes.byteOffset + k * HASH_BYTES, HASH_BYTES),
      )
      if (chunks.length > 0) await this.addHashed(chunks, hashes)
      return
    }
    const chunks = final ? c.end() : c.cutReady()
    if (chunks.length > 0) await this.addChunks(chunks)
  }

  /** @internal Adds already-cut chunks (views valid until this resolves). */
  async addChunks(chunks: Buffer[]): Promise<void> {
    await this.addHashed(
      chunks,
      chunks.map((c) => hashChunk(c)),
    )
  }

  private async addHashed(chunks: Buffer[], hashes: Buffer[]): Promise<void> {
    assert(chunks.length === hashes.length, 'one hash per chunk')
    const pw = this.store.packWriter
    // Chunks already waiting in a pack (ours or another writer's) are not looked up: we wait
    // for that pack instead. The promise is taken now, because the pack may commit (and leave
    // `pending`) before we get to this chunk.
    const waiting = new Map<string, Promise<void>>()
    const unknown: Buffer[] = []
    for (const h of hashes) {
      const hex = h.toString('hex')
      if (waiting.has(hex) || unknown.some((u) => u.equals(h))) continue
      const p = pw.pending.get(`${this.teamId}:${hex}`)
      if (p) waiting.set(hex, p)
      else unknown.push(h)
    }
    const existing = await this.store.index.touchExisting(this.teamId, unknown)
    const c = this.store.counters
    const appended = new Set<string>()
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i] as Buffer
      const hash = hashes[i] as Buffer
      const hex = hash.toString('hex')
      this.refs.push({ hash, size: chunk.length })
      // Small files are read back soon after they are written (builds, checkouts, verifies):
      // keep their chunks in memory. Large writes would only push useful reads out.
      if (chunk.length <= limits.writeCacheChunkBytesMax)
        this.store.memory.set(`${this.teamId}:${hex}`, Buffer.from(chunk))
      const wait = waiting.get(hex)
      if (existing.has(hex) || wait || appended.has(hex)) {
        if (wait) this.waits.push(wait)
        c.chunksDeduped++
        c.bytesDeduped += chunk.length
        continue
      }
      const { committed } = await pw.append(this.teamId, hash, chunk)
      appended.add(hex)
      this.waits.push(committed)
      c.chunksWritten++
      c.bytesWritten += chunk.length
    }
  }

  /**
   * Resolves with the file's chunk list. By default only once every chunk is durable and
   * indexed. With `durable: false` it resolves as soon as every chunk is in a pack: an ingest
   * of many files (a backup, an archive import) then makes one durability barrier at the end,
   * `ChunkStore.flush()`, instead of one per file. Until that barrier returns, nothing may
   * record these refs in Postgres (ordering rule 1).
   */
  async finish(opts: { durable?: boolean } = {}): Promise<ChunkRef[]> {
    assert(!this.finished, 'finish twice')
    assert(!this.busy, 'finish during a write')
    await this.cutStaged(true)
    // Every chunk is copied into a pack (and the cache) by now: the staging can go to the next writer.
    this.chunker.release()
    this.finished = true
    if (opts.durable === false) {
      this.store.awaitAtFlush(this.waits)
      return this.refs
    }
    if (this.waits.length > 0) this.store.packWriter.flush(this.teamId)
    await Promise.all(this.waits)
    return this.refs
  }
}
