// FastCDC: deterministic, bounded, streaming == one-shot, and shift-resistant (dedup survives inserts).
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  StreamingChunker,
  chunkBuffer,
  cutPoint,
  masksFor,
  nativeCdc,
  GEAR,
  DEFAULT_CHUNKER_PARAMS,
  type ChunkerParams,
} from '../../src/blockstore/chunker.js'
import { hashChunk } from '../../src/blockstore/hash.js'

const SMALL: ChunkerParams = { minBytes: 2 * 1024, avgBytes: 8 * 1024, maxBytes: 32 * 1024 }

function streamChunks(data: Buffer, params: ChunkerParams, pieces: number[]): Buffer[] {
  const c = new StreamingChunker(params, 2 * params.maxBytes)
  const out: Buffer[] = []
  let pos = 0
  let i = 0
  while (pos < data.length) {
    const len = Math.min(data.length - pos, pieces[i++ % pieces.length] ?? 1)
    let piece = data.subarray(pos, pos + len)
    while (piece.length > 0) {
      const { consumed, chunks } = c.feed(piece)
      for (const ch of chunks) out.push(Buffer.from(ch))
      piece = piece.subarray(consumed)
    }
    pos += len
  }
  for (const ch of c.end()) out.push(Buffer.from(ch))
  return out
}

describe('chunker', () => {
  // Format fixture: these values are part of the on-disk format (FORMAT.md). If this test fails,
  // boundaries moved and new writes no longer dedup against old data: that needs a format version.
  it('keeps its gear table, boundaries and hash function fixed', () => {
    expect(hashChunk(Buffer.from(GEAR.buffer)).toString('hex')).toBe(
      '3b3de8643240fdcc03fb3976ec346a281a43121e69cc56987d19bc02d0c9b55b',
    )
    expect(hashChunk(Buffer.from('hello')).toString('hex')).toBe(
      'ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f',
    )
    const data = Buffer.alloc(16 << 20)
    let x = 12345
    for (let i = 0; i < data.length; i++) {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      data[i] = x & 0xff
    }
    expect(chunkBuffer(data, DEFAULT_CHUNKER_PARAMS).map(([s, e]) => e - s)).toEqual([
      483522, 445686, 482129, 287857, 1101479, 1202304, 371683, 1650625, 1235253, 1303747, 439276, 706359,
      1297412, 733291, 672831, 1445481, 1453881, 1102517, 361883,
    ])
  })

  it('keeps chunks within [min, max], only the last may be short', () => {
    const data = randomBytes(2 * 1024 * 1024)
    const cuts = chunkBuffer(data, SMALL)
    cuts.forEach(([s, e], i) => {
      expect(e - s).toBeLessThanOrEqual(SMALL.maxBytes)
      if (i < cuts.length - 1) expect(e - s).toBeGreaterThanOrEqual(SMALL.minBytes)
    })
    expect(cuts[cuts.length - 1]?.[1]).toBe(data.length)
    const mean = data.length / cuts.length
    expect(mean).toBeGreaterThan(SMALL.avgBytes * 0.6)
    expect(mean).toBeLessThan(SMALL.avgBytes * 2)
  })

  it('a file smaller than the minimum is one chunk; an empty input is none', () => {
    expect(chunkBuffer(randomBytes(1000), SMALL)).toEqual([[0, 1000]])
    expect(chunkBuffer(Buffer.alloc(0), SMALL)).toEqual([])
    const c = new StreamingChunker(SMALL, 2 * SMALL.maxBytes)
    expect(c.end()).toEqual([])
  })

  it('streaming in any piece sizes gives the same chunks as one pass (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 400_000 }),
        fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 8 }),
        fc.integer(),
        (size, pieces, seed) => {
          const data = Buffer.alloc(size)
          let x = seed | 1
          for (let i = 0; i < size; i++) {
            x ^= x << 13
            x ^= x >>> 17
            x ^= x << 5
            data[i] = x & 0xff
          }
          const oneShot = chunkBuffer(data, SMALL).map(([s, e]) => data.subarray(s, e))
          const streamed = streamChunks(data, SMALL, pieces)
          expect(streamed.length).toBe(oneShot.length)
          streamed.forEach((c, i) => expect(c.equals(oneShot[i] as Buffer)).toBe(true))
        },
      ),
      { numRuns: 40 },
    )
  })

  it('an insert in the middle changes only the chunks around it', () => {
    const data = randomBytes(4 * 1024 * 1024)
    const edited = Buffer.concat([
      data.subarray(0, 2_000_000),
      Buffer.from('inserted bytes!'),
      data.subarray(2_000_000),
    ])
    const names = (b: Buffer): Set<string> =>
      new Set(chunkBuffer(b, SMALL).map(([s, e]) => hashChunk(b.subarray(s, e)).toString('hex')))
    const before = names(data)
    const after = names(edited)
    let shared = 0
    for (const h of after) if (before.has(h)) shared++
    expect(shared).toBeGreaterThanOrEqual(after.size - 3)
  })

  it('the native gear loop is built and cuts exactly where the JavaScript one does', () => {
    // `npm install` builds native/cdc.c; a missing build would silently cost 3x in throughput.
    expect(nativeCdc, 'build/Release/s0_native.node did not load (run npm install)').toBeDefined()
    for (const [params, size, seed] of [
      [SMALL, 3_000_000, 5],
      [DEFAULT_CHUNKER_PARAMS, 40_000_000, 6],
      [{ minBytes: 64, avgBytes: 256, maxBytes: 1024 }, 200_000, 7],
    ] as const) {
      const data = Buffer.alloc(size)
      let x = seed
      for (let i = 0; i < size; i++) {
        x ^= x << 13
        x ^= x >>> 17
        x ^= x << 5
        data[i] = x & 0xff
      }
      const { hard, easy } = masksFor(params.avgBytes)
      const js: Array<[number, number]> = []
      for (let start = 0; start < data.length;) {
        const end = cutPoint(
          data,
          start,
          data.length,
          params.minBytes,
          params.avgBytes,
          params.maxBytes,
          GEAR,
          hard,
          easy,
        )
        js.push([start, end])
        start = end
      }
      expect(chunkBuffer(data, params)).toEqual(js)
    }
  })
})
