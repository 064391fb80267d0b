// Pack objects describe themselves: a trailer lists chunks, a footer locates and checksums it.
// The saved v1 pack (test/fixtures/formats) must keep reading, and today's writer must keep
// producing it byte for byte.
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { hashChunk } from '../../src/blockstore/hash.js'
import {
  FOOTER_BYTES,
  packObjectKey,
  parsePack,
  parsePackObjectKey,
  trailerBytesFor,
  writeTrailer,
  type PackEntry,
} from '../../src/blockstore/pack-format.js'
import { FORMATS_DIR } from '../support/format-fixtures.js'

function buildPack(teamId: string, chunks: Buffer[]): Buffer {
  const dataBytes = chunks.reduce((s, c) => s + c.length, 0)
  const buf = Buffer.alloc(dataBytes + trailerBytesFor(teamId, chunks.length) + FOOTER_BYTES)
  const entries: PackEntry[] = []
  let at = 0
  for (const c of chunks) {
    c.copy(buf, at)
    entries.push({ hash: hashChunk(c), offset: at, storedBytes: c.length, rawBytes: c.length, codec: 0 })
    at += c.length
  }
  const end = writeTrailer(buf, at, { teamId, entries })
  expect(end).toBe(buf.length)
  return buf
}

describe('pack format', () => {
  it('round-trips the trailer', () => {
    const chunks = [randomBytes(10), randomBytes(5000), randomBytes(1)]
    const pack = buildPack('team-abc', chunks)
    const t = parsePack(pack, 'test')
    expect(t.teamId).toBe('team-abc')
    expect(t.entries.map((e) => e.storedBytes)).toEqual([10, 5000, 1])
    t.entries.forEach((e, i) =>
      expect(pack.subarray(e.offset, e.offset + e.storedBytes).equals(chunks[i] as Buffer)).toBe(true),
    )
  })

  it('detects a damaged trailer, footer or truncation', () => {
    const pack = buildPack('team-abc', [randomBytes(100), randomBytes(200)])
    const flip = (at: number): Buffer => {
      const copy = Buffer.from(pack)
      copy[at] = (copy[at] as number) ^ 0xff
      return copy
    }
    for (const damaged of [
      flip(pack.length - 1),
      flip(pack.length - FOOTER_BYTES - 5),
      flip(pack.length - 60),
      pack.subarray(0, pack.length - 3),
    ]) {
      const err = (() => {
        try {
          parsePack(damaged, 'x')
        } catch (e) {
          return e
        }
      })()
      expect(isS0Error(err, 'pack_corrupt')).toBe(true)
    }
  })

  it('names pack objects by team and id, and parses them back', () => {
    const key = packObjectKey('team-1', 'ab'.repeat(16))
    expect(key).toBe(`packs/team-1/ab/${'ab'.repeat(16)}.pack`)
    expect(parsePackObjectKey(key)).toEqual({ teamId: 'team-1', packId: 'ab'.repeat(16) })
    expect(parsePackObjectKey('packs/team-1/cd/' + 'ab'.repeat(16) + '.pack')).toBeUndefined()
    expect(parsePackObjectKey('other/thing')).toBeUndefined()
  })

  it('reads the saved v1 pack: footer, trailer, every chunk re-hashed; the writer still makes it', async () => {
    const pack = await readFile(path.join(FORMATS_DIR, 'pack-v1.pack'))
    const saved = JSON.parse(await readFile(path.join(FORMATS_DIR, 'pack-v1.json'), 'utf8')) as {
      key: string
      teamId: string
      sizeBytes: number
      entries: Array<{ hash: string; offset: number; storedBytes: number; rawBytes: number; codec: number }>
    }
    expect(pack.length).toBe(saved.sizeBytes)
    const trailer = parsePack(pack, saved.key)
    expect(trailer.teamId).toBe(saved.teamId)
    expect(parsePackObjectKey(saved.key)?.teamId).toBe(saved.teamId)
    expect(trailer.entries.map((e) => ({ ...e, hash: e.hash.toString('hex') }))).toEqual(saved.entries)
    expect(trailer.entries.length).toBeGreaterThan(1)
    const chunks = trailer.entries.map((e) => pack.subarray(e.offset, e.offset + e.storedBytes))
    trailer.entries.forEach((e, i) => expect(hashChunk(chunks[i] as Buffer).equals(e.hash)).toBe(true))
    expect(buildPack(trailer.teamId, chunks).equals(pack)).toBe(true)
  })
})
