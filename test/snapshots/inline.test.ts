// Inline small files (issue 13 §2) against real Postgres and a real chunk store: the threshold
// crossed both ways, truncate, overwrite, hard links, snapshot / fork / restore, the background
// packer (also racing writers, truncates, unlinks and snapshots), GC and fsck.
import type { Ino } from '../../src/core/ids.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectGarbage } from '../../src/blockstore/gc.js'
import { fsck } from '../../src/blockstore/fsck.js'
import { limits } from '../../src/core/limits.js'
import { silentLogger } from '../../src/core/log.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { ROOT_INO } from '../../src/snapshots/types.js'
import type { Vfs } from '../../src/snapshots/vfs.js'
import { openMemoryTestStore, prng, TEAM_A, type MemoryTestStore } from '../support/store.js'

const n = (s: string): Buffer => Buffer.from(s)
const owner = { uid: 1000, gid: 1000 }
const MAX = limits.inlineFileBytesMax
let t: MemoryTestStore
let engine: VolumeEngine

beforeAll(async () => {
  t = await openMemoryTestStore()
  engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
})
afterAll(async () => {
  await engine.close()
  await t.close()
})

async function newVfs(): Promise<{ vfs: Vfs; id: string }> {
  const v = await engine.create(TEAM_A)
  return { vfs: await engine.vfs(TEAM_A, v.id), id: v.id }
}

async function write(vfs: Vfs, ino: Ino, off: number, data: Buffer): Promise<void> {
  vfs.open(ino)
  await vfs.write(ino, off, data)
  await vfs.release(ino)
}

async function newFile(vfs: Vfs, name: string, data: Buffer): Promise<Ino> {
  const ino = (await vfs.create(ROOT_INO, n(name), 0o644, owner)).ino
  await write(vfs, ino, 0, data)
  return ino
}

async function readAll(vfs: Vfs, ino: Ino): Promise<Buffer> {
  return vfs.read(ino, 0, (await vfs.getattr(ino)).size)
}

/** The stored row of `ino` in the volume's head layer (after draining the write-behind queue). */
async function headRow(
  vfs: Vfs,
  ino: Ino,
): Promise<{ inline: Buffer | null; extents: Buffer | null } | undefined> {
  await vfs.drainCommits()
  const { rows } = await t.tdb.db.query<{ inline_data: Buffer | null; extents: Buffer | null }>(
    'SELECT inline_data, extents FROM inodes WHERE layer_id = $1 AND ino = $2',
    [vfs.layerChain[0], ino],
  )
  const r = rows[0]
  return r && { inline: r.inline_data, extents: r.extents }
}

async function packCount(): Promise<number> {
  const { rows } = await t.tdb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM packs')
  return rows[0]?.n ?? 0
}

describe('inline small files', () => {
  it('closing small files writes no pack: their bytes are in the inode rows, committed with the create', async () => {
    const { vfs } = await newVfs()
    const before = await packCount()
    const files = Array.from({ length: 50 }, (_, k) => prng(1 + k * 97, k))
    const inos = await Promise.all(files.map((d, k) => newFile(vfs, `f${k}`, d)))
    await vfs.sync()
    expect(await packCount()).toBe(before)
    for (const [k, ino] of inos.entries()) {
      expect((await readAll(vfs, ino)).equals(files[k] as Buffer)).toBe(true)
      const row = await headRow(vfs, ino)
      expect(row?.inline?.equals(files[k] as Buffer)).toBe(true)
      expect(row?.extents).toBeNull()
    }
    // Usage counts file sizes as before (du, quotas).
    expect(vfs.usage.bytes).toBe(files.reduce((s, d) => s + d.length, 0))
  })

  it('crosses the threshold both ways: grows into chunks, comes back inline after O_TRUNC', async () => {
    const { vfs } = await newVfs()
    const small = prng(1000, 1)
    const ino = await newFile(vfs, 'f', small)
    expect((await headRow(vfs, ino))?.inline?.length).toBe(1000)
    // Growing past the threshold moves the old inline bytes and the new ones into chunks.
    const tail = prng(MAX, 2)
    await write(vfs, ino, 1000, tail)
    const big = Buffer.concat([small, tail])
    expect((await readAll(vfs, ino)).equals(big)).toBe(true)
    let row = await headRow(vfs, ino)
    expect(row?.inline).toBeNull()
    expect(row?.extents).not.toBeNull()
    t.store.dropMemoryCache()
    expect((await readAll(vfs, ino)).equals(big)).toBe(true)
    // A partial overwrite of a file with extents stays in chunks even when small.
    await vfs.setattr(ino, { size: 500 })
    await write(vfs, ino, 100, n('xyz'))
    const patched = Buffer.from(small.subarray(0, 500))
    n('xyz').copy(patched, 100)
    expect((await readAll(vfs, ino)).equals(patched)).toBe(true)
    expect((await headRow(vfs, ino))?.inline).toBeNull()
    // O_TRUNC then a small write: inline again.
    await vfs.setattr(ino, { size: 0 })
    await write(vfs, ino, 0, n('back inline'))
    row = await headRow(vfs, ino)
    expect(row?.inline?.toString()).toBe('back inline')
    expect(row?.extents).toBeNull()
    expect((await readAll(vfs, ino)).toString()).toBe('back inline')
    // Exactly at the threshold is inline; one byte more is not.
    await write(vfs, ino, 0, prng(MAX, 3))
    expect((await headRow(vfs, ino))?.inline?.length).toBe(MAX)
    await write(vfs, ino, MAX, n('!'))
    expect((await headRow(vfs, ino))?.inline).toBeNull()
    expect((await vfs.getattr(ino)).size).toBe(MAX + 1)
  })

  it('truncates and overwrites inline files; a larger size is a sparse tail that stays inline', async () => {
    const { vfs } = await newVfs()
    const data = prng(4000, 4)
    const ino = await newFile(vfs, 'f', data)
    const model = Buffer.from(data)
    // Partial overwrite in the middle and past the end, while another handle reads.
    vfs.open(ino)
    await vfs.write(ino, 100, n('hello'))
    await vfs.write(ino, 3998, n('tail!'))
    n('hello').copy(model, 100)
    let want = Buffer.concat([model.subarray(0, 3998), n('tail!')])
    expect((await vfs.read(ino, 0, 10_000)).equals(want)).toBe(true) // buffered, laid over inline bytes
    await vfs.release(ino)
    expect((await readAll(vfs, ino)).equals(want)).toBe(true)
    expect((await headRow(vfs, ino))?.inline?.equals(want)).toBe(true)
    // Down, then up: the cut bytes read as zeros.
    await vfs.setattr(ino, { size: 10 })
    await vfs.setattr(ino, { size: 200 * 1024 })
    want = Buffer.concat([want.subarray(0, 10), Buffer.alloc(200 * 1024 - 10)])
    expect((await readAll(vfs, ino)).equals(want)).toBe(true)
    expect((await headRow(vfs, ino))?.inline?.length).toBe(10)
    expect((await vfs.read(ino, 150_000, 20)).equals(Buffer.alloc(20))).toBe(true)
    // A write far into the sparse tail moves the file to chunks; the hole stays zeros.
    await write(vfs, ino, 150_000, n('far'))
    n('far').copy(want, 150_000)
    expect((await readAll(vfs, ino)).equals(want)).toBe(true)
    expect((await headRow(vfs, ino))?.inline).toBeNull()
    // Truncate to zero: no bytes, nothing inline.
    await vfs.setattr(ino, { size: 0 })
    expect((await readAll(vfs, ino)).length).toBe(0)
    expect(await headRow(vfs, ino)).toEqual({ inline: null, extents: null })
  })

  it('hard-linked inline files share their bytes through every name, packed or not', async () => {
    const { vfs } = await newVfs()
    const ino = await newFile(vfs, 'a', n('shared bytes'))
    await vfs.hardlink(ino, ROOT_INO, n('b'))
    await write(vfs, (await vfs.lookup(ROOT_INO, n('b'))).ino, 0, n('SHARED'))
    expect((await readAll(vfs, (await vfs.lookup(ROOT_INO, n('a'))).ino)).toString()).toBe('SHARED bytes')
    expect(await vfs.packInline()).toBe(1)
    await vfs.unlink(ROOT_INO, n('a'))
    expect((await readAll(vfs, (await vfs.lookup(ROOT_INO, n('b'))).ino)).toString()).toBe('SHARED bytes')
    expect((await vfs.getattr(ino)).nlink).toBe(1)
  })

  it('snapshots keep inline rows; fork and restore read them; the packer packs the head only', async () => {
    const { vfs, id } = await newVfs()
    const a = await newFile(vfs, 'a', n('version one'))
    const snap = await engine.snapshot(TEAM_A, id, { name: 's1' })
    await write(vfs, a, 8, n('two'))
    const fork = await engine.fork(TEAM_A, id)
    const fvfs = await engine.vfs(TEAM_A, fork.id)
    expect((await readAll(fvfs, a)).toString()).toBe('version two')
    await write(fvfs, a, 0, n('FORK'))
    // Pack the source's head (a newer row); the sealed layers below keep their inline rows.
    await write(vfs, a, 0, n('VERSION'))
    expect(await vfs.packInline()).toBe(1)
    expect((await readAll(vfs, a)).toString()).toBe('VERSION two')
    await engine.restore(TEAM_A, id, snap.id)
    expect((await readAll(vfs, a)).toString()).toBe('version one')
    const { rows } = await t.tdb.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM inodes WHERE layer_id = $1 AND inline_data IS NOT NULL',
      [snap.layerId],
    )
    expect(rows[0]?.n).toBe(1)
    expect((await readAll(fvfs, a)).toString()).toBe('FORKion two')
    // Nothing inline in a fresh head: the packer has no work and sealed layers are never touched.
    expect(await vfs.packInline()).toBe(0)
    expect((await readAll(vfs, a)).toString()).toBe('version one')
    await collectGarbage(t.store, { gracePeriodMs: 0, roots: [engine.gcRoots] })
    t.store.dropMemoryCache()
    expect((await readAll(fvfs, a)).toString()).toBe('FORKion two')
    expect((await fsck(t.store)).problems).toEqual([])
  })

  it('the packer moves inline files into packs without changing what readers see; GC keeps them', async () => {
    const { vfs } = await newVfs()
    const files = Array.from({ length: 40 }, (_, k) => prng(100 + k * 1500, 10 + k))
    const inos = await Promise.all(files.map((d, k) => newFile(vfs, `p${k}`, d)))
    const statsBefore = await Promise.all(inos.map((ino) => vfs.getattr(ino)))
    const packsBefore = await packCount()
    expect(await vfs.packInline()).toBe(files.length)
    expect(await packCount()).toBeGreaterThan(packsBefore)
    expect(await packCount()).toBeLessThanOrEqual(packsBefore + 2) // packs are shared, not one a file
    for (const [k, ino] of inos.entries()) {
      expect(await vfs.getattr(ino)).toEqual(statsBefore[k]) // times untouched
      const row = await headRow(vfs, ino)
      expect(row?.inline).toBeNull()
      expect(row?.extents).not.toBeNull()
    }
    await collectGarbage(t.store, { gracePeriodMs: 0, roots: [engine.gcRoots] })
    t.store.dropMemoryCache()
    for (const [k, ino] of inos.entries())
      expect((await readAll(vfs, ino)).equals(files[k] as Buffer)).toBe(true)
    expect((await fsck(t.store)).problems).toEqual([])
    expect(vfs.packerStats.errors).toBe(0)
  })

  it('the packer loses races to writers, truncates, unlinks and snapshots, and readers never notice', async () => {
    const { vfs, id } = await newVfs()
    const dirty = await newFile(vfs, 'dirty', n('old content'))
    const cut = await newFile(vfs, 'cut', n('to be truncated'))
    await newFile(vfs, 'gone', n('to be unlinked'))
    const kept = await newFile(vfs, 'kept', n('kept as is'))
    // A write buffered for the whole pass: the swap must leave that file alone.
    vfs.open(dirty)
    const packing = vfs.packInline()
    await vfs.write(dirty, 0, n('NEW'))
    await vfs.setattr(cut, { size: 5 })
    await vfs.unlink(ROOT_INO, n('gone'))
    await packing
    expect((await readAll(vfs, dirty)).toString()).toBe('NEW content')
    await vfs.release(dirty)
    expect((await readAll(vfs, dirty)).toString()).toBe('NEW content')
    expect((await headRow(vfs, dirty))?.inline?.toString()).toBe('NEW content')
    expect((await readAll(vfs, cut)).toString()).toBe('to be')
    expect((await readAll(vfs, kept)).toString()).toBe('kept as is')
    // A snapshot during a pass: the pass gives up on the moved head or finished before it.
    const again = vfs.packInline()
    const snap = await engine.snapshot(TEAM_A, id, { name: 'during' })
    await again
    for (const [ino, want] of [
      [dirty, 'NEW content'],
      [cut, 'to be'],
      [kept, 'kept as is'],
    ] as const) {
      expect((await readAll(vfs, ino)).toString()).toBe(want)
    }
    const probe = await engine.create(TEAM_A, { snapshotId: snap.id })
    const pvfs = await engine.vfs(TEAM_A, probe.id)
    expect((await readAll(pvfs, dirty)).toString()).toBe('NEW content')
    expect((await readAll(pvfs, cut)).toString()).toBe('to be')
    await collectGarbage(t.store, { gracePeriodMs: 0, roots: [engine.gcRoots] })
    t.store.dropMemoryCache()
    expect((await readAll(vfs, kept)).toString()).toBe('kept as is')
    expect((await fsck(t.store)).problems).toEqual([])
    expect(vfs.packerStats.errors).toBe(0)
  })

  it('stopping the packer ends its work: a closed volume packs nothing more', async () => {
    const { vfs, id } = await newVfs()
    await newFile(vfs, 'f', n('small'))
    await engine.closeVfs(TEAM_A, id)
    expect(await vfs.packInline()).toBe(0)
    const reopened = await engine.vfs(TEAM_A, id)
    expect((await readAll(reopened, (await reopened.lookup(ROOT_INO, n('f'))).ino)).toString()).toBe('small')
  })
})
