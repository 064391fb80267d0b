// The chunk index in Postgres: (team, BLAKE3) -> (pack, offset, length). Rows are inserted only
// after their pack object is durable (ordering rule 1) and deleted before the object (rule 4).
import { hotQuery, type Db } from '../core/db.js'
import type { PackId, TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { PackEntry } from './pack-format.js'

export interface ChunkLocation {
  packId: PackId
  objectKey: string
  offset: number
  storedBytes: number
  rawBytes: number
  codec: number
}

export interface NewPack {
  id: PackId
  teamId: TeamId
  objectKey: string
  sizeBytes: number
  entries: PackEntry[]
}

interface TouchRequest {
  hashes: Buffer[]
  resolve: (found: Set<string>) => void
  reject: (err: unknown) => void
}

export class ChunkIndex {
  private readonly touchQueue = new Map<TeamId, TouchRequest[]>()
  private readonly touchBusy = new Set<TeamId>()

  constructor(private readonly db: Db) {}

  /**
   * The subset of `hashes` already indexed for the team, as hex. Found rows are touched in the
   * same statement: GC never sweeps a chunk touched within its grace period, so a writer that
   * dedups against a chunk has that long to commit its reference. Requests that arrive while a
   * lookup for the team is running are merged into the next one (one round trip for many
   * writers). The touch commits relaxed: it only matters until the reference commits, which is
   * synchronous and flushes the WAL past it.
   */
  touchExisting(teamId: TeamId, hashes: Buffer[]): Promise<Set<string>> {
    if (hashes.length === 0) return Promise.resolve(new Set())
    return new Promise((resolve, reject) => {
      let q = this.touchQueue.get(teamId)
      if (!q) this.touchQueue.set(teamId, (q = []))
      q.push({ hashes, resolve, reject })
      // Runs the team's queue in the background; each request's own promise carries its outcome.
      if (!this.touchBusy.has(teamId)) void this.runTouches(teamId)
    })
  }

  private async runTouches(teamId: TeamId): Promise<void> {
    this.touchBusy.add(teamId)
    try {
      for (;;) {
        const q = this.touchQueue.get(teamId)
        if (!q || q.length === 0) break
        const batch: TouchRequest[] = []
        let n = 0
        while (
          q.length > 0 &&
          (batch.length === 0 || n + (q[0] as TouchRequest).hashes.length <= limits.touchBatchHashesMax)
        ) {
          const r = q.shift() as TouchRequest
          batch.push(r)
          n += r.hashes.length
        }
        try {
          const { rows } = await hotQuery<{ hash: Buffer }>(
            this.db.relaxed,
            'chunk_index_touch',
            `UPDATE chunks SET touched_at = now() WHERE team_id = $1 AND hash = ANY($2::bytea[]) RETURNING hash`,
            [teamId, batch.flatMap((r) => r.hashes)],
          )
          const found = new Set(rows.map((r) => r.hash.toString('hex')))
          for (const r of batch)
            r.resolve(new Set(r.hashes.map((h) => h.toString('hex')).filter((h) => found.has(h))))
        } catch (err) {
          for (const r of batch) r.reject(err)
        }
      }
    } finally {
      this.touchBusy.delete(teamId)
      this.touchQueue.delete(teamId)
    }
  }

  /**
   * Records a durable pack and its chunks: one statement (atomic, one round trip). Returns the
   * bytes this pack now serves.
   */
  async commitPack(pack: NewPack): Promise<number> {
    // A chunk another writer indexed meanwhile keeps its first location; this copy is dead and
    // the pack's live_bytes counts only the rows it won.
    const total = pack.entries.reduce((sum, e) => sum + e.storedBytes, 0)
    const { rows } = await hotQuery<{ lost: number | null }>(
      this.db,
      'chunk_index_commit_pack',
      `WITH p AS (
         INSERT INTO packs (id, team_id, object_key, size_bytes, chunk_count, live_bytes) VALUES ($2, $1, $8, $9, $10, $11)
         RETURNING id),
       ins AS (
         INSERT INTO chunks (team_id, hash, pack_id, offset_bytes, stored_bytes, raw_bytes, codec)
         SELECT $1, h, (SELECT id FROM p), o, s, r, k
           FROM unnest($3::bytea[], $4::bigint[], $5::int[], $6::int[], $7::smallint[]) AS t(h, o, s, r, k)
         ON CONFLICT (team_id, hash) DO UPDATE SET touched_at = now()
         RETURNING (xmax = 0) AS inserted, stored_bytes)
       SELECT coalesce(sum(stored_bytes) FILTER (WHERE NOT inserted), 0)::bigint AS lost FROM ins`,
      [
        pack.teamId,
        pack.id,
        pack.entries.map((e) => e.hash),
        pack.entries.map((e) => e.offset),
        pack.entries.map((e) => e.storedBytes),
        pack.entries.map((e) => e.rawBytes),
        pack.entries.map((e) => e.codec),
        pack.objectKey,
        pack.sizeBytes,
        pack.entries.length,
        total,
      ],
    )
    // Rare (two writers stored the same new chunk at once): the losing copies are dead bytes.
    const lost = Number(rows[0]?.lost ?? 0)
    if (lost > 0)
      await this.db.query(`UPDATE packs SET live_bytes = live_bytes - $2 WHERE id = $1`, [pack.id, lost])
    const live = total - lost
    return live
  }

  async locate(teamId: TeamId, hashes: Buffer[]): Promise<Map<string, ChunkLocation>> {
    const out = new Map<string, ChunkLocation>()
    if (hashes.length === 0) return out
    const { rows } = await this.db.query<{
      hash: Buffer
      pack_id: string
      object_key: string
      offset_bytes: number
      stored_bytes: number
      raw_bytes: number
      codec: number
    }>(
      `SELECT c.hash, c.pack_id, p.object_key, c.offset_bytes, c.stored_bytes, c.raw_bytes, c.codec
         FROM chunks c JOIN packs p ON p.id = c.pack_id
        WHERE c.team_id = $1 AND c.hash = ANY($2::bytea[])`,
      [teamId, hashes],
    )
    for (const r of rows) {
      out.set(r.hash.toString('hex'), {
        packId: r.pack_id as PackId,
        objectKey: r.object_key,
        offset: r.offset_bytes,
        storedBytes: r.stored_bytes,
        rawBytes: r.raw_bytes,
        codec: r.codec,
      })
    }
    return out
  }

  async stats(
    teamId?: TeamId,
  ): Promise<{ chunks: number; rawBytes: number; packs: number; packBytes: number; liveBytes: number }> {
    const where = teamId ? 'WHERE team_id = $1' : ''
    const params = teamId ? [teamId] : []
    const c = await this.db.query<{ n: number; raw: number }>(
      `SELECT count(*)::bigint AS n, coalesce(sum(raw_bytes), 0)::bigint AS raw FROM chunks ${where}`,
      params,
    )
    const p = await this.db.query<{ n: number; size: number; live: number }>(
      `SELECT count(*)::bigint AS n, coalesce(sum(size_bytes), 0)::bigint AS size, coalesce(sum(live_bytes), 0)::bigint AS live
         FROM packs ${where}`,
      params,
    )
    return {
      chunks: c.rows[0]?.n ?? 0,
      rawBytes: c.rows[0]?.raw ?? 0,
      packs: p.rows[0]?.n ?? 0,
      packBytes: p.rows[0]?.size ?? 0,
      liveBytes: p.rows[0]?.live ?? 0,
    }
  }
}
