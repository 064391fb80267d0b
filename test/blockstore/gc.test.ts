// GC against real Postgres and a real object store: only unreachable chunks go, the grace
// period holds, mostly-garbage packs are rewritten, orphans are removed, and fsck stays clean.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { collectGarbage } from '../../src/blockstore/gc.js'
import { fsck } from '../../src/blockstore/fsck.js'
import { packObjectKey } from '../../src/blockstore/pack-format.js'
import { isS0Error } from '../../src/core/errors.js'
import { newPackId } from '../../src/core/ids.js'
import {
  countObjects,
  openTestStore,
  prng,
  readAll,
  TEAM_A,
  TEAM_B,
  type TestStore,
} from '../support/store.js'

const KiB = 1024
let t: TestStore

beforeEach(async () => {
  t = await openTestStore({ store: { diskCacheBytes: 0 } })
})
afterEach(async () => {
  await t.close()
})

describe('gc', () => {
  it('keeps pinned chunks, frees the rest, and a dry run changes nothing', async () => {
    const keep = prng(600 * KiB, 1)
    const drop = prng(600 * KiB, 2)
    const keepRefs = await t.store.put(TEAM_A, keep)
    const dropRefs = await t.store.put(TEAM_A, drop)
    await t.store.createRoot(TEAM_A, { kind: 'test', hashes: keepRefs.map((r) => r.hash) })

    const dry = await collectGarbage(t.store, { dryRun: true, gracePeriodMs: 0 })
    expect(dry.sweptChunks).toBe(dropRefs.length)
    expect((await t.store.index.stats()).chunks).toBe(keepRefs.length + dropRefs.length)

    const real = await collectGarbage(t.store, { gracePeriodMs: 0 })
    expect(real.sweptChunks).toBe(dropRefs.length)
    expect(real.sweptBytes).toBe(drop.length)
    expect(real.deletedPacks).toBe(1) // the drop file had a pack of its own
    t.store.dropMemoryCache()
    expect((await readAll(t.store, TEAM_A, keepRefs)).equals(keep)).toBe(true)
    const err = await readAll(t.store, TEAM_A, dropRefs).catch((e: unknown) => e)
    expect(isS0Error(err, 'chunk_not_found')).toBe(true)
    expect((await fsck(t.store)).problems).toEqual([])
  })

  it('keeps unreferenced chunks younger than the grace period', async () => {
    const refs = await t.store.put(TEAM_A, prng(100 * KiB, 3))
    const report = await collectGarbage(t.store, { gracePeriodMs: 60_000 })
    expect(report.sweptChunks).toBe(0)
    expect((await readAll(t.store, TEAM_A, refs)).length).toBe(100 * KiB)
  })

  it('a chunk written again after being orphaned is touched and survives', async () => {
    const data = prng(50 * KiB, 4)
    await t.store.put(TEAM_A, data)
    await t.tdb.db.query(`UPDATE chunks SET touched_at = now() - interval '2 hours'`)
    // Dedup against the old chunk touches it: GC with a one-hour grace must keep it.
    const refs = await t.store.put(TEAM_A, data)
    const report = await collectGarbage(t.store, { gracePeriodMs: 3_600_000 })
    expect(report.sweptChunks).toBe(0)
    expect((await readAll(t.store, TEAM_A, refs)).equals(data)).toBe(true)
  })

  it('rewrites a mostly-garbage pack and the survivors still read back', async () => {
    // 40 small files written concurrently share one pack; pin only 5 of them.
    const files = Array.from({ length: 40 }, (_, i) => prng(20 * KiB, 100 + i))
    const refs = await Promise.all(files.map((f) => t.store.put(TEAM_A, f)))
    const keepIdx = [0, 7, 13, 21, 39]
    await t.store.createRoot(TEAM_A, {
      kind: 'test',
      hashes: keepIdx.flatMap((i) => (refs[i] ?? []).map((r) => r.hash)),
    })
    const report = await collectGarbage(t.store, { gracePeriodMs: 0 })
    expect(report.repackedPacks).toBeGreaterThanOrEqual(1)
    // Each rewritten pack's old object is gone, and packs with no survivor go whole.
    expect(report.deletedPacks).toBeGreaterThanOrEqual(report.repackedPacks)
    const stats = await t.store.index.stats()
    expect(stats.chunks).toBe(keepIdx.length)
    expect(stats.liveBytes).toBe(keepIdx.length * 20 * KiB)
    t.store.dropMemoryCache()
    for (const i of keepIdx)
      expect((await readAll(t.store, TEAM_A, refs[i] ?? [])).equals(files[i] as Buffer)).toBe(true)
    expect((await fsck(t.store)).problems).toEqual([])
    expect(await countObjects(t.objects)).toBe(stats.packs)
  })

  it('removes orphan pack objects (an upload whose index commit never happened)', async () => {
    const refs = await t.store.put(TEAM_B, prng(10 * KiB, 5))
    await t.store.createRoot(TEAM_B, { kind: 'test', hashes: refs.map((r) => r.hash) })
    await t.objects.put(packObjectKey(TEAM_B, newPackId()), Buffer.from('half-written pack'))
    expect((await fsck(t.store)).problems.map((p) => p.kind)).toEqual(['orphan_object'])
    const young = await collectGarbage(t.store, { gracePeriodMs: 0 })
    expect(young.orphanObjects).toBe(0) // too young: its commit may still be in flight
    const report = await collectGarbage(t.store, { gracePeriodMs: 0, orphanMinAgeMs: 0 })
    expect(report.orphanObjects).toBe(1)
    expect((await fsck(t.store)).problems).toEqual([])
    expect((await readAll(t.store, TEAM_B, refs)).length).toBe(10 * KiB)
  })

  it('expired roots stop protecting their chunks', async () => {
    const refs = await t.store.put(TEAM_A, prng(30 * KiB, 6))
    await t.store.createRoot(TEAM_A, {
      kind: 'lease',
      hashes: refs.map((r) => r.hash),
      expiresAt: new Date(Date.now() - 1000),
    })
    const report = await collectGarbage(t.store, { gracePeriodMs: 0 })
    expect(report.sweptChunks).toBe(refs.length)
  })
})
