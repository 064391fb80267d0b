// The one contract every ObjectStore implementation passes (local directory, S3, and the
// resilient and fault-injecting decorators). Each case uses its own key prefix.
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import type { ObjectStore } from '../../src/blockstore/object-store.js'

let n = 0
const prefix = (): string => `contract-${process.pid}-${Date.now()}-${n++}`

async function collect(
  it: AsyncIterable<{ key: string; size: number }>,
): Promise<Array<{ key: string; size: number }>> {
  const out: Array<{ key: string; size: number }> = []
  for await (const o of it) out.push({ key: o.key, size: o.size })
  return out
}

export function objectStoreContract(name: string, getStore: () => ObjectStore): void {
  describe(`ObjectStore contract: ${name}`, () => {
    it('round-trips bytes, including an empty object and a 20 MiB one', async () => {
      const s = getStore()
      const p = prefix()
      const small = randomBytes(1000)
      const big = randomBytes(20 * 1024 * 1024)
      await s.put(`${p}/small`, small)
      await s.put(`${p}/empty`, Buffer.alloc(0))
      await s.put(`${p}/big`, big)
      expect((await s.get(`${p}/small`)).equals(small)).toBe(true)
      expect((await s.get(`${p}/empty`)).length).toBe(0)
      expect((await s.get(`${p}/big`)).equals(big)).toBe(true)
    })

    it('overwrites atomically: a reader sees the old or the new object', async () => {
      const s = getStore()
      const k = `${prefix()}/obj`
      await s.put(k, Buffer.from('first version'))
      await s.put(k, Buffer.from('second'))
      expect((await s.get(k)).toString()).toBe('second')
      expect((await s.head(k))?.size).toBe(6)
    })

    it('serves exact byte ranges', async () => {
      const s = getStore()
      const k = `${prefix()}/ranged`
      const body = randomBytes(100_000)
      await s.put(k, body)
      for (const [offset, length] of [
        [0, 1],
        [10, 10],
        [99_999, 1],
        [12_345, 50_000],
        [0, 100_000],
      ] as const) {
        const got = await s.get(k, { range: { offset, length } })
        expect(got.equals(body.subarray(offset, offset + length))).toBe(true)
      }
    })

    it('refuses a range past the end with object_truncated, never short data', async () => {
      const s = getStore()
      const k = `${prefix()}/short`
      await s.put(k, randomBytes(100))
      const err = await s.get(k, { range: { offset: 50, length: 100 } }).catch((e: unknown) => e)
      // S3 servers answer 416 for a range that starts past the end and a short body otherwise.
      expect(isS0Error(err, 'object_truncated') || isS0Error(err, 'internal_error')).toBe(true)
    })

    it('reports missing objects as object_not_found and head as undefined', async () => {
      const s = getStore()
      const k = `${prefix()}/missing`
      const err = await s.get(k).catch((e: unknown) => e)
      expect(isS0Error(err, 'object_not_found')).toBe(true)
      const err2 = await s.get(k, { range: { offset: 0, length: 10 } }).catch((e: unknown) => e)
      expect(isS0Error(err2, 'object_not_found')).toBe(true)
      expect(await s.head(k)).toBeUndefined()
    })

    it('heads size and modification time', async () => {
      const s = getStore()
      const k = `${prefix()}/head`
      const before = Date.now() - 5_000
      await s.put(k, randomBytes(4321))
      const info = await s.head(k)
      expect(info?.size).toBe(4321)
      expect(info?.key).toBe(k)
      expect(info!.lastModified.getTime()).toBeGreaterThan(before)
    })

    it('deletes idempotently', async () => {
      const s = getStore()
      const k = `${prefix()}/del`
      await s.put(k, Buffer.from('x'))
      await s.delete(k)
      await s.delete(k)
      expect(await s.head(k)).toBeUndefined()
    })

    // Order is not part of the contract: s3rver walks its directory tree, so a key like `d1-x`
    // beside a folder `d1/` comes out of order (and pagination can skip it). Our key layout never
    // puts such siblings side by side (FORMAT.md), and no caller depends on order.
    it('lists every key under a prefix, across pages, and nothing outside it', async () => {
      const s = getStore()
      const p = prefix()
      const keys = Array.from({ length: 23 }, (_, i) => `${p}/d${i % 3}/k${String(i).padStart(3, '0')}`)
      await Promise.all(keys.map((k, i) => s.put(k, Buffer.alloc(i + 1, 1))))
      await s.put(`${p}-other/k`, Buffer.from('outside'))
      const all = await collect(s.list(`${p}/`))
      const expected = [...keys].sort()
      expect(all.map((o) => o.key).sort()).toEqual(expected)
      expect(all.find((o) => o.key === keys[4])?.size).toBe(5)
      const sub = await collect(s.list(`${p}/d1`))
      expect(sub.map((o) => o.key).sort()).toEqual(expected.filter((k) => k.startsWith(`${p}/d1`)))
      expect(await collect(s.list(`${p}/nothing-here/`))).toEqual([])
    })

    it('rejects unsafe keys', async () => {
      const s = getStore()
      for (const bad of ['', '/abs', 'a/../b', 'a//b', 'a/./b', 'trailing/']) {
        await expect(s.put(bad, Buffer.from('x'))).rejects.toThrow(TypeError)
      }
    })

    it('honours an aborted signal', async () => {
      const s = getStore()
      const ac = new AbortController()
      ac.abort()
      const err = await s
        .put(`${prefix()}/aborted`, Buffer.from('x'), { signal: ac.signal })
        .catch((e: unknown) => e)
      expect(isS0Error(err, 'aborted')).toBe(true)
    })
  })
}
