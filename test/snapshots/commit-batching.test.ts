// Many creates, small-file closes, unlinks and renames in one directory share metadata
// statements: the write-behind queue (commit-queue.ts) merges every change queued while a
// statement runs, up to limits.commitGroupChangesMax per statement. Counted on a real Postgres
// store that only counts its commits.
import type { Ino, LayerId } from '../../src/core/ids.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { limits } from '../../src/core/limits.js'
import type { MetadataBatch, VolumeUsage } from '../../src/snapshots/metadata-store.js'
import { PgMetadataStore } from '../../src/snapshots/metadata-store-pg.js'
import { ROOT_INO } from '../../src/snapshots/types.js'
import { Vfs } from '../../src/snapshots/vfs.js'
import { openMemoryTestStore, TEAM_A, type MemoryTestStore } from '../support/store.js'

/** Counts statements that commit: batches and synchronous commits of their own. */
class CountingStore extends PgMetadataStore {
  commits = 0
  override commit(
    batch: MetadataBatch,
    layerId: LayerId,
    usage: VolumeUsage,
    opts?: { durable?: boolean },
  ): Promise<void> {
    this.commits++
    return super.commit(batch, layerId, usage, opts)
  }

  override syncVolume(volumeId: string): Promise<void> {
    this.commits++
    return super.syncVolume(volumeId)
  }
}

const FILES = 300
const owner = { uid: 0, gid: 0 }
const name = (k: number): Buffer => Buffer.from(`f${k}`)
let t: MemoryTestStore

beforeAll(async () => {
  t = await openMemoryTestStore()
})
afterAll(async () => {
  await t.close()
})

describe('metadata statements are shared by concurrent changes', () => {
  it(`${FILES} small-file closes (also with sync), renames and unlinks in one directory take a few statements, not ${FILES}`, async () => {
    const metadata = new CountingStore(t.tdb.db)
    const volume = await metadata.catalog.create(TEAM_A)
    const vfs = await Vfs.open({ metadata, chunks: t.store, volume })
    const statements = Math.ceil(FILES / limits.commitGroupChangesMax) + 2
    const dir = (await vfs.mkdir(ROOT_INO, Buffer.from('d'), 0o755, owner)).ino
    const inos: Ino[] = []
    for (let k = 0; k < FILES; k++) inos.push((await vfs.create(dir, name(k), 0o644, owner)).ino)
    await vfs.sync()

    // Closes of small files: each flush is one inline row; concurrent closers share batches.
    metadata.commits = 0
    await Promise.all(
      inos.map(async (ino, k) => {
        vfs.open(ino)
        await vfs.write(ino, 0, Buffer.from(`content ${k}`))
        await vfs.release(ino)
      }),
    )
    await vfs.sync()
    expect(metadata.commits).toBeLessThanOrEqual(statements)

    // Closes as a FUSE mount with close-to-open durability makes them: flush, then sync. The
    // statement that empties the queue is the synchronous commit all of them wait for.
    metadata.commits = 0
    await Promise.all(
      inos.map(async (ino, k) => {
        vfs.open(ino)
        await vfs.write(ino, 0, Buffer.from(`durable ${k}`))
        await vfs.flush(ino)
        await vfs.sync()
        await vfs.release(ino)
      }),
    )
    expect(metadata.commits).toBeLessThanOrEqual(statements)
    await vfs.sync()
    expect(metadata.commits).toBeLessThanOrEqual(statements)

    // Every change below is queued before the first statement's reply can arrive (the event
    // loop runs all of them first: no I/O on the way, names and inodes are cached).
    metadata.commits = 0
    await Promise.all(inos.map((_, k) => vfs.rename(dir, name(k), dir, Buffer.from(`r${k}`))))
    await vfs.sync()
    expect(metadata.commits).toBeLessThanOrEqual(statements)

    metadata.commits = 0
    await Promise.all(inos.map((_, k) => vfs.unlink(dir, Buffer.from(`r${k}`))))
    await vfs.sync()
    expect(metadata.commits).toBeLessThanOrEqual(statements)
    expect(await vfs.readdir(dir)).toEqual([])
    await vfs.close()
  })
})
