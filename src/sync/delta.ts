// Delta transfer inside a chunk (rsync's algorithm, per chunk): the volume describes chunks it
// has as block signatures (a rolling 32-bit checksum and 8 bytes of BLAKE3 per block); the
// client sends a new chunk as copies of those blocks plus the bytes no block matched; the
// server rebuilds the chunk and checks it hashes to its name. A small edit of a large file
// then costs about the edit, not the ~1 MiB chunks it touched.
//
// Signature: u32 block size, then per block u32 weak (LE) and 8 bytes strong.
// Delta: u8 base count, u32 block size, base count × 32-byte hashes, then ops until the end:
//   0x00 u32 length, bytes        literal
//   0x01 u8 base, u32 block, u32 count   copy `count` whole blocks (the last may be short)
import { hashChunk } from '../blockstore/hash.js'
import { S0Error } from '../core/errors.js'

export const DELTA_BLOCK_BYTES = 2048
/** Small chunks (small files) are signed in smaller blocks: an edit then costs less. */
export const DELTA_SMALL_BLOCK_BYTES = 512
const SMALL_CHUNK_BYTES = 64 * 1024

export function blockBytesFor(length: number): number {
  return length <= SMALL_CHUNK_BYTES ? DELTA_SMALL_BLOCK_BYTES : DELTA_BLOCK_BYTES
}
const STRONG = 8

export interface Signature {
  blockBytes: number
  weak: Uint32Array
  strong: Buffer
  /** The signed chunk's length (its last block may be short). */
  length: number
}

function weakOf(b: Uint8Array, start: number, end: number): { a: number; b: number } {
  let a = 0
  let s = 0
  for (let i = start; i < end; i++) {
    a = (a + (b[i] as number)) & 0xffff
    s = (s + a) & 0xffff
  }
  return { a, b: s }
}

export function sign(chunk: Buffer, blockBytes = blockBytesFor(chunk.length)): Buffer {
  const n = Math.ceil(chunk.length / blockBytes)
  const out = Buffer.alloc(8 + n * (4 + STRONG))
  out.writeUInt32LE(blockBytes, 0)
  out.writeUInt32LE(chunk.length, 4)
  for (let k = 0; k < n; k++) {
    const s = k * blockBytes
    const e = Math.min(chunk.length, s + blockBytes)
    const w = weakOf(chunk, s, e)
    out.writeUInt32LE(((w.b << 16) | w.a) >>> 0, 8 + k * (4 + STRONG))
    hashChunk(chunk.subarray(s, e)).copy(out, 8 + k * (4 + STRONG) + 4, 0, STRONG)
  }
  return out
}

export function parseSignature(sig: Buffer): Signature {
  const blockBytes = sig.readUInt32LE(0)
  const length = sig.readUInt32LE(4)
  const n = (sig.length - 8) / (4 + STRONG)
  if (!Number.isInteger(n) || blockBytes === 0)
    throw new S0Error('invalid_request', 'malformed chunk signature')
  const weak = new Uint32Array(n)
  const strong = Buffer.alloc(n * STRONG)
  for (let k = 0; k < n; k++) {
    weak[k] = sig.readUInt32LE(8 + k * (4 + STRONG))
    sig.copy(strong, k * STRONG, 8 + k * (4 + STRONG) + 4, 8 + (k + 1) * (4 + STRONG))
  }
  return { blockBytes, weak, strong, length }
}

/**
 * The new chunk as copies of the bases' blocks and literals, or null when that would not be
 * smaller than the chunk (nothing matched).
 */
export function encodeDelta(chunk: Buffer, bases: { hash: Buffer; sig: Signature }[]): Buffer | null {
  const useful = bases.filter((b) => b.sig.blockBytes === bases[0]?.sig.blockBytes).slice(0, 255)
  if (useful.length === 0) return null
  const B = (useful[0] as { sig: Signature }).sig.blockBytes
  // weak → candidate (base, block); only whole blocks are matched while scanning.
  const table = new Map<number, number[]>()
  useful.forEach((u, bi) => {
    const whole = Math.floor(u.sig.length / B)
    for (let k = 0; k < whole; k++) {
      const w = u.sig.weak[k] as number
      const list = table.get(w)
      if (list) list.push(bi, k)
      else table.set(w, [bi, k])
    }
  })
  const parts: Buffer[] = []
  const header = Buffer.alloc(5 + useful.length * 32)
  header[0] = useful.length
  header.writeUInt32LE(B, 1)
  useful.forEach((u, i) => u.hash.copy(header, 5 + i * 32))
  parts.push(header)
  let litStart = 0
  let copied = 0
  const flushLiteral = (end: number): void => {
    if (end <= litStart) return
    const h = Buffer.alloc(5)
    h[0] = 0
    h.writeUInt32LE(end - litStart, 1)
    parts.push(h, chunk.subarray(litStart, end))
  }
  let last: { base: number; block: number; count: number; at: number } | undefined
  const emitCopy = (base: number, block: number, at: number): void => {
    if (last && last.base === base && last.block + last.count === block && last.at === at) {
      last.count++
      last.at = at + B
      return
    }
    if (last) pushCopy(last)
    last = { base, block, count: 1, at: at + B }
  }
  const pushCopy = (c: { base: number; block: number; count: number }): void => {
    const h = Buffer.alloc(10)
    h[0] = 1
    h[1] = c.base
    h.writeUInt32LE(c.block, 2)
    h.writeUInt32LE(c.count, 6)
    parts.push(h)
  }
  let i = 0
  let w = chunk.length >= B ? weakOf(chunk, 0, B) : undefined
  while (w && i + B <= chunk.length) {
    const key = ((w.b << 16) | w.a) >>> 0
    const cands = table.get(key)
    let hit = -1
    if (cands) {
      const strong = hashChunk(chunk.subarray(i, i + B))
      for (let c = 0; c < cands.length; c += 2) {
        const u = useful[cands[c] as number] as { sig: Signature }
        const k = cands[c + 1] as number
        if (strong.compare(u.sig.strong, k * STRONG, (k + 1) * STRONG, 0, STRONG) === 0) {
          hit = c
          break
        }
      }
    }
    if (hit >= 0 && cands) {
      if (last === undefined || last.at !== i) {
        if (last) pushCopy(last)
        last = undefined
        flushLiteral(i)
      }
      emitCopy(cands[hit] as number, cands[hit + 1] as number, i)
      copied += B
      i += B
      litStart = i
      w = i + B <= chunk.length ? weakOf(chunk, i, i + B) : undefined
      continue
    }
    // Roll one byte.
    const out = chunk[i] as number
    const inn = i + B < chunk.length ? (chunk[i + B] as number) : undefined
    i++
    if (inn === undefined) break
    const a = (w.a - out + inn) & 0xffff
    const b = (w.b - B * out + a) & 0xffff
    w = { a, b }
  }
  if (last) pushCopy(last)
  flushLiteral(chunk.length)
  if (copied === 0) return null
  const delta = Buffer.concat(parts)
  return delta.length < chunk.length ? delta : null
}

/** Rebuilds a chunk from a delta; `base(hash)` reads a base chunk the team has. */
export async function applyDelta(delta: Buffer, base: (hash: Buffer) => Promise<Buffer>): Promise<Buffer> {
  const bad = (why: string): S0Error => new S0Error('invalid_request', `malformed delta: ${why}`)
  if (delta.length < 5) throw bad('empty')
  const nb = delta[0] as number
  const blockBytes = delta.readUInt32LE(1)
  if (blockBytes < 64 || blockBytes > 1 << 20) throw bad(`block size ${blockBytes}`)
  if (delta.length < 5 + nb * 32) throw bad('short header')
  const bases: Buffer[] = []
  for (let k = 0; k < nb; k++) bases.push(await base(delta.subarray(5 + k * 32, 5 + (k + 1) * 32)))
  const out: Buffer[] = []
  for (let p = 5 + nb * 32; p < delta.length;) {
    const op = delta[p]
    if (op === 0) {
      if (p + 5 > delta.length) throw bad('short literal')
      const len = delta.readUInt32LE(p + 1)
      if (p + 5 + len > delta.length) throw bad('literal past the end')
      out.push(delta.subarray(p + 5, p + 5 + len))
      p += 5 + len
    } else if (op === 1) {
      if (p + 10 > delta.length) throw bad('short copy')
      const b = bases[delta[p + 1] as number]
      if (!b) throw bad('no such base')
      const block = delta.readUInt32LE(p + 2)
      const count = delta.readUInt32LE(p + 6)
      const s = block * blockBytes
      const e = Math.min(b.length, (block + count) * blockBytes)
      if (s >= e) throw bad('copy past the base')
      out.push(b.subarray(s, e))
      p += 10
    } else throw bad(`op ${op}`)
  }
  return Buffer.concat(out)
}
