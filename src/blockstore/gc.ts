// Mark-and-sweep GC of the chunk store (ordering rule 4): mark every chunk reachable from a
// root, sweep unmarked chunks untouched for the grace period (index rows first), rewrite packs
// that are mostly garbage, delete objects of dead packs, then orphan objects (a crashed upload).
import type pg from 'pg'
import { ADVISORY_LOCK_KEYS } from '../core/advisory-locks.js'
import type { Db } from '../core/db.js'
import type { PackId, TeamId } from '../core/ids.js'
import { newPackId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { ChunkStore } from './chunk-store.js'
import { hashChunk } from './hash.js'
import {
  CODEC_RAW,
  FOOTER_BYTES,
  packObjectKey,
  parsePackObjectKey,
  trailerBytesFor,
  writeTrailer,
  type PackEntry,
} from './pack-format.js'

/** Something above the chunk store that holds references: yields batches of reachable hashes. */
export interface RootSource {
  readonly name: string
  reachable(db: Db): AsyncIterable<{ teamId: TeamId; hashes: Buffer[] }>
}

export interface GcOptions {
  dryRun?: boolean
  gracePeriodMs?: number
  repackLiveRatioMax?: number
  /**
   * Pack objects without a row are deleted once older than this. Default: the grace period, but
   * at least 15 minutes, so an upload whose index commit is still in flight is never taken.
   */
  orphanMinAgeMs?: number
  roots?: RootSource[]
  signal?: AbortSignal
}

export interface GcReport {
  dryRun: boolean
  markedChunks: number
  sweptChunks: number
  sweptBytes: number
  repackedPacks: number
  repackedBytes: number
  deletedPacks: number
  deletedBytes: number
  orphanObjects: number
  orphanBytes: number
}

const GC_LOCK_KEY = ADVISORY_LOCK_KEYS.gc

/** The explicit roots table (pins, in-flight writes); expired roots are deleted by the GC. */
export const tableRoots: RootSource = {
  name: 'gc_roots',
  async *reachable(db) {
    let after: Buffer = Buffer.alloc(0)
    let afterRoot = ''
    for (;;) {
      const { rows } = await db.query<{ root_id: string; team_id: string; hash: Buffer }>(
        `SELECT rc.root_id, r.team_id, rc.hash FROM gc_root_chunks rc JOIN gc_roots r ON r.id = rc.root_id
          WHERE (rc.root_id, rc.hash) > ($1, $2) ORDER BY rc.root_id, rc.hash LIMIT $3`,
        [afterRoot, after, limits.gcBatchSize],
      )
      if (rows.length === 0) return
      const byTeam = new Map<string, Buffer[]>()
      for (const r of rows) {
        let list = byTeam.get(r.team_id)
        if (!list) byTeam.set(r.team_id, (list = []))
        list.push(r.hash)
      }
      for (const [teamId, hashes] of byTeam) yield { teamId: teamId as TeamId, hashes }
      const last = rows[rows.length - 1] as (typeof rows)[number]
      afterRoot = last.root_id
      after = last.hash
    }
  },
}

export async function collectGarbage(store: ChunkStore, opts: GcOptions = {}): Promise<GcReport> {
  const db = store.db
  const log = store.log.child({ op: 'gc' })
  const graceMs = opts.gracePeriodMs ?? limits.gcGracePeriodMs
  const dryRun = opts.dryRun ?? false
  const report: GcReport = {
    dryRun,
    markedChunks: 0,
    sweptChunks: 0,
    sweptBytes: 0,
    repackedPacks: 0,
    repackedBytes: 0,
    deletedPacks: 0,
    deletedBytes: 0,
    orphanObjects: 0,
    orphanBytes: 0,
  }
  // One session holds the lock and the mark table for the whole run.
  const session = await db.pool.connect()
  try {
    const { rows: lock } = await session.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [
      GC_LOCK_KEY,
    ])
    if (!lock[0]?.ok) throw new Error('another GC is running')
    try {
      await store.flush()
      if (!dryRun) await db.query(`DELETE FROM gc_roots WHERE expires_at IS NOT NULL AND expires_at < now()`)
      await mark(session, db, [tableRoots, ...(opts.roots ?? [])], report, opts.signal)
      await sweep(session, graceMs, dryRun, report)
      if (!dryRun) {
        await repack(store, graceMs, opts.repackLiveRatioMax ?? limits.gcRepackLiveRatioMax, report, log)
        await deleteDeadPacks(store, graceMs, report)
        await deleteOrphans(store, opts.orphanMinAgeMs ?? Math.max(graceMs, limits.gcOrphanAgeMinMs), report)
      } else {
        await countDeadPacks(session, graceMs, report)
      }
    } finally {
      // These fail only on a broken connection, whose end drops both (temp tables and advisory
      // locks belong to the session); the run's own error, if any, is the one to report.
      await session.query('DROP TABLE IF EXISTS gc_mark').catch(() => undefined)
      await session.query('SELECT pg_advisory_unlock($1)', [GC_LOCK_KEY]).catch(() => undefined)
    }
  } finally {
    session.release()
  }
  log.info('gc finished', { ...report })
  return report
}

async function mark(
  session: pg.PoolClient,
  db: Db,
  roots: RootSource[],
  report: GcReport,
  signal?: AbortSignal,
): Promise<void> {
  await session.query(
    `CREATE TEMP TABLE gc_mark (team_id text NOT NULL, hash bytea NOT NULL, PRIMARY KEY (team_id, hash))`,
  )
  for (const root of roots) {
    for await (const batch of root.reachable(db)) {
      signal?.throwIfAborted()
      const { rowCount } = await session.query(
        `INSERT INTO gc_mark (team_id, hash) SELECT $1, h FROM unnest($2::bytea[]) AS t(h) ON CONFLICT DO NOTHING`,
        [batch.teamId, batch.hashes],
      )
      report.markedChunks += rowCount ?? 0
    }
  }
  await session.query('ANALYZE gc_mark')
}

async function sweep(
  session: pg.PoolClient,
  graceMs: number,
  dryRun: boolean,
  report: GcReport,
): Promise<void> {
  const cutoff = `now() - make_interval(secs => $1::double precision / 1000)`
  if (dryRun) {
    const { rows } = await session.query<{ n: number; bytes: number }>(
      `SELECT count(*)::bigint AS n, coalesce(sum(stored_bytes), 0)::bigint AS bytes FROM chunks c
        WHERE c.touched_at < ${cutoff}
          AND NOT EXISTS (SELECT 1 FROM gc_mark m WHERE m.team_id = c.team_id AND m.hash = c.hash)`,
      [graceMs],
    )
    report.sweptChunks = rows[0]?.n ?? 0
    report.sweptBytes = rows[0]?.bytes ?? 0
    return
  }
  // Rule 4: the index rows go first (one transaction with the pack accounting); objects later.
  // A writer that touched a chunk after the cutoff keeps it: the WHERE re-checks under the row lock.
  await session.query('BEGIN')
  try {
    const { rows } = await session.query<{ n: number; bytes: number }>(
      `WITH gone AS (
         DELETE FROM chunks c
          WHERE c.touched_at < ${cutoff}
            AND NOT EXISTS (SELECT 1 FROM gc_mark m WHERE m.team_id = c.team_id AND m.hash = c.hash)
        RETURNING c.pack_id, c.stored_bytes),
       per_pack AS (SELECT pack_id, sum(stored_bytes) AS bytes, count(*) AS n FROM gone GROUP BY pack_id),
       upd AS (UPDATE packs p SET live_bytes = p.live_bytes - per_pack.bytes FROM per_pack WHERE p.id = per_pack.pack_id RETURNING 1)
       SELECT coalesce(sum(n), 0)::bigint AS n, coalesce(sum(bytes), 0)::bigint AS bytes FROM per_pack`,
      [graceMs],
    )
    await session.query('COMMIT')
    report.sweptChunks = rows[0]?.n ?? 0
    report.sweptBytes = rows[0]?.bytes ?? 0
  } catch (err) {
    // A failed ROLLBACK means a broken connection: the transaction dies with it.
    await session.query('ROLLBACK').catch(() => undefined)
    throw err
  }
}

/** Dry run: packs whose every chunk would be swept, plus packs already waiting for deletion. */
async function countDeadPacks(session: pg.PoolClient, graceMs: number, report: GcReport): Promise<void> {
  const { rows } = await session.query<{ n: number; bytes: number }>(
    `SELECT count(*)::bigint AS n, coalesce(sum(size_bytes), 0)::bigint AS bytes FROM packs p
      WHERE p.state = 'deleting' OR NOT EXISTS (
        SELECT 1 FROM chunks c WHERE c.pack_id = p.id
           AND (c.touched_at >= now() - make_interval(secs => $1::double precision / 1000)
                OR EXISTS (SELECT 1 FROM gc_mark m WHERE m.team_id = c.team_id AND m.hash = c.hash)))`,
    [graceMs],
  )
  report.deletedPacks = rows[0]?.n ?? 0
  report.deletedBytes = rows[0]?.bytes ?? 0
}

interface PackRow {
  id: PackId
  team_id: TeamId
  object_key: string
  size_bytes: number
  live_bytes: number
}

/** Packs whose live bytes fell under the ratio: copy their live chunks into new packs. */
async function repack(
  store: ChunkStore,
  graceMs: number,
  ratioMax: number,
  report: GcReport,
  log: Logger,
): Promise<void> {
  const db = store.db
  const { rows: packs } = await db.query<PackRow>(
    `SELECT id, team_id, object_key, size_bytes, live_bytes FROM packs
      WHERE state = 'live' AND live_bytes > 0 AND live_bytes < size_bytes * $1::double precision
        AND created_at < now() - make_interval(secs => $2::double precision / 1000)
      ORDER BY team_id, live_bytes`,
    [ratioMax, graceMs],
  )
  for (const p of packs) {
    const { rows: live } = await db.query<{
      hash: Buffer
      offset_bytes: number
      stored_bytes: number
      raw_bytes: number
      codec: number
    }>(
      `SELECT hash, offset_bytes, stored_bytes, raw_bytes, codec FROM chunks WHERE pack_id = $1 ORDER BY offset_bytes`,
      [p.id],
    )
    if (live.length === 0) continue
    const packBytes = await store.objects.get(p.object_key)
    const newId = newPackId()
    const liveBytes = live.reduce((s, r) => s + r.stored_bytes, 0)
    const out = Buffer.allocUnsafe(liveBytes + trailerBytesFor(p.team_id, live.length) + FOOTER_BYTES)
    const entries: PackEntry[] = []
    let at = 0
    for (const r of live) {
      const chunk = packBytes.subarray(r.offset_bytes, r.offset_bytes + r.stored_bytes)
      if (r.codec === CODEC_RAW && !hashChunk(chunk).equals(r.hash)) {
        // Never copy a corrupt chunk under its name; fsck reports it.
        log.error('repack: corrupt chunk left in place', { packId: p.id, hash: r.hash.toString('hex') })
        entries.length = 0
        break
      }
      chunk.copy(out, at)
      entries.push({
        hash: r.hash,
        offset: at,
        storedBytes: r.stored_bytes,
        rawBytes: r.raw_bytes,
        codec: r.codec,
      })
      at += r.stored_bytes
    }
    if (entries.length !== live.length) continue
    const size = writeTrailer(out, at, { teamId: p.team_id, entries })
    const newKey = packObjectKey(p.team_id, newId)
    await store.objects.put(newKey, out.subarray(0, size))
    await db.tx(async (c) => {
      await c.query(
        `INSERT INTO packs (id, team_id, object_key, size_bytes, chunk_count, live_bytes) VALUES ($1, $2, $3, $4, $5, 0)`,
        [newId, p.team_id, newKey, size, entries.length],
      )
      // Only rows still in the old pack move; the new pack's live bytes count exactly those.
      const { rows } = await c.query<{ moved: number | null }>(
        `WITH moved AS (
           UPDATE chunks c SET pack_id = $1, offset_bytes = t.o
             FROM unnest($3::bytea[], $4::bigint[]) AS t(h, o)
            WHERE c.team_id = $2 AND c.hash = t.h AND c.pack_id = $5
           RETURNING c.stored_bytes)
         SELECT sum(stored_bytes)::bigint AS moved FROM moved`,
        [newId, p.team_id, entries.map((e) => e.hash), entries.map((e) => e.offset), p.id],
      )
      await c.query(`UPDATE packs SET live_bytes = $2 WHERE id = $1`, [newId, Number(rows[0]?.moved ?? 0)])
      await c.query(
        `UPDATE packs SET state = 'deleting', live_bytes = 0,
                delete_after = now() + make_interval(secs => $2::double precision / 1000) WHERE id = $1`,
        [p.id, graceMs],
      )
    })
    report.repackedPacks++
    report.repackedBytes += liveBytes
  }
}

/** Packs with no live chunk become `deleting`; after the grace period their objects go. */
async function deleteDeadPacks(store: ChunkStore, graceMs: number, report: GcReport): Promise<void> {
  const db = store.db
  await db.query(
    `UPDATE packs p SET state = 'deleting', delete_after = now() + make_interval(secs => $1::double precision / 1000)
      WHERE state = 'live' AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.pack_id = p.id)
        AND created_at < now() - make_interval(secs => $1::double precision / 1000)`,
    [graceMs],
  )
  const { rows } = await db.query<{ id: string; object_key: string; size_bytes: number }>(
    `SELECT id, object_key, size_bytes FROM packs WHERE state = 'deleting' AND delete_after <= now()`,
  )
  for (const r of rows) {
    // The row stays until the object is gone, so a failed delete is retried by the next run.
    await store.objects.delete(r.object_key)
    await db.query(`DELETE FROM packs WHERE id = $1 AND state = 'deleting'`, [r.id])
    report.deletedPacks++
    report.deletedBytes += r.size_bytes
  }
}

/** Pack objects no row knows (an upload whose index commit never happened), once old enough. */
async function deleteOrphans(store: ChunkStore, minAgeMs: number, report: GcReport): Promise<void> {
  const cutoff = Date.now() - minAgeMs
  let batch: Array<{ key: string; size: number; packId: string }> = []
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return
    const { rows } = await store.db.query<{ id: string }>(`SELECT id FROM packs WHERE id = ANY($1::text[])`, [
      batch.map((b) => b.packId),
    ])
    const known = new Set(rows.map((r) => r.id))
    for (const b of batch) {
      if (known.has(b.packId)) continue
      await store.objects.delete(b.key)
      report.orphanObjects++
      report.orphanBytes += b.size
    }
    batch = []
  }
  for await (const o of store.objects.list('packs/')) {
    const parsed = parsePackObjectKey(o.key)
    if (!parsed || o.lastModified.getTime() > cutoff) continue
    batch.push({ key: o.key, size: o.size, packId: parsed.packId })
    if (batch.length >= limits.gcBatchSize) await flush()
  }
  await flush()
}
