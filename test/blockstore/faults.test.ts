// Object-store faults (errors, lost acknowledgements, delays, truncated bodies) never corrupt data
// or the index: writes succeed through retries or fail cleanly, and a re-run succeeds.
import { afterEach, describe, expect, it } from 'vitest'
import { fsck } from '../../src/blockstore/fsck.js'
import { isS0Error } from '../../src/core/errors.js'
import { FaultyObjectStore } from '../support/faulty-object-store.js'
import { openTestStore, prng, readAll, TEAM_A, type TestStore } from '../support/store.js'

const KiB = 1024
let t: TestStore | undefined
let faulty: FaultyObjectStore | undefined

afterEach(async () => {
  await t?.close()
  t = undefined
})

async function open(plan: ConstructorParameters<typeof FaultyObjectStore>[1]): Promise<TestStore> {
  t = await openTestStore({
    store: { diskCacheBytes: 0 },
    wrap: (inner) => (faulty = new FaultyObjectStore(inner, plan)),
  })
  return t
}

/** No index row may point at a missing or partial pack. */
async function indexIsSound(s: TestStore): Promise<void> {
  const report = await fsck(s.store)
  expect(report.problems.filter((p) => p.kind !== 'orphan_object')).toEqual([])
}

describe('faults', () => {
  it('writes and reads survive 30% injected errors, lost acks, delays and truncations', async () => {
    const s = await open({
      seed: 11,
      errorRate: 0.3,
      lostAckRate: 0.2,
      truncateRate: 0.3,
      delayRate: 0.3,
      delayMs: 3,
    })
    const files = Array.from({ length: 30 }, (_, i) => prng(i % 3 === 0 ? 700 * KiB : 9 * KiB, 300 + i))
    // Half one by one (a pack each: many puts), half at once (shared packs).
    const refs = []
    for (const f of files.slice(0, 15)) refs.push(await s.store.put(TEAM_A, f))
    refs.push(...(await Promise.all(files.slice(15).map((f) => s.store.put(TEAM_A, f)))))
    s.store.dropMemoryCache()
    for (let i = 0; i < files.length; i++)
      expect((await readAll(s.store, TEAM_A, refs[i] ?? [])).equals(files[i] as Buffer)).toBe(true)
    expect(faulty?.injected.errors).toBeGreaterThan(0)
    expect(faulty?.injected.lostAcks).toBeGreaterThan(0)
    expect(faulty?.injected.truncations).toBeGreaterThan(0)
    expect(s.objects.stats.retries).toBeGreaterThan(0)
    if (faulty) faulty.plan = {}
    await indexIsSound(s)
  })

  it('an outage fails the write with a retryable error, indexes nothing, and a re-run succeeds', async () => {
    const s = await open({ putsDown: true })
    const data = prng(1200 * KiB, 9)
    const err = await s.store.put(TEAM_A, data).catch((e: unknown) => e)
    expect(isS0Error(err, 'object_store_unavailable')).toBe(true)
    expect((isS0Error(err) && err.retryable) || false).toBe(true)
    expect((await s.store.index.stats()).chunks).toBe(0)
    if (faulty) faulty.plan = {}
    const refs = await s.store.put(TEAM_A, data)
    s.store.dropMemoryCache()
    expect((await readAll(s.store, TEAM_A, refs)).equals(data)).toBe(true)
    await indexIsSound(s)
  })
})
