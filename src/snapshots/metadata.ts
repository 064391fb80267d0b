// Postgres SQL for inode and directory-entry rows over a layer chain (PgMetadataStore's rows).
// Reads take the chain (head first) and return the newest version of a row; writes go to the
// head layer only.
import type { Ino, LayerId } from '../core/ids.js'
import { pack, unpack } from 'msgpackr'
import { assert } from '../core/assert.js'
import { hotQuery, type Queryable } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { decodeExtents, encodeExtents } from './extents.js'
import type { MetadataBatch, VolumeUsage } from './metadata-store.js'
import type { DirEntry, Inode } from './types.js'

const INODE_COLUMNS = `ino, deleted, mode, uid, gid, nlink, size, rdev, parent_ino,
  atime_ns::text AS atime_ns, mtime_ns::text AS mtime_ns, ctime_ns::text AS ctime_ns, target, xattrs, extents, inline_data`

interface InodeRow {
  ino: Ino
  deleted: boolean
  mode: number
  uid: number
  gid: number
  nlink: number
  size: number
  rdev: number
  parent_ino: number | null
  atime_ns: string
  mtime_ns: string
  ctime_ns: string
  target: Buffer | null
  xattrs: Buffer | null
  extents: Buffer | null
  inline_data: Buffer | null
}

function fromRow(r: InodeRow): Inode {
  return {
    ino: r.ino,
    mode: r.mode,
    uid: r.uid,
    gid: r.gid,
    nlink: r.nlink,
    size: r.size,
    rdev: r.rdev,
    parentIno: r.parent_ino as Ino | null,
    atimeNs: BigInt(r.atime_ns),
    mtimeNs: BigInt(r.mtime_ns),
    ctimeNs: BigInt(r.ctime_ns),
    target: r.target,
    xattrs: decodeXattrs(r.xattrs),
    extents: decodeExtents(r.extents),
    inline: r.inline_data && r.inline_data.length > 0 ? r.inline_data : null,
  }
}

function decodeXattrs(b: Buffer | null): Map<string, Buffer> {
  if (!b || b.length === 0) return new Map()
  const obj = unpack(b) as Record<string, Uint8Array>
  return new Map(Object.entries(obj).map(([k, v]) => [k, Buffer.from(v)]))
}

function encodeXattrs(m: Map<string, Buffer>): Buffer | null {
  if (m.size === 0) return null
  return pack(Object.fromEntries(m))
}

/** The newest version of an inode in the chain; undefined if absent or deleted. */
export async function readInode(
  q: Queryable,
  chain: readonly LayerId[],
  ino: Ino,
): Promise<Inode | undefined> {
  const { rows } = await hotQuery<InodeRow>(
    q,
    'vfs_read_inode',
    `SELECT ${INODE_COLUMNS} FROM inodes WHERE layer_id = ANY($1::bigint[]) AND ino = $2
      ORDER BY array_position($1::bigint[], layer_id) LIMIT 1`,
    [chain, ino],
  )
  const r = rows[0]
  return r && !r.deleted ? fromRow(r) : undefined
}

export async function writeInode(q: Queryable, layerId: LayerId, i: Inode): Promise<void> {
  await q.query(
    `INSERT INTO inodes (layer_id, ino, deleted, mode, uid, gid, nlink, size, rdev, parent_ino, atime_ns, mtime_ns, ctime_ns, target, xattrs, extents, inline_data)
     VALUES ($1, $2, false, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
     ON CONFLICT (layer_id, ino) DO UPDATE SET deleted = false, mode = $3, uid = $4, gid = $5, nlink = $6, size = $7, rdev = $8,
       parent_ino = $9, atime_ns = $10, mtime_ns = $11, ctime_ns = $12, target = $13, xattrs = $14, extents = $15, inline_data = $16`,
    [
      layerId,
      i.ino,
      i.mode,
      i.uid,
      i.gid,
      i.nlink,
      i.size,
      i.rdev,
      i.parentIno,
      i.atimeNs.toString(),
      i.mtimeNs.toString(),
      i.ctimeNs.toString(),
      i.target,
      encodeXattrs(i.xattrs),
      i.extents.length > 0 ? encodeExtents(i.extents) : null,
      i.inline,
    ],
  )
}

/** The inode a name points to, 0 when absent (or whited out). */
export async function lookupEntry(
  q: Queryable,
  chain: readonly LayerId[],
  parentIno: Ino,
  name: Buffer,
): Promise<Ino | 0> {
  const { rows } = await hotQuery<{ ino: Ino | null }>(
    q,
    'vfs_lookup_entry',
    `SELECT ino FROM dentries WHERE layer_id = ANY($1::bigint[]) AND parent_ino = $2 AND name = $3
      ORDER BY array_position($1::bigint[], layer_id) LIMIT 1`,
    [chain, parentIno, name],
  )
  return rows[0]?.ino ?? 0
}

/** Entries of a directory in name order, after `after` (exclusive), at most `limit`. */
export async function listEntries(
  q: Queryable,
  chain: readonly LayerId[],
  parentIno: Ino,
  after: Buffer | null,
  limit: number,
): Promise<DirEntry[]> {
  const { rows } = await q.query<{ name: Buffer; ino: Ino | null; kind: number }>(
    `SELECT name, ino, kind FROM (
       SELECT DISTINCT ON (name) name, ino, kind FROM dentries
        WHERE layer_id = ANY($1::bigint[]) AND parent_ino = $2 AND ($3::bytea IS NULL OR name > $3)
        ORDER BY name, array_position($1::bigint[], layer_id)) v
      WHERE ino IS NOT NULL ORDER BY name LIMIT $4`,
    [chain, parentIno, after, limit],
  )
  return rows.map((r) => ({ name: r.name, ino: r.ino as Ino, kind: r.kind }))
}

export async function hasEntries(q: Queryable, chain: readonly LayerId[], parentIno: Ino): Promise<boolean> {
  return (await listEntries(q, chain, parentIno, null, 1)).length > 0
}

/** The name under which `parentIno` holds `ino` (for event paths); null if none. */
export async function nameOf(
  q: Queryable,
  chain: readonly LayerId[],
  parentIno: Ino,
  ino: Ino,
): Promise<Buffer | null> {
  const { rows } = await q.query<{ name: Buffer }>(
    `SELECT name FROM (
       SELECT DISTINCT ON (name) name, ino FROM dentries
        WHERE layer_id = ANY($1::bigint[]) AND parent_ino = $2
        ORDER BY name, array_position($1::bigint[], layer_id)) v
      WHERE ino = $3 LIMIT 1`,
    [chain, parentIno, ino],
  )
  return rows[0]?.name ?? null
}

/**
 * The writes of one metadata change, sent as ONE statement (data-modifying CTEs, `commitBatch`):
 * atomic without BEGIN/COMMIT, one round trip whatever the number of rows. Later writes of the
 * same key replace earlier ones (a statement may not touch a row twice).
 */
export class PgMetadataBatch implements MetadataBatch {
  readonly inodes = new Map<Ino, Inode | null>()
  readonly entries = new Map<string, { parent: Ino; name: Buffer; ino: Ino | null; kind: number }>()

  putInode(i: Inode): void {
    this.inodes.set(i.ino, i)
  }

  deleteInode(ino: Ino): void {
    this.inodes.set(ino, null)
  }

  putEntry(parent: Ino, name: Buffer, ino: Ino | null, kind: number): void {
    this.entries.set(`${parent}:${name.toString('hex')}`, { parent, name, ino, kind })
  }

  absorb(later: MetadataBatch): void {
    assert(later instanceof PgMetadataBatch, 'a batch of another metadata store')
    for (const [k, v] of later.inodes) this.inodes.set(k, v)
    for (const [k, v] of later.entries) this.entries.set(k, v)
  }

  get empty(): boolean {
    return this.inodes.size === 0 && this.entries.size === 0
  }
}

/** Writes the batch into `layerId` and the volume's usage counters: one statement. */
export async function commitBatch(
  q: Queryable,
  batch: PgMetadataBatch,
  layerId: LayerId,
  volume: VolumeUsage,
  epoch?: number,
): Promise<void> {
  const ino: Ino[] = []
  const deleted: boolean[] = []
  const cols: Record<string, unknown[]> = {
    mode: [],
    uid: [],
    gid: [],
    nlink: [],
    size: [],
    rdev: [],
    parent: [],
    atime: [],
    mtime: [],
    ctime: [],
    target: [],
    xattrs: [],
    extents: [],
    inline: [],
  }
  const push = (k: string, v: unknown): void => void (cols[k] as unknown[]).push(v)
  for (const [n, i] of batch.inodes) {
    ino.push(n)
    deleted.push(i === null)
    push('mode', i?.mode ?? 0)
    push('uid', i?.uid ?? 0)
    push('gid', i?.gid ?? 0)
    push('nlink', i?.nlink ?? 0)
    push('size', i?.size ?? 0)
    push('rdev', i?.rdev ?? 0)
    push('parent', i?.parentIno ?? null)
    push('atime', (i?.atimeNs ?? 0n).toString())
    push('mtime', (i?.mtimeNs ?? 0n).toString())
    push('ctime', (i?.ctimeNs ?? 0n).toString())
    push('target', i?.target ?? null)
    push('xattrs', i ? encodeXattrs(i.xattrs) : null)
    push('extents', i && i.extents.length > 0 ? encodeExtents(i.extents) : null)
    push('inline', i?.inline ?? null)
  }
  const e = [...batch.entries.values()]
  const { rows } = await hotQuery<{ v: number }>(
    q,
    'vfs_commit',
    // Fencing: the volume's row is locked first and its writer epoch compared, so a writer whose
    // lease moved on writes nothing (a takeover's epoch bump waits for this statement, or this
    // statement re-reads the row after it and finds the new epoch). NULL: not fenced (tests, tools).
    `WITH fence AS (SELECT 1 FROM volumes WHERE id = $21 AND ($25::bigint IS NULL OR writer_epoch = $25) FOR UPDATE),
     up_i AS (
       INSERT INTO inodes (layer_id, ino, deleted, mode, uid, gid, nlink, size, rdev, parent_ino, atime_ns, mtime_ns, ctime_ns, target, xattrs, extents, inline_data)
       SELECT $1, * FROM unnest($2::bigint[], $3::boolean[], $4::int[], $5::int[], $6::int[], $7::int[], $8::bigint[], $9::int[],
                                $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], $14::bytea[], $15::bytea[], $16::bytea[], $24::bytea[])
       WHERE EXISTS (SELECT 1 FROM fence)
       ON CONFLICT (layer_id, ino) DO UPDATE SET deleted = EXCLUDED.deleted, mode = EXCLUDED.mode, uid = EXCLUDED.uid,
         gid = EXCLUDED.gid, nlink = EXCLUDED.nlink, size = EXCLUDED.size, rdev = EXCLUDED.rdev, parent_ino = EXCLUDED.parent_ino,
         atime_ns = EXCLUDED.atime_ns, mtime_ns = EXCLUDED.mtime_ns, ctime_ns = EXCLUDED.ctime_ns, target = EXCLUDED.target,
         xattrs = EXCLUDED.xattrs, extents = EXCLUDED.extents, inline_data = EXCLUDED.inline_data
       RETURNING 1),
     up_d AS (
       INSERT INTO dentries (layer_id, parent_ino, name, ino, kind)
       SELECT $1, * FROM unnest($17::bigint[], $18::bytea[], $19::bigint[], $20::smallint[])
       WHERE EXISTS (SELECT 1 FROM fence)
       ON CONFLICT (layer_id, parent_ino, name) DO UPDATE SET ino = EXCLUDED.ino, kind = EXCLUDED.kind
       RETURNING 1),
     vol AS (UPDATE volumes SET used_bytes = $22, used_inodes = $23, updated_at = now()
              WHERE id = $21 AND EXISTS (SELECT 1 FROM fence) RETURNING 1)
     SELECT (SELECT count(*) FROM vol)::int AS v, (SELECT count(*) FROM up_i) + (SELECT count(*) FROM up_d) AS n`,
    [
      layerId,
      ino,
      deleted,
      cols['mode'],
      cols['uid'],
      cols['gid'],
      cols['nlink'],
      cols['size'],
      cols['rdev'],
      cols['parent'],
      cols['atime'],
      cols['mtime'],
      cols['ctime'],
      cols['target'],
      cols['xattrs'],
      cols['extents'],
      e.map((x) => x.parent),
      e.map((x) => x.name),
      e.map((x) => x.ino),
      e.map((x) => x.kind),
      volume.id,
      volume.usedBytes,
      volume.usedInodes,
      cols['inline'],
      epoch ?? null,
    ],
  )
  if (rows[0]?.v === 1) return
  const { rows: still } = await q.query<{ writer_epoch: string }>(
    'SELECT writer_epoch FROM volumes WHERE id = $1',
    [volume.id],
  )
  if (!still[0]) throw new S0Error('not_found', `volume ${volume.id} no longer exists`)
  throw new S0Error(
    'volume_lease_lost',
    `volume ${volume.id}: this writer's lease (epoch ${epoch}) was taken over (epoch ${still[0].writer_epoch}); the change was not committed`,
  )
}

/**
 * Inline files of one layer after `afterIno`, in inode order, at most `limit` (the packer's work
 * list; a partial index holds only inline rows). Deleted rows never carry inline data.
 */
export async function inlineFiles(
  q: Queryable,
  layerId: LayerId,
  afterIno: Ino | 0,
  limit: number,
): Promise<Array<{ ino: Ino; bytes: Buffer }>> {
  const { rows } = await q.query<{ ino: Ino; inline_data: Buffer }>(
    `SELECT ino, inline_data FROM inodes WHERE layer_id = $1 AND inline_data IS NOT NULL AND ino > $2
      ORDER BY ino LIMIT $3`,
    [layerId, afterIno, limit],
  )
  return rows.map((r) => ({ ino: r.ino, bytes: r.inline_data }))
}
