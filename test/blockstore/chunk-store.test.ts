// The chunk store against real Postgres and a real local object store: round trips, dedup scope,
// pack sharing, coalesced reads, verification on every read path.
import { readdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { FaultyObjectStore } from '../support/faulty-object-store.js'
import { openTestStore, prng, readAll, TEAM_A, TEAM_B, type TestStore } from '../support/store.js'

const MiB = 1024 * 1024
let t: TestStore

beforeAll(async () => {
  t = await openTestStore()
})
afterAll(async () => {
  await t.close()
})

async function packFiles(dir: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.name.endsWith('.pack')) out.push(p)
    }
  }
  await walk(path.join(dir, 'objects', 'packs'))
  return out
}

describe('chunk store', () => {
  it('round-trips files of many sizes', async () => {
    for (const [i, size] of [1, 100, 256 * 1024 - 1, 256 * 1024, 3 * MiB + 17, 9 * MiB].entries()) {
      const data = prng(size, 100 + i)
      const refs = await t.store.put(TEAM_A, data)
      expect(refs.reduce((s, r) => s + r.size, 0)).toBe(size)
      if (size <= 256 * 1024) expect(refs).toHaveLength(1)
      t.store.dropMemoryCache()
      expect((await readAll(t.store, TEAM_A, refs)).equals(data)).toBe(true)
    }
  })

  it('stores identical content once per team, and never shares it across teams', async () => {
    const data = prng(6 * MiB, 7)
    const before = { ...t.store.counters }
    const refsA1 = await t.store.put(TEAM_A, data)
    const mid = { ...t.store.counters }
    const refsA2 = await t.store.put(TEAM_A, data)
    const after = { ...t.store.counters }
    expect(mid.bytesWritten - before.bytesWritten).toBe(data.length)
    expect(after.bytesWritten - mid.bytesWritten).toBe(0)
    expect(after.bytesDeduped - mid.bytesDeduped).toBe(data.length)
    expect(refsA2.map((r) => r.hash.toString('hex'))).toEqual(refsA1.map((r) => r.hash.toString('hex')))

    // Team B does not see team A's chunks, and storing them for B writes them again.
    const err = await t.store.read(TEAM_B, (refsA1[0] as { hash: Buffer }).hash).catch((e: unknown) => e)
    expect(isS0Error(err, 'chunk_not_found')).toBe(true)
    const b0 = t.store.counters.bytesWritten
    await t.store.put(TEAM_B, data)
    expect(t.store.counters.bytesWritten - b0).toBe(data.length)
  })

  it('packs many small files from concurrent writers into few objects (group commit)', async () => {
    const puts0 = t.objects.stats.puts
    const files = Array.from({ length: 200 }, (_, i) => prng(4096, 5000 + i))
    const refs = await Promise.all(files.map((f) => t.store.put(TEAM_A, f)))
    const puts = t.objects.stats.puts - puts0
    expect(puts).toBeLessThan(40)
    t.store.dropMemoryCache()
    for (let i = 0; i < files.length; i += 37) {
      expect((await readAll(t.store, TEAM_A, refs[i] ?? [])).equals(files[i] as Buffer)).toBe(true)
    }
  })

  it('never returns corrupt bytes: a damaged pack gives chunk_corrupt, a missing one object_not_found', async () => {
    const u = await openTestStore({ store: { diskCacheBytes: 0 } })
    try {
      const data = prng(2 * MiB, 4242)
      const refs = await u.store.put(TEAM_A, data)
      const [file] = await packFiles(u.dir)
      const bytes = await readFile(file as string)
      bytes[1000] = (bytes[1000] as number) ^ 0x01
      await writeFile(file as string, bytes)
      u.store.dropMemoryCache()
      const err = await readAll(u.store, TEAM_A, refs).catch((e: unknown) => e)
      expect(isS0Error(err, 'chunk_corrupt')).toBe(true)

      const refs2 = await u.store.put(TEAM_A, prng(100_000, 4343))
      for (const f of await packFiles(u.dir))
        await u.local.delete(path.relative(path.join(u.dir, 'objects'), f))
      u.store.dropMemoryCache()
      const err2 = await readAll(u.store, TEAM_A, refs2).catch((e: unknown) => e)
      expect(isS0Error(err2, 'object_not_found')).toBe(true)
    } finally {
      await u.close()
    }
  })

  it('re-verifies the disk cache and falls back to the object store when it is damaged', async () => {
    const data = prng(300_000, 777)
    const refs = await t.store.put(TEAM_A, data)
    t.store.dropMemoryCache()
    await readAll(t.store, TEAM_A, refs) // fills the disk cache
    const hex = (refs[0] as { hash: Buffer }).hash.toString('hex')
    const cached = path.join(t.dir, 'cache', TEAM_A, hex.slice(0, 2), hex)
    await new Promise((r) => setTimeout(r, 50)) // the cache write is asynchronous
    const bytes = await readFile(cached)
    bytes[0] = (bytes[0] as number) ^ 0xff
    await writeFile(cached, bytes)
    t.store.dropMemoryCache()
    const gets0 = t.objects.stats.gets
    expect((await readAll(t.store, TEAM_A, refs)).equals(data)).toBe(true)
    expect(t.objects.stats.gets - gets0).toBe(1)
  })

  it('concurrent readers of one chunk share one GET', async () => {
    const data = prng(500_000, 31337)
    const refs = await t.store.put(TEAM_A, data)
    const gets0 = t.objects.stats.gets
    const reads = await Promise.all(
      Array.from({ length: 10 }, () =>
        t.store.readMany(
          TEAM_A,
          refs.map((r) => r.hash),
        ),
      ),
    )
    for (const r of reads) expect(Buffer.concat(r).equals(data)).toBe(true)
    expect(t.objects.stats.gets - gets0).toBe(1)
  })

  it('an ingest with one durability barrier fills 16 MiB packs; a failed pack fails the barrier', async () => {
    const u = await openTestStore({ store: { diskCacheBytes: 0 } })
    try {
      const files = Array.from({ length: 600 }, (_, i) => prng(50 * 1024 + i, 9000 + i))
      const puts0 = u.objects.stats.puts
      const refs = []
      for (const f of files) {
        const w = u.store.writer(TEAM_A)
        await w.write(f)
        refs.push(await w.finish({ durable: false }))
      }
      await u.store.flush()
      // ~30 MiB of small files: two or three packs, not 600.
      expect(u.objects.stats.puts - puts0).toBeLessThanOrEqual(3)
      u.store.dropMemoryCache()
      for (const i of [0, 299, 599])
        expect((await readAll(u.store, TEAM_A, refs[i] ?? [])).equals(files[i] as Buffer)).toBe(true)
    } finally {
      await u.close()
    }
    let faulty: FaultyObjectStore | undefined
    const v = await openTestStore({
      store: { diskCacheBytes: 0 },
      wrap: (inner) => (faulty = new FaultyObjectStore(inner, { putsDown: true })),
    })
    try {
      const w = v.store.writer(TEAM_A)
      await w.write(prng(10_000, 1))
      await w.finish({ durable: false })
      const err = await v.store.flush().catch((e: unknown) => e)
      expect(isS0Error(err, 'object_store_unavailable')).toBe(true)
      if (faulty) faulty.plan = {}
      await v.store.flush() // the failure was reported once
    } finally {
      await v.close()
    }
  })
})
