// Wire forms of workspace sync (docs/SYNC.md): snake_case entries, nanoseconds as decimal
// strings, hashes as hex; and the client's operations into the domain's.
import type { OpResult, SyncOp } from '../../sync/commit.js'
import type { SyncEntry } from '../../sync/entries.js'
import type { FeedAnswer } from '../../sync/feed.js'
import type { FileContent } from '../../sync/service.js'
import type { WireOp } from '../schemas/sync.js'

export interface WireEntry {
  path: string
  kind: SyncEntry['kind']
  mode: number
  size: number
  mtime_ns: string
  ino: number
  version: string
  target?: string
}

export function entryJson(e: SyncEntry): WireEntry {
  return {
    path: e.path,
    kind: e.kind,
    mode: e.mode,
    size: e.size,
    mtime_ns: e.mtimeNs,
    ino: e.ino,
    version: e.version,
    ...(e.target !== undefined ? { target: e.target } : {}),
  }
}

export function changesJson(a: FeedAnswer): unknown {
  return {
    cursor: a.cursor,
    rescan: a.rescan,
    changes: a.changes.map((c) => ({ path: c.path, entry: c.entry ? entryJson(c.entry) : null })),
  }
}

export function fileJson(f: FileContent): unknown {
  return {
    entry: entryJson(f.entry),
    ...(f.inline ? { inline: f.inline.toString('base64') } : {}),
    ...(f.extents
      ? {
          extents: f.extents.map((x) => ({
            off: x.off,
            len: x.len,
            hash: x.hash.toString('hex'),
            coff: x.coff,
          })),
        }
      : {}),
  }
}

export function resultJson(r: OpResult): unknown {
  if (r.status === 'missing_chunks') return { path: r.path, status: r.status, missing: r.missing }
  return { path: r.path, status: r.status, entry: r.entry ? entryJson(r.entry) : null }
}

export function opFromWire(o: WireOp): SyncOp {
  switch (o.op) {
    case 'put':
      return {
        op: 'put',
        path: o.path,
        base: o.base,
        mode: o.mode,
        mtimeNs: BigInt(o.mtime_ns),
        chunks: o.chunks.map((c) => ({ hash: Buffer.from(c.hash, 'hex'), size: c.size })),
      }
    case 'mkdir':
      return { op: 'mkdir', path: o.path, base: o.base, mode: o.mode, mtimeNs: BigInt(o.mtime_ns) }
    case 'symlink':
      return { op: 'symlink', path: o.path, base: o.base, target: o.target, mtimeNs: BigInt(o.mtime_ns) }
    case 'chmod':
      return { op: 'chmod', path: o.path, base: o.base, mode: o.mode }
    case 'delete':
      return { op: 'delete', path: o.path, base: o.base }
    case 'rename':
      return { op: 'rename', path: o.path, from: o.from, base: o.base, toBase: o.to_base }
  }
}
