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
