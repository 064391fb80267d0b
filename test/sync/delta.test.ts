// Delta transfer inside a chunk: a new chunk sent as copies of an old one's blocks plus literals
// rebuilds exactly, and a small edit costs about the edit.
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { applyDelta, encodeDelta, parseSignature, sign } from '../../src/sync/delta.js'
import { hashChunk } from '../../src/blockstore/hash.js'

const rebuild = (delta: Buffer, bases: Buffer[]): Promise<Buffer> =>
  applyDelta(delta, async (h) => bases.find((b) => hashChunk(b).equals(h)) as Buffer)

describe('chunk deltas', () => {
  it('rebuilds edits, inserts, deletes and shifts, and costs about the change', async () => {
    const old = randomBytes(1 << 20)
    const base = { hash: hashChunk(old), sig: parseSignature(sign(old)) }
    const cases: [string, Buffer][] = [
      ['overwrite', Buffer.concat([old.subarray(0, 5000), Buffer.from('edit!'), old.subarray(5005)])],
      ['insert', Buffer.concat([old.subarray(0, 300_000), randomBytes(100), old.subarray(300_000)])],
      ['delete', Buffer.concat([old.subarray(0, 700_000), old.subarray(700_777)])],
      ['append', Buffer.concat([old, randomBytes(3000)])],
      ['prefix', Buffer.concat([randomBytes(10), old])],
    ]
    for (const [what, next] of cases) {
      const d = encodeDelta(next, [base])
      expect(d, what).not.toBeNull()
      expect((d as Buffer).length, what).toBeLessThan(8 * 1024)
      expect((await rebuild(d as Buffer, [old])).equals(next), what).toBe(true)
    }
    // A small file (small blocks): an edit costs about a block.
    const small = randomBytes(10_000)
    const sb = { hash: hashChunk(small), sig: parseSignature(sign(small)) }
    const edited = Buffer.concat([small.subarray(0, 4000), Buffer.from('x'), small.subarray(4001)])
    const sd = encodeDelta(edited, [sb]) as Buffer
    expect(sd.length).toBeLessThan(1200)
    expect((await rebuild(sd, [small])).equals(edited)).toBe(true)
    // Nothing in common: no delta.
    expect(encodeDelta(randomBytes(100_000), [base])).toBeNull()
  })

  it('refuses a malformed delta', async () => {
    const old = randomBytes(50_000)
    await expect(rebuild(Buffer.from([1, 0, 8, 0, 0, ...hashChunk(old), 7]), [old])).rejects.toMatchObject({
      code: 'invalid_request',
    })
    await expect(rebuild(Buffer.from([0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 9]), [])).rejects.toMatchObject({
      code: 'invalid_request',
    })
  })
})
