// Integrity check and repair. `fsck` reads every pack, checks its trailer, re-hashes every chunk
// and compares the index with what the packs hold. `rebuildIndex` recreates pack and chunk rows
// from the pack trailers alone (the object store is the source of truth for what exists).
import type { TeamId, PackId } from '../core/ids.js'
import type { ChunkStore } from './chunk-store.js'
import { hashChunk } from './hash.js'
import { CODEC_RAW, parsePack, parsePackObjectKey, type PackTrailer } from './pack-format.js'

export type FsckProblemKind =
  | 'pack_missing' // a pack row whose object is gone
  | 'pack_size_mismatch'
  | 'pack_corrupt' // unreadable trailer
  | 'chunk_corrupt' // bytes do not hash to the name in the trailer
  | 'index_mismatch' // an index row that the pack's trailer does not confirm
  | 'orphan_object' // a pack object without a row (harmless; GC removes it)

export interface FsckProblem {
  kind: FsckProblemKind
  objectKey: string
  detail: string
}

export interface FsckReport {
  packsChecked: number
  chunksChecked: number
  bytesChecked: number
  problems: FsckProblem[]
  /** Rebuild only: rows added and rows removed. */
  rebuilt?: { packsAdded: number; chunksAdded: number; chunksRemoved: number; packsRemoved: number }
}

export interface FsckOptions {
  /** Called after each pack, for progress output. */
  onPack?: (objectKey: string) => void
  signal?: AbortSignal
}

interface PackRow {
  id: string
  team_id: string
  object_key: string
  size_bytes: number
  state: string
}

export async function fsck(store: ChunkStore, opts: FsckOptions = {}): Promise<FsckReport> {
  await store.flush()
  const report: FsckReport = { packsChecked: 0, chunksChecked: 0, bytesChecked: 0, problems: [] }
  const { rows: packs } = await store.db.query<PackRow>(
    `SELECT id, team_id, object_key, size_bytes, state FROM packs ORDER BY id`,
  )
  const known = new Set(packs.map((p) => p.object_key))
  for (const p of packs) {
    opts.signal?.throwIfAborted()
    await checkPack(store, p, report)
    opts.onPack?.(p.object_key)
  }
  for await (const o of store.objects.list('packs/', opts.signal ? { signal: opts.signal } : {})) {
    if (!known.has(o.key) && parsePackObjectKey(o.key)) {
      report.problems.push({
        kind: 'orphan_object',
        objectKey: o.key,
        detail: `${o.size} bytes, no pack row`,
      })
    }
  }
  return report
}

async function checkPack(store: ChunkStore, p: PackRow, report: FsckReport): Promise<void> {
  const problem = (kind: FsckProblemKind, detail: string): void =>
    void report.problems.push({ kind, objectKey: p.object_key, detail })
  const head = await store.objects.head(p.object_key)
  if (!head) {
    // A 'deleting' pack may legitimately be half-way through deletion; only live ones matter.
    if (p.state === 'live') problem('pack_missing', `pack ${p.id} is indexed but its object is missing`)
    return
  }
  if (head.size !== p.size_bytes) {
    problem('pack_size_mismatch', `object has ${head.size} bytes, index says ${p.size_bytes}`)
    return
  }
  const bytes = await store.objects.get(p.object_key)
  let trailer: PackTrailer
  try {
    trailer = parsePack(bytes, p.object_key)
  } catch (err) {
    problem('pack_corrupt', (err as Error).message)
    return
  }
  report.packsChecked++
  const inPack = new Map<string, { offset: number; storedBytes: number }>()
  for (const e of trailer.entries) {
    const chunk = bytes.subarray(e.offset, e.offset + e.storedBytes)
    report.chunksChecked++
    report.bytesChecked += chunk.length
    if (e.codec === CODEC_RAW && !hashChunk(chunk).equals(e.hash)) {
      problem('chunk_corrupt', `chunk ${e.hash.toString('hex')} at ${e.offset} does not match its hash`)
    }
    inPack.set(e.hash.toString('hex'), { offset: e.offset, storedBytes: e.storedBytes })
  }
  const { rows } = await store.db.query<{ hash: Buffer; offset_bytes: number; stored_bytes: number }>(
    `SELECT hash, offset_bytes, stored_bytes FROM chunks WHERE pack_id = $1`,
    [p.id],
  )
  for (const r of rows) {
    const e = inPack.get(r.hash.toString('hex'))
    if (!e || e.offset !== r.offset_bytes || e.storedBytes !== r.stored_bytes) {
      problem('index_mismatch', `index row for ${r.hash.toString('hex')} does not match the pack trailer`)
    }
  }
}

/**
 * Rebuilds the index from the packs: every pack object's trailer is read; missing pack and chunk
 * rows are added; rows that point at missing objects or disagree with a trailer are removed.
 * Chunks that GC had already swept come back as unreferenced and are swept again by the next GC.
 */
export async function rebuildIndex(store: ChunkStore, opts: FsckOptions = {}): Promise<FsckReport> {
  await store.flush()
  const report: FsckReport = {
    packsChecked: 0,
    chunksChecked: 0,
    bytesChecked: 0,
    problems: [],
    rebuilt: { packsAdded: 0, chunksAdded: 0, chunksRemoved: 0, packsRemoved: 0 },
  }
  const rebuilt = report.rebuilt as NonNullable<FsckReport['rebuilt']>
  const seen = new Set<string>()
  const { rows: started } = await store.db.query<{ now: Date }>('SELECT now() AS now')
  for await (const o of store.objects.list('packs/', opts.signal ? { signal: opts.signal } : {})) {
    const parsed = parsePackObjectKey(o.key)
    if (!parsed) continue
    const bytes = await store.objects.get(o.key)
    let trailer: PackTrailer
    try {
      trailer = parsePack(bytes, o.key)
    } catch (err) {
      report.problems.push({ kind: 'pack_corrupt', objectKey: o.key, detail: (err as Error).message })
      continue
    }
    if (trailer.teamId !== parsed.teamId) {
      report.problems.push({
        kind: 'pack_corrupt',
        objectKey: o.key,
        detail: `trailer team ${trailer.teamId} != key team`,
      })
      continue
    }
    // Only chunks whose bytes verify go back into the index.
    const good = trailer.entries.filter(
      (e) =>
        e.codec !== CODEC_RAW || hashChunk(bytes.subarray(e.offset, e.offset + e.storedBytes)).equals(e.hash),
    )
    for (const e of trailer.entries)
      if (!good.includes(e))
        report.problems.push({ kind: 'chunk_corrupt', objectKey: o.key, detail: e.hash.toString('hex') })
    report.packsChecked++
    report.chunksChecked += trailer.entries.length
    report.bytesChecked += bytes.length
    seen.add(parsed.packId)
    await store.db.tx(async (c) => {
      const ins = await c.query(
        `INSERT INTO packs (id, team_id, object_key, size_bytes, chunk_count, live_bytes)
         VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (id) DO NOTHING`,
        [parsed.packId, parsed.teamId, o.key, bytes.length, trailer.entries.length],
      )
      rebuilt.packsAdded += ins.rowCount ?? 0
      // Rows for this pack that the trailer does not confirm are wrong: remove them first.
      const del = await c.query(
        `DELETE FROM chunks c WHERE c.pack_id = $1 AND NOT EXISTS (
           SELECT 1 FROM unnest($2::bytea[], $3::bigint[], $4::int[]) AS t(h, o, s)
            WHERE t.h = c.hash AND t.o = c.offset_bytes AND t.s = c.stored_bytes)`,
        [parsed.packId, good.map((e) => e.hash), good.map((e) => e.offset), good.map((e) => e.storedBytes)],
      )
      rebuilt.chunksRemoved += del.rowCount ?? 0
      const added = await c.query(
        `INSERT INTO chunks (team_id, hash, pack_id, offset_bytes, stored_bytes, raw_bytes, codec)
         SELECT $1, h, $2, o, s, r, k FROM unnest($3::bytea[], $4::bigint[], $5::int[], $6::int[], $7::smallint[]) AS t(h, o, s, r, k)
         ON CONFLICT (team_id, hash) DO NOTHING`,
        [
          parsed.teamId as TeamId,
          parsed.packId as PackId,
          good.map((e) => e.hash),
          good.map((e) => e.offset),
          good.map((e) => e.storedBytes),
          good.map((e) => e.rawBytes),
          good.map((e) => e.codec),
        ],
      )
      rebuilt.chunksAdded += added.rowCount ?? 0
      await c.query(
        `UPDATE packs p SET live_bytes = coalesce((SELECT sum(stored_bytes) FROM chunks WHERE pack_id = p.id), 0),
                state = 'live', delete_after = NULL WHERE id = $1`,
        [parsed.packId],
      )
    })
    opts.onPack?.(o.key)
  }
  // Rows whose pack object does not exist: the chunks are gone, so the rows must go too.
  await store.db.tx(async (c) => {
    // Packs created after the listing began may be missing from it: leave them alone.
    const { rows } = await c.query<{ id: string }>(`SELECT id FROM packs WHERE created_at < $1`, [
      started[0]?.now,
    ])
    const missing = rows.map((r) => r.id).filter((id) => !seen.has(id))
    if (missing.length === 0) return
    const del = await c.query(`DELETE FROM chunks WHERE pack_id = ANY($1::text[])`, [missing])
    rebuilt.chunksRemoved += del.rowCount ?? 0
    const dp = await c.query(`DELETE FROM packs WHERE id = ANY($1::text[])`, [missing])
    rebuilt.packsRemoved += dp.rowCount ?? 0
    for (const id of missing)
      report.problems.push({ kind: 'pack_missing', objectKey: id, detail: 'row removed: no object' })
  })
  return report
}
