// A file's content as a sorted list of non-overlapping extents, each a slice of one chunk.
// Bytes not covered by any extent below the file size are zeros (sparse). Pure functions: the
// volume engine stores the list per inode version, so a write copies this list, never data.
// Small files may instead hold their bytes inline in the inode (readInline, spliceInline).
import { pack, unpack } from 'msgpackr'
import { assert } from '../core/assert.js'

export interface Extent {
  /** Offset in the file. */
  off: number
  len: number
  /** BLAKE3-256 of the chunk holding the bytes. */
  hash: Buffer
  /** Offset of the first byte inside that chunk. */
  coff: number
}

/** Replaces whatever covered [off, off+len) with `added` (which must exactly tile that range). */
export function spliceExtents(
  list: readonly Extent[],
  off: number,
  len: number,
  added: readonly Extent[],
): Extent[] {
  const end = off + len
  const out: Extent[] = []
  let inserted = false
  for (const e of list) {
    const eEnd = e.off + e.len
    if (eEnd <= off) {
      out.push(e)
      continue
    }
    if (e.off >= end) {
      if (!inserted) {
        out.push(...added)
        inserted = true
      }
      out.push(e)
      continue
    }
    // Overlap: keep the parts of e outside [off, end).
    if (e.off < off) out.push({ off: e.off, len: off - e.off, hash: e.hash, coff: e.coff })
    if (!inserted) {
      out.push(...added)
      inserted = true
    }
    if (eEnd > end) out.push({ off: end, len: eEnd - end, hash: e.hash, coff: e.coff + (end - e.off) })
  }
  if (!inserted) out.push(...added)
  return out
}

/** Drops everything at or past `size`. */
export function truncateExtents(list: readonly Extent[], size: number): Extent[] {
  const out: Extent[] = []
  for (const e of list) {
    if (e.off >= size) break
    out.push(e.off + e.len > size ? { ...e, len: size - e.off } : e)
  }
  return out
}

/** The extents overlapping [off, off+len), in order. */
export function extentsIn(list: readonly Extent[], off: number, len: number): Extent[] {
  const end = off + len
  // Binary search for the first extent ending after `off`.
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    const e = list[mid] as Extent
    if (e.off + e.len <= off) lo = mid + 1
    else hi = mid
  }
  const out: Extent[] = []
  for (let i = lo; i < list.length; i++) {
    const e = list[i] as Extent
    if (e.off >= end) break
    out.push(e)
  }
  return out
}

export function checkExtents(list: readonly Extent[]): void {
  let end = 0
  for (const e of list) {
    assert(
      e.len > 0 && e.off >= end && e.coff >= 0 && e.hash.length === 32,
      'extent list out of order or malformed',
    )
    end = e.off + e.len
  }
}

// Stored as msgpack [off, len, hash, coff] tuples: ~45 bytes an extent.
export function encodeExtents(list: readonly Extent[]): Buffer {
  return pack(list.map((e) => [e.off, e.len, e.hash, e.coff]))
}

export function decodeExtents(bytes: Buffer | null | undefined): Extent[] {
  if (!bytes || bytes.length === 0) return []
  const raw = unpack(bytes) as Array<[number, number, Uint8Array, number]>
  return raw.map(([off, len, hash, coff]) => ({ off, len, hash: Buffer.from(hash), coff }))
}

/**
 * Bytes [off, end) of an inline file (`inline`: bytes [0, inline.length), zeros after), with the
 * unflushed writes of `overlay` laid over them; `end` is already cut at the file's size.
 */
export function readInline(
  inline: Buffer,
  overlay: { overlay(off: number, out: Buffer): void } | undefined,
  off: number,
  end: number,
): Buffer {
  const out = Buffer.alloc(end - off)
  if (off < inline.length) inline.copy(out, 0, off, Math.min(end, inline.length))
  overlay?.overlay(off, out)
  return out
}

/**
 * An inline file's bytes after a flush: the old inline bytes (may be null: none, or a sparse
 * file with no data), zero-padded to `dataEnd`, with the flushed runs copied over them.
 */
export function spliceInline(
  old: Buffer | null,
  runs: ReadonlyArray<{ off: number; data: Buffer }>,
  dataEnd: number,
): Buffer {
  const out = Buffer.alloc(dataEnd)
  old?.copy(out, 0, 0, Math.min(old.length, dataEnd))
  for (const r of runs) {
    assert(r.off + r.data.length <= dataEnd, 'a flushed run past the end of an inline file')
    r.data.copy(out, r.off)
  }
  return out
}
