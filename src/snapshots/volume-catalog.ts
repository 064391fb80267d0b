// The volume catalog in Postgres: volumes, snapshots and their layers. Snapshot, fork and restore
// are O(1): they seal a layer and start a fresh empty one on top. Deleting releases only layers
// nothing else uses.
import { randomUUID } from 'node:crypto'
import type pg from 'pg'
import type { Db, Queryable } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import type { Ino, LayerId, SnapshotId, TeamId, VolumeId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { writeInode } from './metadata.js'
import type {
  AccessMode,
  CreateVolumeOptions,
  LayerDiff,
  SnapshotRow,
  VolumeCatalog,
  VolumeKind,
  VolumeRow,
} from './metadata-store.js'
import { S_IFDIR, ROOT_INO, nowNs } from './types.js'

// The row types moved to the interface file; these names stay importable from here.
export type { AccessMode, CreateVolumeOptions, SnapshotRow, VolumeKind, VolumeRow } from './metadata-store.js'

interface VolumeDbRow {
  id: VolumeId
  team_id: string
  kind: VolumeKind
  head_layer_id: LayerId
  source_volume_id: VolumeId | null
  default_posix_uid: number
  default_posix_gid: number
  access_mode: AccessMode
  next_ino: number
  quota_bytes: number | null
  quota_inodes: number | null
  used_bytes: number
  used_inodes: number
  created_at: Date
  updated_at: Date
}

function volumeFromRow(r: VolumeDbRow): VolumeRow {
  return {
    id: r.id,
    teamId: r.team_id as TeamId,
    kind: r.kind,
    headLayerId: r.head_layer_id,
    sourceVolumeId: r.source_volume_id,
    defaultPosixUid: r.default_posix_uid,
    defaultPosixGid: r.default_posix_gid,
    accessMode: r.access_mode,
    nextIno: r.next_ino,
    quotaBytes: r.quota_bytes,
    quotaInodes: r.quota_inodes,
    usedBytes: r.used_bytes,
    usedInodes: r.used_inodes,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

interface SnapshotDbRow {
  id: SnapshotId
  volume_id: VolumeId
  team_id: string
  layer_id: LayerId
  name: string
  description: string
  size_bytes: number
  inodes: number
  next_ino: number
  created_at: Date
  expires_at: Date | null
}

function snapshotFromRow(r: SnapshotDbRow): SnapshotRow {
  return {
    id: r.id,
    volumeId: r.volume_id,
    teamId: r.team_id as TeamId,
    layerId: r.layer_id,
    name: r.name,
    description: r.description,
    sizeBytes: r.size_bytes,
    inodes: r.inodes,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function notFound(what: string, id: string): S0Error {
  return new S0Error('not_found', `${what} ${id} not found`)
}

async function newLayer(q: Queryable, teamId: TeamId, parentId: LayerId | null): Promise<LayerId> {
  const { rows } = await q.query<{ id: LayerId }>(
    `INSERT INTO layers (team_id, parent_id, depth, sealed)
     VALUES ($1, $2, COALESCE((SELECT depth + 1 FROM layers WHERE id = $2), 0), false) RETURNING id`,
    [teamId, parentId],
  )
  return (rows[0] as { id: LayerId }).id
}

async function lockVolume(c: pg.PoolClient, teamId: TeamId, id: string): Promise<VolumeRow> {
  if (!UUID.test(id)) throw notFound('volume', id)
  const { rows } = await c.query<VolumeDbRow>(
    `SELECT * FROM volumes WHERE id = $1 AND team_id = $2 FOR UPDATE`,
    [id, teamId],
  )
  if (!rows[0]) throw notFound('volume', id)
  return volumeFromRow(rows[0])
}

/** Seals the volume's head and gives it a fresh empty head; returns the sealed layer. */
async function sealHead(c: pg.PoolClient, v: VolumeRow): Promise<LayerId> {
  await c.query(`UPDATE layers SET sealed = true WHERE id = $1`, [v.headLayerId])
  const head = await newLayer(c, v.teamId, v.headLayerId)
  await c.query(`UPDATE volumes SET head_layer_id = $2, updated_at = now() WHERE id = $1`, [v.id, head])
  return v.headLayerId
}

/** The parent of `layerId` if the layer holds no rows and has a parent; else null. */
async function emptyLayerParent(c: pg.PoolClient, layerId: LayerId): Promise<LayerId | null> {
  const { rows } = await c.query<{ parent_id: LayerId | null }>(
    `SELECT parent_id FROM layers WHERE id = $1 AND parent_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM inodes WHERE layer_id = $1)
        AND NOT EXISTS (SELECT 1 FROM dentries WHERE layer_id = $1)`,
    [layerId],
  )
  return rows[0]?.parent_id ?? null
}

/**
 * Deletes a layer if no volume head, snapshot or child layer refers to it, then tries its parent.
 * Cost: the rows of the layers actually deleted (cascade), nothing else.
 */
async function releaseLayer(c: pg.PoolClient, layerId: LayerId | null): Promise<number> {
  let released = 0
  while (layerId !== null) {
    const { rows } = await c.query<{ parent_id: LayerId | null; used: boolean }>(
      `SELECT parent_id, (EXISTS (SELECT 1 FROM volumes WHERE head_layer_id = $1)
                      OR EXISTS (SELECT 1 FROM volume_snapshots WHERE layer_id = $1)
                      OR EXISTS (SELECT 1 FROM layers WHERE parent_id = $1)) AS used
         FROM layers WHERE id = $1 FOR UPDATE`,
      [layerId],
    )
    const r = rows[0]
    if (!r || r.used) break
    await c.query(`DELETE FROM layers WHERE id = $1`, [layerId])
    released++
    layerId = r.parent_id
  }
  return released
}

export class PgVolumeCatalog implements VolumeCatalog {
  constructor(private readonly db: Db) {}

  async create(teamId: TeamId, opts: CreateVolumeOptions = {}): Promise<VolumeRow> {
    return this.db.tx(async (c) => {
      const id = randomUUID()
      let head: LayerId
      let nextIno = ROOT_INO + 1
      let usedBytes = 0
      let usedInodes = 1
      if (opts.snapshotId) {
        const snap = await this.snapshotForTeam(c, teamId, opts.snapshotId)
        head = await newLayer(c, teamId, snap.layer_id)
        nextIno = snap.next_ino
        usedBytes = snap.size_bytes
        usedInodes = snap.inodes
      } else {
        head = await newLayer(c, teamId, null)
        const now = nowNs()
        await writeInode(c, head, {
          ino: ROOT_INO,
          mode: S_IFDIR | 0o755,
          uid: opts.defaultPosixUid ?? 0,
          gid: opts.defaultPosixGid ?? 0,
          nlink: 2,
          size: 0,
          rdev: 0,
          parentIno: ROOT_INO,
          atimeNs: now,
          mtimeNs: now,
          ctimeNs: now,
          target: null,
          xattrs: new Map(),
          extents: [],
          inline: null,
        })
      }
      const { rows } = await c.query<VolumeDbRow>(
        `INSERT INTO volumes (id, team_id, head_layer_id, default_posix_uid, default_posix_gid, access_mode, next_ino,
                              quota_bytes, quota_inodes, used_bytes, used_inodes, kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *`,
        [
          id,
          teamId,
          head,
          opts.defaultPosixUid ?? 0,
          opts.defaultPosixGid ?? 0,
          opts.accessMode ?? 'RWO',
          nextIno,
          opts.quotaBytes ?? null,
          opts.quotaInodes ?? null,
          usedBytes,
          usedInodes,
          opts.kind ?? 'volume',
        ],
      )
      return volumeFromRow(rows[0] as VolumeDbRow)
    })
  }

  async get(teamId: TeamId, id: string): Promise<VolumeRow> {
    if (!UUID.test(id)) throw notFound('volume', id)
    const { rows } = await this.db.query<VolumeDbRow>(
      `SELECT * FROM volumes WHERE id = $1 AND team_id = $2`,
      [id, teamId],
    )
    if (!rows[0]) throw notFound('volume', id)
    return volumeFromRow(rows[0])
  }

  async getUserVolume(teamId: TeamId, id: string): Promise<VolumeRow> {
    const v = await this.get(teamId, id)
    if (v.kind !== 'volume') throw notFound('volume', id)
    return v
  }

  async teamOf(id: string): Promise<TeamId> {
    if (!UUID.test(id)) throw notFound('volume', id)
    const { rows } = await this.db.query<{ team_id: TeamId }>(`SELECT team_id FROM volumes WHERE id = $1`, [
      id,
    ])
    if (!rows[0]) throw notFound('volume', id)
    return rows[0].team_id
  }

  async list(teamId: TeamId, kind: VolumeKind = 'volume'): Promise<VolumeRow[]> {
    const { rows } = await this.db.query<VolumeDbRow>(
      `SELECT * FROM volumes WHERE team_id = $1 AND kind = $2 ORDER BY created_at, id`,
      [teamId, kind],
    )
    return rows.map(volumeFromRow)
  }

  async delete(teamId: TeamId, id: string): Promise<void> {
    await this.db.tx(async (c) => {
      const v = await lockVolume(c, teamId, id)
      const { rows: snaps } = await c.query<{ id: string; layer_id: LayerId }>(
        `DELETE FROM volume_snapshots WHERE volume_id = $1 RETURNING id, layer_id`,
        [id],
      )
      await c.query(`DELETE FROM volumes WHERE id = $1`, [id])
      await releaseLayer(c, v.headLayerId)
      for (const s of snaps) await releaseLayer(c, s.layer_id)
    })
  }

  async snapshot(
    teamId: TeamId,
    volumeId: string,
    opts: { name: string; description?: string; expiresAt?: Date },
  ): Promise<SnapshotRow> {
    return this.db.tx(async (c) => {
      const v = await lockVolume(c, teamId, volumeId)
      const layerId = await sealHead(c, v)
      const { rows } = await c.query<SnapshotDbRow>(
        `INSERT INTO volume_snapshots (id, volume_id, team_id, layer_id, name, description, size_bytes, inodes, next_ino, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *`,
        [
          randomUUID(),
          v.id,
          teamId,
          layerId,
          opts.name,
          opts.description ?? '',
          v.usedBytes,
          v.usedInodes,
          v.nextIno,
          opts.expiresAt ?? null,
        ],
      )
      return snapshotFromRow(rows[0] as SnapshotDbRow)
    })
  }

  async listSnapshots(teamId: TeamId, volumeId: string): Promise<SnapshotRow[]> {
    await this.get(teamId, volumeId)
    const { rows } = await this.db.query<SnapshotDbRow>(
      `SELECT * FROM volume_snapshots WHERE volume_id = $1 AND team_id = $2 ORDER BY created_at, id`,
      [volumeId, teamId],
    )
    return rows.map(snapshotFromRow)
  }

  async getSnapshot(teamId: TeamId, volumeId: string, snapshotId: string): Promise<SnapshotRow> {
    const s = await this.snapshotForTeam(this.db, teamId, snapshotId)
    if (s.volume_id !== volumeId) throw notFound('snapshot', snapshotId)
    return snapshotFromRow(s)
  }

  async deleteSnapshot(teamId: TeamId, volumeId: string, snapshotId: string): Promise<void> {
    await this.db.tx(async (c) => {
      const s = await this.snapshotForTeam(c, teamId, snapshotId)
      if (s.volume_id !== volumeId) throw notFound('snapshot', snapshotId)
      await c.query(`DELETE FROM volume_snapshots WHERE id = $1`, [snapshotId])
      await releaseLayer(c, s.layer_id)
    })
  }

  async restore(teamId: TeamId, volumeId: string, snapshotId: string): Promise<VolumeRow> {
    return this.db.tx(async (c) => {
      const v = await lockVolume(c, teamId, volumeId)
      const s = await this.snapshotForTeam(c, teamId, snapshotId)
      if (s.volume_id !== volumeId) throw notFound('snapshot', snapshotId)
      const head = await newLayer(c, teamId, s.layer_id)
      const { rows } = await c.query<VolumeDbRow>(
        `UPDATE volumes SET head_layer_id = $2, used_bytes = $3, used_inodes = $4,
                next_ino = GREATEST(next_ino, $5), updated_at = now()
          WHERE id = $1 RETURNING *`,
        [volumeId, head, s.size_bytes, s.inodes, s.next_ino],
      )
      await releaseLayer(c, v.headLayerId)
      return volumeFromRow(rows[0] as VolumeDbRow)
    })
  }

  /**
   * A new volume sharing the source's current content (copy-on-write from here on). A source
   * whose head holds nothing yet (a checkpoint forked again and again, a volume just forked) is
   * forked from the head's parent, without sealing: the chains stay as short as the content.
   */
  async fork(teamId: TeamId, sourceId: string, opts: CreateVolumeOptions = {}): Promise<VolumeRow> {
    return this.db.tx(async (c) => {
      const v = await lockVolume(c, teamId, sourceId)
      const base = (await emptyLayerParent(c, v.headLayerId)) ?? (await sealHead(c, v))
      const head = await newLayer(c, teamId, base)
      const { rows } = await c.query<VolumeDbRow>(
        `INSERT INTO volumes (id, team_id, head_layer_id, source_volume_id, default_posix_uid, default_posix_gid, access_mode,
                              next_ino, quota_bytes, quota_inodes, used_bytes, used_inodes, kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *`,
        [
          randomUUID(),
          teamId,
          head,
          v.id,
          opts.defaultPosixUid ?? v.defaultPosixUid,
          opts.defaultPosixGid ?? v.defaultPosixGid,
          opts.accessMode ?? v.accessMode,
          v.nextIno,
          v.quotaBytes,
          v.quotaInodes,
          v.usedBytes,
          v.usedInodes,
          opts.kind ?? v.kind,
        ],
      )
      return volumeFromRow(rows[0] as VolumeDbRow)
    })
  }

  async chainOf(layerId: LayerId): Promise<LayerId[]> {
    const { rows } = await this.db.query<{ id: LayerId }>(
      `WITH RECURSIVE chain AS (
         SELECT id, parent_id, 0 AS level FROM layers WHERE id = $1
         UNION ALL SELECT l.id, l.parent_id, chain.level + 1 FROM layers l JOIN chain ON l.id = chain.parent_id)
       SELECT id FROM chain ORDER BY level`,
      [layerId],
    )
    return rows.map((r) => r.id)
  }

  /**
   * Bounds read cost on deep chains: materialises everything below `keep` layers of the chain
   * into one new flat layer and re-parents the lowest kept layer onto it. Every chain through
   * that layer reads the same content as before, so snapshots and forks are unaffected. Costs
   * the rows below (a background job, never on the snapshot path). Returns the layer that may
   * now be unused (to release once no reader holds an old chain), or null if nothing was done.
   */
  async flatten(chain: readonly LayerId[], keep: number): Promise<LayerId | null> {
    if (chain.length <= keep + 1) return null
    const pivot = chain[keep - 1] as number
    const below = chain.slice(keep)
    // The layers below the pivot are sealed, so they can be copied without locks; only the
    // short re-parenting transaction locks the pivot (a long lock would stall restores).
    const { rows: team } = await this.db.query<{ team_id: string }>(
      `SELECT team_id FROM layers WHERE id = $1`,
      [pivot],
    )
    if (!team[0]) return null
    // Copied in pages, each its own relaxed transaction: a single huge transaction would make
    // every synchronous commit meanwhile (snapshots, restores, fsyncs) wait for its WAL. The
    // flat layer is invisible until the re-parenting below, so partial copies are harmless.
    const flat = await this.db.tx(async (c) => {
      const id = await newLayer(c, team[0]?.team_id as TeamId, null)
      await c.query(`UPDATE layers SET sealed = true WHERE id = $1`, [id])
      return id
    })
    const relaxed = this.db.relaxed
    for (let after = -1; ;) {
      const { rows } = await relaxed.query<{ last: number | null }>(
        `WITH page AS (
           SELECT DISTINCT ON (ino) * FROM inodes WHERE layer_id = ANY($1::bigint[]) AND ino > $3
            ORDER BY ino, array_position($1::bigint[], layer_id) LIMIT $4),
         ins AS (
           INSERT INTO inodes (layer_id, ino, deleted, mode, uid, gid, nlink, size, rdev, parent_ino, atime_ns, mtime_ns, ctime_ns, target, xattrs, extents, inline_data)
           SELECT $2, ino, false, mode, uid, gid, nlink, size, rdev, parent_ino, atime_ns, mtime_ns, ctime_ns, target, xattrs, extents, inline_data
             FROM page WHERE NOT deleted RETURNING 1)
         SELECT max(ino) AS last FROM page`,
        [below, flat, after, limits.flattenPageRows],
      )
      const last = rows[0]?.last ?? null
      if (last === null) break
      after = last
    }
    let afterName: Buffer = Buffer.alloc(0)
    for (let afterParent = -1; ;) {
      const { rows } = await relaxed.query<{ parent_ino: number | null; name: Buffer | null }>(
        `WITH page AS (
           SELECT DISTINCT ON (parent_ino, name) * FROM dentries
            WHERE layer_id = ANY($1::bigint[]) AND (parent_ino, name) > ($3, $4)
            ORDER BY parent_ino, name, array_position($1::bigint[], layer_id) LIMIT $5),
         ins AS (
           INSERT INTO dentries (layer_id, parent_ino, name, ino, kind)
           SELECT $2, parent_ino, name, ino, kind FROM page WHERE ino IS NOT NULL RETURNING 1)
         SELECT parent_ino, name FROM page ORDER BY parent_ino DESC, name DESC LIMIT 1`,
        [below, flat, afterParent, afterName, limits.flattenPageRows],
      )
      const last = rows[0]
      if (!last || last.parent_ino === null || last.name === null) break
      afterParent = last.parent_ino
      afterName = last.name
    }
    const moved = await this.db.tx(async (c) => {
      const { rows } = await c.query<{ parent_id: LayerId | null }>(
        `SELECT parent_id FROM layers WHERE id = $1 FOR UPDATE`,
        [pivot],
      )
      if (rows[0]?.parent_id !== below[0]) return false // the chain changed meanwhile
      await c.query(`UPDATE layers SET parent_id = $2 WHERE id = $1`, [pivot, flat])
      return true
    })
    if (!moved) {
      await this.release(flat)
      return null
    }
    return below[0] as LayerId
  }

  /**
   * What changed between two layers (typically two snapshots of one volume): the inodes and
   * directory entries written in the layers that are in one chain but not the other. Cost is
   * proportional to those layers' rows, never to the volume's size. Callers read both sides'
   * current versions of the returned keys to see what each change was.
   */
  async diff(fromLayer: LayerId, toLayer: LayerId): Promise<LayerDiff> {
    const [a, b] = await Promise.all([this.chainOf(fromLayer), this.chainOf(toLayer)])
    const inA = new Set(a)
    const inB = new Set(b)
    const changed = [...a.filter((l) => !inB.has(l)), ...b.filter((l) => !inA.has(l))]
    if (changed.length === 0) return { inodes: [], entries: [] }
    const { rows: inodes } = await this.db.query<{ ino: Ino }>(
      `SELECT DISTINCT ino FROM inodes WHERE layer_id = ANY($1::bigint[]) ORDER BY ino`,
      [changed],
    )
    const { rows: entries } = await this.db.query<{ parent_ino: Ino; name: Buffer }>(
      `SELECT DISTINCT parent_ino, name FROM dentries WHERE layer_id = ANY($1::bigint[]) ORDER BY parent_ino, name`,
      [changed],
    )
    return {
      inodes: inodes.map((r) => r.ino),
      entries: entries.map((r) => ({ parentIno: r.parent_ino, name: r.name })),
    }
  }

  async release(layerId: LayerId): Promise<void> {
    await this.db.tx((c) => releaseLayer(c, layerId))
  }

  private async snapshotForTeam(q: Queryable, teamId: TeamId, snapshotId: string): Promise<SnapshotDbRow> {
    if (!UUID.test(snapshotId)) throw notFound('snapshot', snapshotId)
    const { rows } = await q.query<SnapshotDbRow>(
      `SELECT * FROM volume_snapshots WHERE id = $1 AND team_id = $2`,
      [snapshotId, teamId],
    )
    if (!rows[0]) throw notFound('snapshot', snapshotId)
    return rows[0]
  }
}
