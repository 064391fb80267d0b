// The local side of workspace sync: a scan of the folder (lstat, never following symlinks),
// file contents cut into the engine's chunks (same FastCDC + BLAKE3, so chunks the volume has
// are never sent again), and files written whole into place (temp file, fsync, rename).
import { randomBytes } from 'node:crypto'
import type { BigIntStats } from 'node:fs'
import { lstat, open, readdir, readlink, rename, unlink } from 'node:fs/promises'
import path from 'node:path'
import { chunkBuffer, DEFAULT_CHUNKER_PARAMS } from '../../blockstore/chunker.js'
import { hashChunk } from '../../blockstore/hash.js'
import { limits } from '../../core/limits.js'
import { TEMP_PREFIX, type Ignorer } from './ignore.js'
import type { LocalKind } from './state.js'

export interface LocalEntry {
  path: string
  kind: LocalKind
  mode: number
  size: number
  mtimeNs: bigint
  ino: number
  target?: string
}

export interface ScanResult {
  entries: Map<string, LocalEntry>
  /** Hard links, devices, sockets, FIFOs: not synced. */
  skipped: string[]
}

export function abs(root: string, rel: string): string {
  return path.join(root, ...rel.split('/'))
}

/** The entry at `rel` now, or null (absent, or of a kind sync skips). */
export async function statEntry(root: string, rel: string): Promise<LocalEntry | null> {
  const st = await lstat(abs(root, rel), { bigint: true }).catch(() => null)
  if (!st) return null
  const kind: LocalKind | null =
    st.isFile() && st.nlink === 1n
      ? 'file'
      : st.isDirectory()
        ? 'dir'
        : st.isSymbolicLink()
          ? 'symlink'
          : null
  if (!kind) return null
  return {
    path: rel,
    kind,
    mode: Number(st.mode & 0o7777n),
    size: kind === 'file' ? Number(st.size) : 0,
    mtimeNs: st.mtimeNs,
    ino: Number(st.ino),
    ...(kind === 'symlink' ? { target: await readlink(abs(root, rel)).catch(() => '') } : {}),
  }
}

/** Everything under `sub` ('' for the root) that is not ignored. */
export async function scan(root: string, ig: Ignorer, sub = ''): Promise<ScanResult> {
  const entries = new Map<string, LocalEntry>()
  const skipped: string[] = []
  const dirs = [sub]
  while (dirs.length > 0) {
    const dir = dirs.pop() as string
    await ig.loadDir(dir)
    const names = await readdir(abs(root, dir)).catch(() => [] as string[])
    for (let i = 0; i < names.length; i += limits.syncListConcurrency) {
      const batch = names.slice(i, i + limits.syncListConcurrency)
      const got = await Promise.all(
        batch.map(async (name) => {
          const rel = dir === '' ? name : `${dir}/${name}`
          const st = await lstat(abs(root, rel), { bigint: true }).catch(() => null)
          return { rel, st }
        }),
      )
      for (const { rel, st } of got) {
        if (!st) continue
        const isDir = st.isDirectory()
        const name = rel.slice(rel.lastIndexOf('/') + 1)
        // A temporary file of ours left by a crash (ctime: a write in progress sets its mtime old).
        if (name.startsWith(TEMP_PREFIX) && Date.now() - Number(st.ctimeMs) > limits.syncTempStaleMs / 10)
          await unlink(abs(root, rel)).catch(() => undefined)
        if (ig.ignoredName(rel, isDir)) continue
        if (st.isFile() && st.nlink > 1n) {
          skipped.push(`${rel} (hard link)`)
          continue
        }
        if (!st.isFile() && !isDir && !st.isSymbolicLink()) {
          skipped.push(`${rel} (${st.isSocket() ? 'socket' : st.isFIFO() ? 'fifo' : 'device'})`)
          continue
        }
        const e: LocalEntry = {
          path: rel,
          kind: isDir ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file',
          mode: Number(st.mode & 0o7777n),
          size: st.isFile() ? Number(st.size) : 0,
          mtimeNs: st.mtimeNs,
          ino: Number(st.ino),
        }
        if (e.kind === 'symlink') e.target = await readlink(abs(root, rel)).catch(() => '')
        entries.set(rel, e)
        if (isDir) dirs.push(rel)
      }
    }
  }
  return { entries, skipped }
}

export interface FileChunk {
  hash: Buffer
  off: number
  size: number
}

export interface ChunkedFile {
  chunks: FileChunk[]
  digest: string
  size: number
}

/** The content digest sync compares: BLAKE3 over the chunk hashes in order. */
export function digestOf(hashes: readonly Buffer[]): string {
  return hashChunk(Buffer.concat(hashes)).toString('hex')
}

const READ_PIECE_BYTES = 8 * 1024 * 1024

/**
 * Cuts the file into chunks. Null when it changed while being read (size, mtime or inode
 * moved): a half-written file is never sent; the caller tries again later.
 */
export async function chunkFile(
  file: string,
  expect: { size: number; mtimeNs: bigint; ino: number },
): Promise<ChunkedFile | null> {
  const fh = await open(file, 'r').catch(() => null)
  if (!fh) return null
  try {
    const chunks: FileChunk[] = []
    let carry = Buffer.alloc(0)
    let carryOff = 0
    let pos = 0
    for (;;) {
      // Sized to what the file should still hold (+1 to see it grow): small files, small buffers.
      const piece = Buffer.allocUnsafe(Math.min(READ_PIECE_BYTES, Math.max(0, expect.size - pos) + 1))
      const { bytesRead } = await fh.read(piece, 0, piece.length, pos)
      pos += bytesRead
      // Longer than it was when listed: it is being written; the caller tries again later.
      if (pos > expect.size) return null
      const eof = bytesRead === 0
      const data =
        carry.length === 0
          ? piece.subarray(0, bytesRead)
          : Buffer.concat([carry, piece.subarray(0, bytesRead)])
      if (data.length === 0) break
      const cuts = chunkBuffer(data, DEFAULT_CHUNKER_PARAMS)
      // The last cut of a piece is forced by its end: keep those bytes for the next piece.
      const keep = eof ? cuts.length : cuts.length - 1
      for (let i = 0; i < keep; i++) {
        const [s, e] = cuts[i] as [number, number]
        chunks.push({ hash: hashChunk(data.subarray(s, e)), off: carryOff + s, size: e - s })
      }
      if (eof) break
      const last = cuts[cuts.length - 1] as [number, number]
      carry = Buffer.from(data.subarray(last[0]))
      carryOff += last[0]
    }
    const st = await fh.stat({ bigint: true })
    if (
      Number(st.size) !== pos ||
      st.mtimeNs !== expect.mtimeNs ||
      Number(st.ino) !== expect.ino ||
      pos !== expect.size
    )
      return null
    return { chunks, digest: digestOf(chunks.map((c) => c.hash)), size: pos }
  } finally {
    await fh.close()
  }
}

export async function readRange(file: string, off: number, len: number): Promise<Buffer> {
  const fh = await open(file, 'r')
  try {
    const b = Buffer.allocUnsafe(len)
    const { bytesRead } = await fh.read(b, 0, len, off)
    return b.subarray(0, bytesRead)
  } finally {
    await fh.close()
  }
}

/** A fresh temporary name beside `target`, for a file or link renamed over it (never synced). */
export function tempBeside(target: string): string {
  return path.join(path.dirname(target), `${TEMP_PREFIX}tmp-${randomBytes(6).toString('hex')}`)
}

/** Removes our temporary file, at `tmp` or wherever its directory has moved since (by its open fd). */
async function unlinkTemp(tmp: string, fd: number): Promise<void> {
  if (
    await unlink(tmp).then(
      () => true,
      () => false,
    )
  )
    return
  const now = await readlink(`/proc/self/fd/${fd}`).catch(() => '')
  // Only a file of ours that still exists (a deleted one reads "… (deleted)").
  if (path.basename(now) === path.basename(tmp)) await unlink(now).catch(() => undefined)
}

/**
 * Writes a file whole beside `target` and renames it into place, unless `target` changed since
 * `expect` (null: must be absent) — then nothing is changed and false returned.
 */
export async function writeFileAtomic(
  target: string,
  pieces: AsyncIterable<Buffer>,
  mode: number,
  mtimeNs: bigint,
  expect: { mtimeNs: bigint; ino: number } | null | 'any',
): Promise<LocalEntry | false> {
  const tmp = tempBeside(target)
  const fh = await open(tmp, 'wx', 0o600)
  let ok = false
  let written: BigIntStats | undefined
  try {
    for await (const p of pieces) await fh.write(p)
    await fh.sync()
    await fh.chmod(mode & 0o7777)
    const secs = Number(mtimeNs / 1000n) / 1e6
    await fh.utimes(secs, secs)
    // What we wrote, taken before the rename: a write by someone else right after it must show
    // as a change (a rename keeps the inode and mtime).
    written = await fh.stat({ bigint: true })
    if (expect !== 'any') {
      const st = await lstat(target, { bigint: true }).catch(() => null)
      const same =
        expect === null
          ? st === null
          : st !== null && st.mtimeNs === expect.mtimeNs && Number(st.ino) === expect.ino
      if (!same) return false
    }
    await rename(tmp, target)
    ok = true
  } finally {
    // The handle stays open until here: if the directory was renamed meanwhile (a user moving it
    // while we pulled into it), `tmp` names nothing and the rename failed, but the open handle
    // still knows where the file went. Without this the temporary file stayed in the moved
    // directory until the stale sweep, visible to the user.
    if (!ok) await unlinkTemp(tmp, fh.fd)
    await fh.close().catch(() => undefined)
  }
  const st = written as BigIntStats
  return {
    path: '',
    kind: 'file',
    mode: Number(st.mode & 0o7777n),
    size: Number(st.size),
    mtimeNs: st.mtimeNs,
    ino: Number(st.ino),
  }
}
