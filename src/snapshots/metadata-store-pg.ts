// The volume engine's metadata in Postgres: the catalog (volume-catalog.ts), inode and entry rows
// (metadata.ts), and here what the Vfs and the engine used to send themselves: inode-number
// batches, the durability barrier, writer leases and the GC walk over every layer.
import type { Db } from '../core/db.js'
import { assert } from '../core/assert.js'
import type { TeamId, Ino, LayerId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { decodeExtents } from './extents.js'
import * as rows from './metadata.js'
import type { MetadataBatch, MetadataStore, VolumeUsage } from './metadata-store.js'
import type { DirEntry, Inode } from './types.js'
import { PgVolumeCatalog } from './volume-catalog.js'

export class PgMetadataStore implements MetadataStore {
  readonly catalog: PgVolumeCatalog

  constructor(private readonly db: Db) {
    this.catalog = new PgVolumeCatalog(db)
  }

  readInode(chain: readonly LayerId[], ino: Ino): Promise<Inode | undefined> {
    return rows.readInode(this.db, chain, ino)
  }

  lookupEntry(chain: readonly LayerId[], parentIno: Ino, name: Buffer): Promise<Ino | 0> {
    return rows.lookupEntry(this.db, chain, parentIno, name)
  }

  listEntries(
    chain: readonly LayerId[],
    parentIno: Ino,
    after: Buffer | null,
    limit: number,
  ): Promise<DirEntry[]> {
    return rows.listEntries(this.db, chain, parentIno, after, limit)
  }

  hasEntries(chain: readonly LayerId[], parentIno: Ino): Promise<boolean> {
    return rows.hasEntries(this.db, chain, parentIno)
  }

  nameOf(chain: readonly LayerId[], parentIno: Ino, ino: Ino): Promise<Buffer | null> {
    return rows.nameOf(this.db, chain, parentIno, ino)
  }

  inlineFiles(
    layerId: LayerId,
    afterIno: Ino | 0,
    limit: number,
  ): Promise<Array<{ ino: Ino; bytes: Buffer }>> {
    return rows.inlineFiles(this.db, layerId, afterIno, limit)
  }

  newBatch(): MetadataBatch {
    return new rows.PgMetadataBatch()
  }

  /**
   * One statement on a relaxed connection (synchronous_commit = off: see syncVolume), or, when
   * `durable`, on a synchronous one.
   */
  commit(
    batch: MetadataBatch,
    layerId: LayerId,
    usage: VolumeUsage,
    opts: { durable?: boolean; epoch?: number } = {},
  ): Promise<void> {
    assert(batch instanceof rows.PgMetadataBatch, 'a batch of another metadata store')
    return rows.commitBatch(opts.durable ? this.db : this.db.relaxed, batch, layerId, usage, opts.epoch)
  }

  /**
   * One synchronous commit: it flushes the WAL past every relaxed commit before it (WAL order is
   * commit order), so they all become durable at once.
   */
  async syncVolume(volumeId: string): Promise<void> {
    await this.db.query(`UPDATE volumes SET updated_at = now() WHERE id = $1`, [volumeId])
  }

  async allocInodes(volumeId: string, count: number): Promise<Ino> {
    const { rows: r } = await this.db.query<{ first: Ino }>(
      `UPDATE volumes SET next_ino = next_ino + $2 WHERE id = $1 RETURNING next_ino - $2 AS first`,
      [volumeId, count],
    )
    return (r[0] as { first: Ino }).first
  }

  async takeLease(volumeId: string, owner: string, leaseMs: number): Promise<number | null> {
    // The epoch moves on when the owner changes, released leases included: a writer that lost
    // its lease and took it again must not commit what it buffered under the old one.
    const { rows: r } = await this.db.query<{ writer_epoch: string }>(
      `UPDATE volumes SET owner = $2, owner_expires_at = now() + make_interval(secs => $3::double precision / 1000),
              writer_epoch = CASE WHEN owner IS NOT DISTINCT FROM $2 AND owner_expires_at >= now()
                                  THEN writer_epoch ELSE writer_epoch + 1 END
        WHERE id = $1 AND (owner IS NULL OR owner = $2 OR owner_expires_at < now())
        RETURNING writer_epoch`,
      [volumeId, owner, leaseMs],
    )
    return r[0] ? Number(r[0].writer_epoch) : null
  }

  async renewLeases(volumeIds: readonly string[], owner: string, leaseMs: number): Promise<void> {
    await this.db.query(
      `UPDATE volumes SET owner_expires_at = now() + make_interval(secs => $3::double precision / 1000)
        WHERE id = ANY($1::uuid[]) AND owner = $2`,
      [volumeIds, owner, leaseMs],
    )
  }

  async releaseLease(volumeId: string, owner: string): Promise<void> {
    await this.db.query(
      `UPDATE volumes SET owner = NULL, owner_expires_at = NULL WHERE id = $1 AND owner = $2`,
      [volumeId, owner],
    )
  }

  async releaseLeases(owner: string): Promise<void> {
    await this.db.query(`UPDATE volumes SET owner = NULL, owner_expires_at = NULL WHERE owner = $1`, [owner])
  }

  /**
   * Layers exist only while a volume head, a snapshot or a child layer needs them, so this is
   * exactly what volumes, snapshots and forks can still read.
   */
  async *reachableChunks(): AsyncIterable<{ teamId: TeamId; hashes: Buffer[] }> {
    let afterLayer = 0
    let afterIno = 0
    for (;;) {
      const { rows: page } = await this.db.query<{
        layer_id: number
        ino: Ino
        team_id: string
        extents: Buffer
      }>(
        `SELECT i.layer_id, i.ino, l.team_id, i.extents FROM inodes i JOIN layers l ON l.id = i.layer_id
          WHERE i.extents IS NOT NULL AND (i.layer_id, i.ino) > ($1, $2)
          ORDER BY i.layer_id, i.ino LIMIT $3`,
        [afterLayer, afterIno, limits.volumeRootsPageRows],
      )
      if (page.length === 0) return
      const byTeam = new Map<string, Buffer[]>()
      for (const r of page) {
        let list = byTeam.get(r.team_id)
        if (!list) byTeam.set(r.team_id, (list = []))
        for (const e of decodeExtents(r.extents)) list.push(e.hash)
      }
      for (const [teamId, hashes] of byTeam) yield { teamId: teamId as TeamId, hashes }
      const last = page[page.length - 1] as (typeof page)[number]
      afterLayer = last.layer_id
      afterIno = last.ino
    }
  }
}
