// Saved on-disk formats (test/fixtures/formats/): where they are, how a volume's metadata rows are
// dumped to JSON and loaded back, and the tree a volume shows, as plain JSON to compare.
import type { Ino } from '../../src/core/ids.js'
import path from 'node:path'
import type { Db } from '../../src/core/db.js'
import { hashChunk } from '../../src/blockstore/hash.js'
import { isDir, isLnk, isReg, ROOT_INO, S_IFIFO, S_IFMT } from '../../src/snapshots/types.js'
import type { Vfs } from '../../src/snapshots/vfs.js'

export const FORMATS_DIR = path.resolve(import.meta.dirname, '..', 'fixtures', 'formats')

/** The volume engine's tables, parents before children (foreign keys). */
const TABLES = ['layers', 'volumes', 'volume_snapshots', 'inodes', 'dentries'] as const
type Table = (typeof TABLES)[number]
export type VolumeRows = Record<Table, Array<Record<string, unknown>>>

/**
 * Every row of the team's volumes, snapshots and layers as JSON: bytea as `\x` hex, nanosecond
 * times as decimal strings (they do not fit a JSON number), other columns as Postgres gives them.
 */
export async function dumpVolumeRows(db: Db, teamId: string): Promise<VolumeRows> {
  const ofTeam = `layer_id IN (SELECT id FROM layers WHERE team_id = $1)`
  const queries: Record<Table, string> = {
    layers: `SELECT to_jsonb(t) AS r FROM layers t WHERE team_id = $1 ORDER BY id`,
    volumes: `SELECT to_jsonb(t) AS r FROM volumes t WHERE team_id = $1 ORDER BY id`,
    volume_snapshots: `SELECT to_jsonb(t) AS r FROM volume_snapshots t WHERE team_id = $1 ORDER BY id`,
    inodes: `SELECT to_jsonb(t) || jsonb_build_object('atime_ns', atime_ns::text, 'mtime_ns', mtime_ns::text,
               'ctime_ns', ctime_ns::text) AS r FROM inodes t WHERE ${ofTeam} ORDER BY layer_id, ino`,
    dentries: `SELECT to_jsonb(t) AS r FROM dentries t WHERE ${ofTeam} ORDER BY layer_id, parent_ino, name`,
  }
  const out = {} as VolumeRows
  for (const table of TABLES) {
    const { rows } = await db.query<{ r: Record<string, unknown> }>(queries[table], [teamId])
    out[table] = rows.map((x) => x.r)
  }
  return out
}

/** Inserts saved rows into a database migrated to today's schema (columns added since take their defaults). */
export async function loadVolumeRows(db: Db, saved: VolumeRows): Promise<void> {
  await db.tx(async (c) => {
    for (const table of TABLES) {
      const rows = table === 'layers' ? parentsFirst(saved.layers) : saved[table]
      if (rows.length === 0) continue
      const cols = Object.keys(rows[0] as object)
        .map((k) => `"${k}"`)
        .join(', ')
      await c.query(
        `INSERT INTO ${table} (${cols}) SELECT ${cols} FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)`,
        [JSON.stringify(rows)],
      )
    }
    // New layers must not take the saved ids.
    await c.query(`SELECT setval(pg_get_serial_sequence('layers', 'id'), (SELECT max(id) FROM layers))`)
  })
}

/** A flatten can re-parent a layer onto a newer one: order by the parent chain, not by id. */
function parentsFirst(layers: Array<Record<string, unknown>>): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  const placed = new Set<unknown>([null])
  let left = layers
  while (left.length > 0) {
    const ready = left.filter((l) => placed.has(l['parent_id']))
    if (ready.length === 0) throw new Error('saved layers do not form a tree')
    for (const l of ready) {
      out.push(l)
      placed.add(l['id'])
    }
    left = left.filter((l) => !ready.includes(l))
  }
  return out
}

export interface TreeNode {
  ino: Ino
  type: 'dir' | 'file' | 'symlink' | 'fifo' | 'other'
  mode: string
  uid: number
  gid: number
  nlink: number
  size: number
  mtimeNs: string
  /** Symlinks: the target. */
  target?: string
  /** Regular files: BLAKE3 of the content. */
  blake3?: string
  xattrs?: Record<string, string>
}

/** Every node of the volume by path ("/" for the root), in name order. */
export async function readVolumeTree(vfs: Vfs): Promise<Record<string, TreeNode>> {
  const out: Record<string, TreeNode> = {}
  const visit = async (ino: Ino, p: string): Promise<void> => {
    const a = await vfs.getattr(ino)
    const node: TreeNode = {
      ino: a.ino,
      type: isDir(a.mode)
        ? 'dir'
        : isReg(a.mode)
          ? 'file'
          : isLnk(a.mode)
            ? 'symlink'
            : (a.mode & S_IFMT) === S_IFIFO
              ? 'fifo'
              : 'other',
      mode: (a.mode & 0o7777).toString(8),
      uid: a.uid,
      gid: a.gid,
      nlink: a.nlink,
      size: a.size,
      mtimeNs: a.mtimeNs.toString(),
    }
    if (isLnk(a.mode)) node.target = (await vfs.readlink(ino)).toString()
    if (isReg(a.mode)) node.blake3 = hashChunk(await vfs.read(ino, 0, a.size)).toString('hex')
    const names = await vfs.listxattr(ino)
    if (names.length > 0) {
      node.xattrs = {}
      for (const n of names.sort()) node.xattrs[n] = (await vfs.getxattr(ino, n)).toString('hex')
    }
    out[p] = node
    if (!isDir(a.mode)) return
    for (const e of await vfs.readdir(ino)) await visit(e.ino, (p === '/' ? '' : p) + '/' + e.name.toString())
  }
  await visit(ROOT_INO, '/')
  return out
}
