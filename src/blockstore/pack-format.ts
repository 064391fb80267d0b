// The pack object format (docs/FORMAT.md): chunk bytes back to back, then a trailer that lists
// them, then a fixed 64-byte footer. The trailer makes every pack self-describing, so the chunk
// index can be rebuilt from the object store alone.
import { S0Error } from '../core/errors.js'
import { HASH_BYTES, hashChunk } from './hash.js'

export const PACK_MAGIC = Buffer.from('S0PACK\r\n', 'latin1')
export const PACK_FORMAT_VERSION = 1
export const FOOTER_BYTES = 64
export const ENTRY_BYTES = 48

export const CODEC_RAW = 0

export interface PackEntry {
  hash: Buffer
  offset: number
  storedBytes: number
  rawBytes: number
  codec: number
}

export interface PackTrailer {
  teamId: string
  entries: PackEntry[]
}

export interface PackFooter {
  trailerOffset: number
  trailerBytes: number
  entryCount: number
  trailerHash: Buffer
}

export function trailerBytesFor(teamId: string, entryCount: number): number {
  return 2 + Buffer.byteLength(teamId, 'utf8') + entryCount * ENTRY_BYTES
}

/** Writes trailer + footer into `out` at `at`; returns the end offset. */
export function writeTrailer(out: Buffer, at: number, trailer: PackTrailer): number {
  const team = Buffer.from(trailer.teamId, 'utf8')
  const start = at
  out.writeUInt16LE(team.length, at)
  at += 2
  team.copy(out, at)
  at += team.length
  for (const e of trailer.entries) {
    e.hash.copy(out, at)
    out.writeUInt32LE(e.offset, at + 32)
    out.writeUInt32LE(e.storedBytes, at + 36)
    out.writeUInt32LE(e.rawBytes, at + 40)
    out.writeUInt8(e.codec, at + 44)
    out.fill(0, at + 45, at + ENTRY_BYTES)
    at += ENTRY_BYTES
  }
  const trailerBytes = at - start
  const footer = out.subarray(at, at + FOOTER_BYTES)
  footer.writeBigUInt64LE(BigInt(start), 0)
  footer.writeUInt32LE(trailerBytes, 8)
  footer.writeUInt32LE(trailer.entries.length, 12)
  hashChunk(out.subarray(start, start + trailerBytes)).copy(footer, 16)
  footer.writeUInt32LE(PACK_FORMAT_VERSION, 48)
  footer.writeUInt32LE(0, 52)
  PACK_MAGIC.copy(footer, 56)
  return at + FOOTER_BYTES
}

export function parseFooter(footer: Buffer, packSize: number, where: string): PackFooter {
  if (footer.length !== FOOTER_BYTES || !footer.subarray(56, 64).equals(PACK_MAGIC)) {
    throw new S0Error('pack_corrupt', `${where}: no pack footer (bad magic)`)
  }
  const version = footer.readUInt32LE(48)
  if (version !== PACK_FORMAT_VERSION)
    throw new S0Error('pack_corrupt', `${where}: unknown pack format version ${version}`)
  const trailerOffset = Number(footer.readBigUInt64LE(0))
  const trailerBytes = footer.readUInt32LE(8)
  const entryCount = footer.readUInt32LE(12)
  if (trailerOffset + trailerBytes + FOOTER_BYTES !== packSize) {
    throw new S0Error('pack_corrupt', `${where}: footer does not match the pack size ${packSize}`)
  }
  return { trailerOffset, trailerBytes, entryCount, trailerHash: Buffer.from(footer.subarray(16, 48)) }
}

export function parseTrailer(bytes: Buffer, footer: PackFooter, where: string): PackTrailer {
  if (bytes.length !== footer.trailerBytes || !hashChunk(bytes).equals(footer.trailerHash)) {
    throw new S0Error('pack_corrupt', `${where}: trailer checksum mismatch`)
  }
  const teamLen = bytes.readUInt16LE(0)
  if (2 + teamLen + footer.entryCount * ENTRY_BYTES !== bytes.length) {
    throw new S0Error('pack_corrupt', `${where}: trailer length does not match its entry count`)
  }
  const teamId = bytes.toString('utf8', 2, 2 + teamLen)
  const entries: PackEntry[] = []
  let end = 0
  for (let at = 2 + teamLen; at < bytes.length; at += ENTRY_BYTES) {
    const e: PackEntry = {
      hash: Buffer.from(bytes.subarray(at, at + HASH_BYTES)),
      offset: bytes.readUInt32LE(at + 32),
      storedBytes: bytes.readUInt32LE(at + 36),
      rawBytes: bytes.readUInt32LE(at + 40),
      codec: bytes.readUInt8(at + 44),
    }
    if (e.offset < end || e.offset + e.storedBytes > footer.trailerOffset || e.storedBytes === 0) {
      throw new S0Error('pack_corrupt', `${where}: entry ${entries.length} is out of bounds`)
    }
    end = e.offset + e.storedBytes
    entries.push(e)
  }
  return { teamId, entries }
}

/** Parses a whole pack held in memory. */
export function parsePack(pack: Buffer, where: string): PackTrailer {
  if (pack.length < FOOTER_BYTES) throw new S0Error('pack_corrupt', `${where}: shorter than a footer`)
  const footer = parseFooter(pack.subarray(pack.length - FOOTER_BYTES), pack.length, where)
  return parseTrailer(
    pack.subarray(footer.trailerOffset, footer.trailerOffset + footer.trailerBytes),
    footer,
    where,
  )
}

export function packObjectKey(teamId: string, packId: string): string {
  return `packs/${teamId}/${packId.slice(0, 2)}/${packId}.pack`
}

/** Inverse of packObjectKey; undefined for keys that are not packs. */
export function parsePackObjectKey(key: string): { teamId: string; packId: string } | undefined {
  const m = /^packs\/([a-z0-9][a-z0-9-]{0,62})\/([0-9a-f]{2})\/([0-9a-f]{32})\.pack$/.exec(key)
  if (!m || m[3]?.slice(0, 2) !== m[2]) return undefined
  return { teamId: m[1] as string, packId: m[3] as string }
}
