// What every blockstore figure shares: the environment (one embedded Postgres, a fresh migrated
// database per store), stores over the local object store, the bench's knobs, and retries that
// record a store's failure in the figure instead of ending the suite.
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { ChunkStore } from '../../src/blockstore/chunk-store.js'
import { LocalObjectStore } from '../../src/blockstore/local-object-store.js'
import type { ObjectStore } from '../../src/blockstore/object-store.js'
import { ResilientObjectStore, type ObjectStoreStats } from '../../src/blockstore/resilient-object-store.js'
import { openDb, type Db } from '../../src/core/db.js'
import type { EmbeddedPg } from '../../src/core/embedded-pg.js'
import { asTeamId, type TeamId } from '../../src/core/ids.js'
import type { Logger } from '../../src/core/log.js'
import { migrate } from '../../src/core/migrate.js'
import { MiB, errorMessage, note } from '../lib.js'

export const TEAM: TeamId = asTeamId('bench')
// Files in flight while storing a tree (S0_BENCH_WRITERS). More writers fill packs better (group
// commit) but, as of this writing, hit a PackWriter race more often (see the bench report).
export const WRITE_CONCURRENCY = envInt('S0_BENCH_WRITERS', 8)
export const READ_CONCURRENCY = 4
export const RESTORE_BATCH_BYTES = 64 * MiB

export function envInt(name: string, dflt: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return dflt
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0)
    throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`)
  return n
}

export interface Env {
  pg: EmbeddedPg
  adminUrl: string
  work: string
  log: Logger
  dbs: Db[]
}

export async function freshDb(env: Env): Promise<Db> {
  const name = `bench_${randomBytes(6).toString('hex')}`
  const admin = openDb(env.adminUrl, { poolSize: 1 })
  try {
    await admin.query(`CREATE DATABASE ${name}`)
  } finally {
    await admin.close()
  }
  const db = openDb(env.adminUrl.replace(/\/postgres$/, `/${name}`), { applicationName: 's0-bench' })
  await migrate(db, env.log)
  env.dbs.push(db)
  return db
}

export interface BenchStore {
  store: ChunkStore
  objects: ResilientObjectStore
  db: Db
  dir: string | undefined
}

export async function openLocalStore(env: Env, label: string): Promise<BenchStore> {
  const dir = path.join(env.work, 'stores', `${label}-${randomBytes(4).toString('hex')}`)
  const db = await freshDb(env)
  const objects = new ResilientObjectStore(await LocalObjectStore.open(dir))
  const store = await ChunkStore.open({ db, objects, log: env.log })
  return { store, objects, db, dir }
}

/** A second ChunkStore over the same database and objects: empty memory cache, no disk cache. */
export async function reopenCold(env: Env, s: BenchStore, inner: ObjectStore): Promise<BenchStore> {
  const objects = new ResilientObjectStore(inner)
  const store = await ChunkStore.open({ db: s.db, objects, log: env.log })
  store.dropMemoryCache()
  return { store, objects, db: s.db, dir: s.dir }
}

export async function dropStore(env: Env, s: BenchStore): Promise<void> {
  await s.store.close()
  if (s.dir) await rm(s.dir, { recursive: true, force: true })
}

export function statsDelta(after: ObjectStoreStats, before: ObjectStoreStats): ObjectStoreStats {
  const out = { ...after }
  for (const k of Object.keys(after) as Array<keyof ObjectStoreStats>) out[k] = after[k] - before[k]
  return out
}

/**
 * Runs one measurement, retrying (S0_BENCH_ATTEMPTS, default 2 attempts) on an error of the store (recorded in `errors`, which
 * goes into the figure's detail): a figure is still produced, and the failure is reported.
 */
export async function withRetry<T>(
  label: string,
  errors: string[],
  fn: () => Promise<T>,
): Promise<T | undefined> {
  const attempts = Math.round(envInt('S0_BENCH_ATTEMPTS', 2))
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await fn()
    } catch (err) {
      const where =
        err instanceof Error
          ? (err.stack ?? '')
              .split('\n')
              .slice(1, 4)
              .map((l) => l.trim())
          : []
      const msg = [`${label}, attempt ${attempt}: ${errorMessage(err)}`, ...where].join(' | ')
      errors.push(msg)
      note(`ERROR ${msg}`)
    }
  }
  return undefined
}
