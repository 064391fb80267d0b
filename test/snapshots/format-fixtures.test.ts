// The saved formats read with today's code: a volume's metadata rows (layers, volume, snapshot,
// inodes, dentries) load into a fresh database, the saved pack is indexed from its own trailer
// (fsck's rebuild), and the volume and its snapshot read back as the tree they were saved with.
// v2 (migration 0007) adds inline small files: read inline, then again after the packer ran.
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fsck, rebuildIndex } from '../../src/blockstore/fsck.js'
import { asTeamId } from '../../src/core/ids.js'
import { silentLogger } from '../../src/core/log.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { ROOT_INO } from '../../src/snapshots/types.js'
import {
  FORMATS_DIR,
  loadVolumeRows,
  readVolumeTree,
  type TreeNode,
  type VolumeRows,
} from '../support/format-fixtures.js'
import { openMemoryTestStore, type MemoryTestStore } from '../support/store.js'

interface SavedVolume {
  teamId: string
  volumeId: string
  snapshotId: string
  packKey?: string
  rows: VolumeRows
  expected: { head: Record<string, TreeNode>; snapshot: Record<string, TreeNode> }
}

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

describe('saved format fixtures', () => {
  it('a v1 volume with a snapshot reads back as saved, and takes new writes', async () => {
    const saved = JSON.parse(await readFile(path.join(FORMATS_DIR, 'volume-v1.json'), 'utf8')) as SavedVolume
    const team = asTeamId(saved.teamId)
    await loadVolumeRows(t.tdb.db, saved.rows)
    await t.objects.put(saved.packKey as string, await readFile(path.join(FORMATS_DIR, 'pack-v1.pack')))
    const rebuilt = await rebuildIndex(t.store)
    expect(rebuilt.problems).toEqual([])
    expect(rebuilt.rebuilt?.chunksAdded).toBe(3)

    const vfs = await engine.vfs(team, saved.volumeId)
    expect(await readVolumeTree(vfs)).toEqual(saved.expected.head)
    const fromSnapshot = await engine.create(team, { snapshotId: saved.snapshotId })
    expect(await readVolumeTree(await engine.vfs(team, fromSnapshot.id))).toEqual(saved.expected.snapshot)
    expect(vfs.usage.bytes).toBe(saved.rows.volumes[0]?.['used_bytes'])

    // The old rows are a normal volume: new files and layers go on top of them.
    const f = await vfs.create(ROOT_INO, Buffer.from('new.txt'), 0o644, { uid: 0, gid: 0 })
    vfs.open(f.ino)
    await vfs.write(f.ino, 0, Buffer.from('written today'))
    await vfs.release(f.ino)
    expect(f.ino).toBeGreaterThanOrEqual(saved.rows.volumes[0]?.['next_ino'] as number)
    await engine.snapshot(team, saved.volumeId, { name: 'today' })
    expect((await vfs.read(f.ino, 0, 100)).toString()).toBe('written today')
    expect((await fsck(t.store)).problems).toEqual([])
  })

  it('a v2 volume with inline small files and a snapshot reads back as saved, also once packed', async () => {
    const saved = JSON.parse(await readFile(path.join(FORMATS_DIR, 'volume-v2.json'), 'utf8')) as SavedVolume
    const team = asTeamId(saved.teamId)
    // Its own database: layer ids of the v1 fixture would collide.
    const t2 = await openMemoryTestStore()
    const engine2 = new VolumeEngine({ db: t2.tdb.db, chunks: t2.store, log: silentLogger })
    try {
      await loadVolumeRows(t2.tdb.db, saved.rows)
      const vfs = await engine2.vfs(team, saved.volumeId)
      expect(await readVolumeTree(vfs)).toEqual(saved.expected.head)
      const fromSnapshot = await engine2.create(team, { snapshotId: saved.snapshotId })
      const svfs = await engine2.vfs(team, fromSnapshot.id)
      expect(await readVolumeTree(svfs)).toEqual(saved.expected.snapshot)
      expect(vfs.usage.bytes).toBe(saved.rows.volumes[0]?.['used_bytes'])
      // The packer moves the head's inline rows into packs; nothing readable changes.
      expect(await vfs.packInline()).toBeGreaterThan(0)
      t2.store.dropMemoryCache()
      expect(await readVolumeTree(vfs)).toEqual(saved.expected.head)
      expect(await readVolumeTree(svfs)).toEqual(saved.expected.snapshot)
      expect((await fsck(t2.store)).problems).toEqual([])
    } finally {
      await engine2.close()
      await t2.close()
    }
  })
})
