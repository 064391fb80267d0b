// Builds a real ChunkStore for a test: a fresh Postgres database and a local-directory (or given)
// object store, with request counters; or, for tests that need no disk, an in-memory one.
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { ChunkStore, type ChunkStoreOptions } from '../../src/blockstore/chunk-store.js'
import { LocalObjectStore } from '../../src/blockstore/local-object-store.js'
import { MemoryObjectStore } from '../../src/blockstore/memory-object-store.js'
import type { ObjectStore } from '../../src/blockstore/object-store.js'
import { ResilientObjectStore } from '../../src/blockstore/resilient-object-store.js'
import type { Db } from '../../src/core/db.js'
import { asTeamId, type TeamId } from '../../src/core/ids.js'
import { silentLogger } from '../../src/core/log.js'
import { freshDb, type TestDb } from './db.js'

export interface TestStore {
  store: ChunkStore
  objects: ResilientObjectStore
  local: LocalObjectStore
  dir: string
  tdb: TestDb
  close(): Promise<void>
}

/** A chunk store over MemoryObjectStore, without a disk cache: nothing touches the disk. */
export interface MemoryTestStore {
  store: ChunkStore
  objects: ResilientObjectStore
  memory: MemoryObjectStore
  tdb: TestDb
  close(): Promise<void>
}

export const TEAM_A: TeamId = asTeamId('team-a')
export const TEAM_B: TeamId = asTeamId('team-b')

export async function openTestStore(
  opts: { wrap?: (local: ObjectStore) => ObjectStore; store?: Partial<ChunkStoreOptions>; tdb?: TestDb } = {},
): Promise<TestStore> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 's0-store-'))
  const local = await LocalObjectStore.open(path.join(dir, 'objects'))
  const objects = new ResilientObjectStore(opts.wrap ? opts.wrap(local) : local, { backoffBaseMs: 1 })
  const tdb = opts.tdb ?? (await freshDb())
  const store = await ChunkStore.open({
    db: tdb.db,
    objects,
    log: silentLogger,
    diskCacheDir: path.join(dir, 'cache'),
    diskCacheBytes: 64 * 1024 * 1024,
    ...opts.store,
  })
  return {
    store,
    objects,
    local,
    dir,
    tdb,
    close: async () => {
      await store.close()
      if (!opts.tdb) await tdb.drop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * A chunk store over an existing local object store and database (a killed writer's, a stopped
 * server's state directory), as a restarted process opens it; no disk cache to hide damage.
 * The caller closes it.
 */
export async function reopenStore(opts: { db: Db; objectsDir: string }): Promise<ChunkStore> {
  return ChunkStore.open({
    db: opts.db,
    objects: new ResilientObjectStore(await LocalObjectStore.open(opts.objectsDir), { backoffBaseMs: 1 }),
    log: silentLogger,
    diskCacheBytes: 0,
  })
}

/** The pack objects the index knows, oldest first. */
export async function packKeys(t: TestStore): Promise<string[]> {
  const { rows } = await t.tdb.db.query<{ object_key: string }>(
    'SELECT object_key FROM packs ORDER BY created_at, object_key',
  )
  return rows.map((r) => r.object_key)
}

/** Where the test store's local object store keeps `key` (to damage or remove it). */
export function objectPath(t: TestStore, key: string): string {
  return path.join(t.dir, 'objects', key)
}

/** How many objects are under `prefix` (index or not: orphans count). */
export async function countObjects(objects: ObjectStore, prefix = 'packs/'): Promise<number> {
  let n = 0
  for await (const _ of objects.list(prefix)) n++
  return n
}

export async function openMemoryTestStore(
  opts: { store?: Partial<ChunkStoreOptions>; tdb?: TestDb } = {},
): Promise<MemoryTestStore> {
  const memory = new MemoryObjectStore()
  const objects = new ResilientObjectStore(memory, { backoffBaseMs: 1 })
  const tdb = opts.tdb ?? (await freshDb())
  const store = await ChunkStore.open({
    db: tdb.db,
    objects,
    log: silentLogger,
    ...opts.store,
    diskCacheBytes: 0,
  })
  return {
    store,
    objects,
    memory,
    tdb,
    close: async () => {
      await store.close()
      if (!opts.tdb) await tdb.drop()
    },
  }
}

/** Deterministic pseudo-random bytes (xorshift32), so failures replay. */
export function prng(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size)
  // Spread the seed: `seed | 1` alone would make seeds 6 and 7 produce the same bytes.
  let x = Math.imul(seed + 1, 0x9e3779b1) | 1
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

export async function readAll(
  store: ChunkStore,
  team: TeamId,
  refs: Array<{ hash: Buffer; size: number }>,
): Promise<Buffer> {
  return Buffer.concat(
    await store.readMany(
      team,
      refs.map((r) => r.hash),
    ),
  )
}
