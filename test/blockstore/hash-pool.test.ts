// The hash pool: its chunks and digests are byte-identical to the calling thread's, a failing or
// killed worker fails its job instead of hanging it, and the planned read hands every chunk of a
// request out once, by pack and offset, in as few GETs as the packs allow.
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_CHUNKER_PARAMS, StreamingChunker, type ChunkerParams } from '../../src/blockstore/chunker.js'
import { HashPool, sharedHashPool } from '../../src/blockstore/hash-pool.js'
import { hashChunk, hashChunkPortable } from '../../src/blockstore/hash.js'
import { isS0Error } from '../../src/core/errors.js'
import { openMemoryTestStore, prng, TEAM_A, type MemoryTestStore } from '../support/store.js'
import { freshDb, type TestDb } from '../support/db.js'

const KiB = 1024
const MiB = 1024 * KiB
const SMALL: ChunkerParams = { minBytes: 2 * KiB, avgBytes: 8 * KiB, maxBytes: 32 * KiB }
const hex = (refs: ReadonlyArray<{ hash: Buffer; size: number }>): string[] =>
  refs.map((r) => `${r.hash.toString('hex')}:${r.size}`)

let pool: HashPool
beforeAll(() => {
  pool = new HashPool(2)
})
afterAll(async () => {
  await pool.close()
})

/** Cuts and hashes `data` in staging-sized jobs, on the pool or on this thread. */
async function cutAndHash(data: Buffer, params: ChunkerParams, onPool: boolean): Promise<string[]> {
  const c = new StreamingChunker(params, 2 * params.maxBytes, onPool ? 0 : Infinity)
  const out: string[] = []
  const take = async (final: boolean): Promise<void> => {
    const used = c.stage()
    if (onPool && used > 0) {
      const r = await pool.cutAndHash({ buf: c.stagingBuffer, used, final, params })
      c.applyCuts(r.ends, r.count, final).forEach((ch, k) => {
        out.push(`${Buffer.from(r.hashes.subarray(k * 32, k * 32 + 32)).toString('hex')}:${ch.length}`)
      })
    } else {
      for (const ch of final ? c.end() : c.cutReady())
        out.push(`${hashChunk(ch).toString('hex')}:${ch.length}`)
    }
  }
  for (let pos = 0; pos < data.length;) {
    pos += c.fill(data.subarray(pos))
    if (c.full) await take(false)
  }
  await take(true)
  return out
}

describe('hash pool', () => {
  it('hashes as the npm blake3 package does', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 70_000 }), fc.integer(), (size, seed) => {
        const data = prng(size, seed)
        expect(hashChunk(data).equals(hashChunkPortable(data))).toBe(true)
      }),
      { numRuns: 200, seed: 13 },
    )
  })

  it('cuts and hashes exactly as the calling thread does, for random inputs', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 300 * KiB }), fc.integer(), async (size, seed) => {
        const data = prng(size, seed)
        expect(await cutAndHash(data, SMALL, true)).toEqual(await cutAndHash(data, SMALL, false))
      }),
      { numRuns: 60, seed: 1313 },
    )
  })

  it('fails a job the addon rejects, and the pool keeps working', async () => {
    const buf = Buffer.from(new SharedArrayBuffer(64 * KiB))
    const bad = { minBytes: 8 * KiB, avgBytes: 4 * KiB, maxBytes: 32 * KiB } // avg below min
    const err = await pool
      .cutAndHash({ buf, used: buf.length, final: true, params: bad })
      .catch((e: unknown) => e)
    expect(isS0Error(err, 'internal_error')).toBe(true)
    expect(String((err as Error).message)).toMatch(/bad sizes/)
    const ok = await pool.cutAndHash({ buf, used: buf.length, final: true, params: SMALL })
    expect(ok.count).toBeGreaterThan(0)
  })

  it('fails the job of a worker that dies, instead of hanging, and starts a new worker', async () => {
    const own = new HashPool(1)
    try {
      const buf = Buffer.from(new SharedArrayBuffer(64 * MiB))
      const job = own.cutAndHash({ buf, used: buf.length, final: true, params: DEFAULT_CHUNKER_PARAMS })
      const [worker] = own.workersForTest()
      expect(worker).toBeDefined()
      await worker?.terminate()
      const err = await job.catch((e: unknown) => e)
      expect(isS0Error(err, 'internal_error')).toBe(true)
      expect(String((err as Error).message)).toMatch(/hash worker exited/)
      const small = Buffer.from(new SharedArrayBuffer(64 * KiB))
      expect(
        (await own.cutAndHash({ buf: small, used: small.length, final: true, params: SMALL })).count,
      ).toBe((await cutAndHash(Buffer.from(small), SMALL, false)).length)
    } finally {
      await own.close()
    }
  })

  it('rejects queued and running jobs when closed', async () => {
    const own = new HashPool(1)
    const buf = Buffer.from(new SharedArrayBuffer(16 * MiB))
    const jobs = [1, 2, 3].map(() =>
      own
        .cutAndHash({ buf, used: buf.length, final: true, params: DEFAULT_CHUNKER_PARAMS })
        .catch((e: unknown) => e),
    )
    await own.close()
    for (const err of await Promise.all(jobs)) expect(isS0Error(err, 'unavailable')).toBe(true)
  })
})

describe('chunk store with and without the pool', () => {
  let tdb: TestDb
  let pooled: MemoryTestStore
  let inline: MemoryTestStore
  beforeAll(async () => {
    tdb = await freshDb()
    pooled = await openMemoryTestStore({ tdb, store: { hashPool: pool } })
    inline = await openMemoryTestStore({ tdb, store: { hashPool: null } })
  })
  afterAll(async () => {
    await pooled.close()
    await inline.close()
    await tdb.drop()
  })

  it('gives identical refs for random inputs, in any write sizes', async () => {
    expect(sharedHashPool()).toBeDefined() // the addon is built: the default store uses a pool
    const jobs0 = pool.jobsDone
    const sizes = [0, 1, 300 * KiB, 512 * KiB - 1, 512 * KiB, 3 * MiB + 17, 21 * MiB + 5]
    for (const [i, size] of sizes.entries()) {
      const data = prng(size, 500 + i)
      const piece = [size || 1, 1 * MiB, 777 * KiB][i % 3] as number
      const write = async (s: MemoryTestStore): Promise<string[]> => {
        const w = s.store.writer(TEAM_A)
        for (let p = 0; p < data.length; p += piece) await w.write(data.subarray(p, p + piece))
        return hex(await w.finish())
      }
      const a = await write(pooled)
      const b = await write(inline)
      expect(a).toEqual(b)
    }
    expect(pool.jobsDone - jobs0).toBeGreaterThanOrEqual(3) // the large writes did go to the pool
  })
})

describe('planned reads', () => {
  let t: MemoryTestStore
  beforeAll(async () => {
    t = await openMemoryTestStore({ store: { hashPool: null } })
  })
  afterAll(async () => {
    await t.close()
  })

  it('hands every position its bytes once, reading each interleaved pack in one GET', async () => {
    // Eight writers at once interleave their chunks in the team's packs, as an ingest does.
    const files = Array.from({ length: 8 }, (_, i) => prng(6 * MiB + i * 1000, 900 + i))
    const refs = await Promise.all(
      files.map(async (f) => {
        const w = t.store.writer(TEAM_A)
        for (let p = 0; p < f.length; p += 512 * KiB) await w.write(f.subarray(p, p + 512 * KiB))
        return w.finish({ durable: false })
      }),
    )
    await t.store.flush()
    const packs = (await t.store.index.stats(TEAM_A)).packs
    const hashes = refs.flatMap((r) => r.map((c) => c.hash))
    hashes.push(hashes[3] as Buffer) // a chunk asked for twice arrives once, for both positions
    t.store.dropMemoryCache()
    const gets0 = t.objects.stats.gets
    const got = new Map<number, Buffer>()
    for await (const c of t.store.readPlanned(TEAM_A, hashes)) {
      for (const p of c.positions) {
        expect(got.has(p)).toBe(false)
        got.set(p, Buffer.from(c.bytes))
      }
    }
    expect(got.size).toBe(hashes.length)
    expect(t.objects.stats.gets - gets0).toBe(packs)
    let k = 0
    refs.forEach((r, i) => {
      const whole = Buffer.concat(r.map(() => got.get(k++) as Buffer))
      expect(whole.equals(files[i] as Buffer)).toBe(true)
    })
    expect((got.get(hashes.length - 1) as Buffer).equals(got.get(3) as Buffer)).toBe(true)
  })

  it('fails with chunk_not_found for a hash the index does not know', async () => {
    const it = t.store.readPlanned(TEAM_A, [Buffer.alloc(32, 7)])
    const err = await it.next().catch((e: unknown) => e)
    expect(isS0Error(err, 'chunk_not_found')).toBe(true)
  })
})
