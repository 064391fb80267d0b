// fsck finds damage; --rebuild-index recreates the index from the pack trailers alone.
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { fsck, rebuildIndex } from '../../src/blockstore/fsck.js'
import {
  objectPath,
  openTestStore,
  packKeys,
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

async function onePackPath(): Promise<string> {
  return objectPath(t, (await packKeys(t))[0] as string)
}

describe('fsck', () => {
  it('is clean on a healthy store and counts what it checked', async () => {
    await t.store.put(TEAM_A, prng(3 * 1024 * KiB, 1))
    await t.store.put(TEAM_B, prng(10 * KiB, 2))
    const r = await fsck(t.store)
    expect(r.problems).toEqual([])
    expect(r.packsChecked).toBe(2)
    expect(r.bytesChecked).toBe(3 * 1024 * KiB + 10 * KiB)
  })

  it('finds a flipped bit in a chunk, a damaged trailer and a missing pack', async () => {
    await t.store.put(TEAM_A, prng(500 * KiB, 3))
    const file = await onePackPath()
    const bytes = await readFile(file)
    bytes[10] = (bytes[10] as number) ^ 0x80
    await writeFile(file, bytes)
    expect((await fsck(t.store)).problems.map((p) => p.kind)).toEqual(['chunk_corrupt'])

    bytes[bytes.length - 70] = (bytes[bytes.length - 70] as number) ^ 0x80
    await writeFile(file, bytes)
    expect((await fsck(t.store)).problems.map((p) => p.kind)).toEqual(['pack_corrupt'])

    await t.local.delete(path.relative(path.join(t.dir, 'objects'), file))
    expect((await fsck(t.store)).problems.map((p) => p.kind)).toEqual(['pack_missing'])
  })

  it('rebuilds a lost index from the packs, for every team', async () => {
    const a = prng(2 * 1024 * KiB, 4)
    const b = prng(40 * KiB, 5)
    const refsA = await t.store.put(TEAM_A, a)
    const refsB = await t.store.put(TEAM_B, b)
    const before = await t.store.index.stats()
    await t.tdb.db.query('DELETE FROM chunks')
    await t.tdb.db.query('DELETE FROM packs')
    const r = await rebuildIndex(t.store)
    expect(r.problems).toEqual([])
    expect(r.rebuilt).toMatchObject({ packsAdded: before.packs, chunksAdded: before.chunks })
    expect(await t.store.index.stats()).toEqual(before)
    t.store.dropMemoryCache()
    expect((await readAll(t.store, TEAM_A, refsA)).equals(a)).toBe(true)
    expect((await readAll(t.store, TEAM_B, refsB)).equals(b)).toBe(true)
    expect((await fsck(t.store)).problems).toEqual([])
  })

  it('rebuild removes index rows that point at missing packs and keeps the rest', async () => {
    await t.store.put(TEAM_A, prng(20 * KiB, 6))
    const file = await onePackPath()
    const keep = await t.store.put(TEAM_A, prng(20 * KiB, 7))
    await t.local.delete(path.relative(path.join(t.dir, 'objects'), file))
    const r = await rebuildIndex(t.store)
    expect(r.rebuilt?.packsRemoved).toBe(1)
    expect(r.problems.map((p) => p.kind)).toEqual(['pack_missing'])
    expect((await fsck(t.store)).problems).toEqual([])
    expect((await readAll(t.store, TEAM_A, keep)).length).toBe(20 * KiB)
  })
})
