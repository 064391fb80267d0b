// Applies a sync client's operations to a volume, each against the version the client saw (its
// base): a stale base is a conflict and changes nothing, never an overwrite. File content comes
// as a list of chunks the team already has (uploaded first); it is written to a temporary file
// beside the target and renamed over it, so readers (a sandbox) see the old or the whole new
// file. One durability barrier at the end: an answered commit survives a crash.
import { randomBytes } from 'node:crypto'
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { isS0Error, S0Error } from '../core/errors.js'
import type { TeamId, Ino } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { mkdirp, resolve, splitPath } from '../snapshots/paths.js'
import { isDir, SYMLINK_BYTES_MAX, type Attr } from '../snapshots/types.js'
import type { Vfs } from '../snapshots/vfs.js'
import { checkRelPath, entryAt, volumePath, type SyncEntry } from './entries.js'

export interface ChunkSpec {
  hash: Buffer
  size: number
}

export type SyncOp =
  | { op: 'put'; path: string; base: string | null; mode: number; mtimeNs: bigint; chunks: ChunkSpec[] }
  | { op: 'mkdir'; path: string; base: string | null; mode: number; mtimeNs: bigint }
  | { op: 'symlink'; path: string; base: string | null; target: string; mtimeNs: bigint }
  | { op: 'chmod'; path: string; base: string; mode: number }
  | { op: 'delete'; path: string; base: string }
  | { op: 'rename'; from: string; path: string; base: string; toBase: string | null }

export type OpResult =
  | { path: string; status: 'ok'; entry: SyncEntry | null }
  | { path: string; status: 'conflict'; entry: SyncEntry | null }
  | { path: string; status: 'missing_chunks'; missing: string[] }

export interface CommitContext {
  vfs: Vfs
  chunks: ChunkStore
  teamId: TeamId
  root: string
  owner: { uid: number; gid: number }
}

/**
 * Whether a symlink target stays inside the volume from the link's directory: not absolute,
 * and never climbing above the volume root (the server never follows links, but a link that
 * points out of the volume would be a way to make a sandbox's tools do it).
 */
export function targetStaysInside(linkPath: string, target: string): boolean {
  if (target.startsWith('/')) return false
  let depth = splitPath(linkPath).length - 1
  for (const seg of target.split('/')) {
    if (seg === '' || seg === '.') continue
    depth += seg === '..' ? -1 : 1
    if (depth < 0) return false
  }
  return true
}

async function current(c: CommitContext, rel: string): Promise<SyncEntry | null> {
  return entryAt(c.vfs, c.root, rel)
}

function sameBase(cur: SyncEntry | null, base: string | null): boolean {
  return base === null ? cur === null : cur !== null && cur.version === base
}

async function parentOf(c: CommitContext, rel: string): Promise<{ dir: Attr; name: Buffer }> {
  const parts = splitPath(volumePath(c.root, rel))
  const dir = await mkdirp(c.vfs, parts.slice(0, -1), c.owner)
  return { dir, name: parts[parts.length - 1] as Buffer }
}

async function writeContent(c: CommitContext, ino: Ino, chunks: ChunkSpec[]): Promise<void> {
  let off = 0
  for (let i = 0; i < chunks.length; i += limits.syncClientChunkConcurrency) {
    const batch = chunks.slice(i, i + limits.syncClientChunkConcurrency)
    const bufs = await c.chunks.readMany(
      c.teamId,
      batch.map((b) => b.hash),
    )
    for (let k = 0; k < bufs.length; k++) {
      const b = bufs[k] as Buffer
      if (b.length !== (batch[k] as ChunkSpec).size)
        throw new S0Error(
          'invalid_request',
          `chunk ${(batch[k] as ChunkSpec).hash.toString('hex')} is ${b.length} bytes, not ${(batch[k] as ChunkSpec).size}`,
        )
      await c.vfs.write(ino, off, b)
      off += b.length
    }
  }
}

async function applyOne(c: CommitContext, op: SyncOp): Promise<OpResult> {
  checkRelPath(op.path)
  if (op.op === 'rename') checkRelPath(op.from)
  const cur = await current(c, op.path)
  const conflict = (entry: SyncEntry | null): OpResult => ({ path: op.path, status: 'conflict', entry })
  const done = async (): Promise<OpResult> => ({
    path: op.path,
    status: 'ok',
    entry: await current(c, op.path),
  })
  switch (op.op) {
    case 'put': {
      if (!sameBase(cur, op.base)) return conflict(cur)
      if (cur?.kind === 'dir') return conflict(cur)
      const known = await c.chunks.index.touchExisting(
        c.teamId,
        op.chunks.map((x) => x.hash),
      )
      const missing = op.chunks
        .filter((x) => !known.has(x.hash.toString('hex')))
        .map((x) => x.hash.toString('hex'))
      if (missing.length > 0) return { path: op.path, status: 'missing_chunks', missing }
      const { dir, name } = await parentOf(c, op.path)
      const tmpName = Buffer.from(`.s0sync-${randomBytes(8).toString('hex')}`)
      const tmp = await c.vfs.create(dir.ino, tmpName, op.mode, c.owner)
      c.vfs.open(tmp.ino)
      let renamed = false
      try {
        await writeContent(c, tmp.ino, op.chunks)
        await c.vfs.flush(tmp.ino)
        await c.vfs.setattr(tmp.ino, { mode: op.mode & 0o7777, mtimeNs: op.mtimeNs })
        // Checked again just before the rename: the content took time to write.
        const now = await current(c, op.path)
        if (!sameBase(now, op.base)) return conflict(now)
        await c.vfs.rename(dir.ino, tmpName, dir.ino, name)
        renamed = true
      } finally {
        await c.vfs.release(tmp.ino).catch(() => undefined)
        if (!renamed) await c.vfs.unlink(dir.ino, tmpName).catch(() => undefined)
      }
      return done()
    }
    case 'mkdir': {
      if (cur?.kind === 'dir') {
        // Already there (both sides made it, or a retried commit): take the mode.
        if (cur.mode !== (op.mode & 0o7777)) await c.vfs.setattr(cur.ino as Ino, { mode: op.mode & 0o7777 })
        return done()
      }
      if (!sameBase(cur, op.base)) return conflict(cur)
      if (cur) return conflict(cur)
      const { dir, name } = await parentOf(c, op.path)
      const a = await c.vfs.mkdir(dir.ino, name, op.mode & 0o7777, c.owner)
      await c.vfs.setattr(a.ino, { mtimeNs: op.mtimeNs })
      return done()
    }
    case 'symlink': {
      if (!sameBase(cur, op.base)) return conflict(cur)
      const target = Buffer.from(op.target, 'utf8')
      if (target.length === 0 || target.length > SYMLINK_BYTES_MAX || target.includes(0))
        throw new S0Error('invalid_path', `symlink target must be 1..${SYMLINK_BYTES_MAX} bytes without NUL`)
      if (!targetStaysInside(volumePath(c.root, op.path), op.target))
        throw new S0Error('invalid_path', `symlink ${op.path} -> ${op.target} points outside the volume`)
      if (cur?.kind === 'dir') return conflict(cur)
      const { dir, name } = await parentOf(c, op.path)
      const tmpName = Buffer.from(`.s0sync-${randomBytes(8).toString('hex')}`)
      const a = await c.vfs.symlink(dir.ino, tmpName, target, c.owner)
      await c.vfs.setattr(a.ino, { mtimeNs: op.mtimeNs }).catch(() => undefined)
      await c.vfs.rename(dir.ino, tmpName, dir.ino, name)
      return done()
    }
    case 'chmod': {
      if (!sameBase(cur, op.base) || !cur) return conflict(cur)
      await c.vfs.setattr(cur.ino as Ino, { mode: op.mode & 0o7777 })
      return done()
    }
    case 'delete': {
      if (!sameBase(cur, op.base) || !cur) return cur === null ? done() : conflict(cur)
      const { dir, name } = await parentOf(c, op.path)
      try {
        if (cur.kind === 'dir') await c.vfs.rmdir(dir.ino, name)
        else await c.vfs.unlink(dir.ino, name)
      } catch (err) {
        // A directory that is not empty: something the client has not seen is in it.
        if (isS0Error(err) && err.code === 'directory_not_empty') return conflict(cur)
        throw err
      }
      return done()
    }
    case 'rename': {
      const src = await current(c, op.from)
      if (!sameBase(src, op.base) || !src) return { path: op.from, status: 'conflict', entry: src }
      if (!sameBase(cur, op.toBase)) return conflict(cur)
      const from = splitPath(volumePath(c.root, op.from))
      const fromDir = await resolve(c.vfs, from.slice(0, -1))
      const { dir, name } = await parentOf(c, op.path)
      if (cur && isDir((await c.vfs.getattr(cur.ino as Ino)).mode)) return conflict(cur)
      await c.vfs.rename(fromDir.ino, from[from.length - 1] as Buffer, dir.ino, name)
      return done()
    }
  }
}

/**
 * Applies the operations in order (each on its own: one conflict does not stop the rest) and
 * makes them durable together before answering.
 */
export async function applyOps(c: CommitContext, ops: SyncOp[]): Promise<OpResult[]> {
  if (c.vfs.readOnly) throw new S0Error('read_only', 'the volume is read-only: sync cannot write to it')
  const results: OpResult[] = new Array<OpResult>(ops.length)
  // Puts of different paths in a row go together (their flushes share writeback batches: one
  // metadata commit for many small files); everything else runs alone, in order.
  for (let i = 0; i < ops.length;) {
    let j = i
    const paths = new Set<string>()
    while (j < ops.length && (ops[j] as SyncOp).op === 'put' && !paths.has((ops[j] as SyncOp).path)) {
      paths.add((ops[j] as SyncOp).path)
      j++
    }
    if (j === i) {
      results[i] = await applyOne(c, ops[i] as SyncOp)
      i++
      continue
    }
    let next = i
    const worker = async (): Promise<void> => {
      while (next < j) {
        const k = next++
        results[k] = await applyOne(c, ops[k] as SyncOp)
      }
    }
    await Promise.all(Array.from({ length: limits.syncCommitPutConcurrency }, worker))
    i = j
  }
  await c.vfs.sync()
  return results
}
