// Two bounded caches of verified chunk bytes: memory (lru-cache, bounded in bytes) and a local
// directory (bounded in bytes, evicted least-recently-used). Cached bytes are re-hashed on the
// way out of the disk cache, which is not trusted more than the object store.
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { LRUCache } from 'lru-cache'
import type { Logger } from '../core/log.js'

export class MemoryChunkCache {
  private readonly lru: LRUCache<string, Buffer> | undefined

  constructor(maxBytes: number) {
    this.lru =
      maxBytes > 0
        ? new LRUCache<string, Buffer>({ maxSize: maxBytes, sizeCalculation: (b) => Math.max(1, b.length) })
        : undefined
  }

  get(key: string): Buffer | undefined {
    return this.lru?.get(key)
  }

  set(key: string, value: Buffer): void {
    if (this.lru && value.length <= this.lru.maxSize) this.lru.set(key, value)
  }

  get bytes(): number {
    return this.lru?.calculatedSize ?? 0
  }

  clear(): void {
    this.lru?.clear()
  }
}

export class DiskChunkCache {
  // Map iteration order is insertion order: re-inserting on use makes it an LRU.
  private readonly entries = new Map<string, number>()
  private totalBytes = 0

  private constructor(
    private readonly dir: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  static async open(dir: string, maxBytes: number, log: Logger): Promise<DiskChunkCache> {
    const cache = new DiskChunkCache(dir, maxBytes, log)
    await rm(path.join(dir, 'tmp'), { recursive: true, force: true })
    await mkdir(path.join(dir, 'tmp'), { recursive: true })
    await cache.scan()
    return cache
  }

  get bytes(): number {
    return this.totalBytes
  }

  private fileOf(key: string): string {
    // key = team:hex
    const [team, hex] = key.split(':') as [string, string]
    return path.join(this.dir, team, hex.slice(0, 2), hex)
  }

  private async scan(): Promise<void> {
    const found: Array<{ key: string; size: number; atimeMs: number }> = []
    // Entries that vanish or cannot be read while scanning are simply not cached.
    for (const team of await readdir(this.dir).catch(() => [] as string[])) {
      if (team === 'tmp') continue
      for (const shard of await readdir(path.join(this.dir, team)).catch(() => [] as string[])) {
        for (const hex of await readdir(path.join(this.dir, team, shard)).catch(() => [] as string[])) {
          const st = await stat(path.join(this.dir, team, shard, hex)).catch(() => undefined)
          if (st?.isFile()) found.push({ key: `${team}:${hex}`, size: st.size, atimeMs: st.mtimeMs })
        }
      }
    }
    found.sort((a, b) => a.atimeMs - b.atimeMs)
    for (const f of found) {
      this.entries.set(f.key, f.size)
      this.totalBytes += f.size
    }
    await this.evict()
  }

  async get(key: string): Promise<Buffer | undefined> {
    const size = this.entries.get(key)
    if (size === undefined) return undefined
    try {
      const buf = await readFile(this.fileOf(key))
      this.entries.delete(key)
      this.entries.set(key, size)
      return buf
    } catch {
      // Unreadable is a miss: the chunk comes from the object store instead.
      this.drop(key)
      return undefined
    }
  }

  async set(key: string, value: Buffer): Promise<void> {
    if (this.maxBytes <= 0 || value.length > this.maxBytes || this.entries.has(key)) return
    const file = this.fileOf(key)
    const tmp = path.join(this.dir, 'tmp', randomBytes(8).toString('hex'))
    try {
      await mkdir(path.dirname(file), { recursive: true })
      await writeFile(tmp, value)
      await rename(tmp, file)
      this.entries.set(key, value.length)
      this.totalBytes += value.length
      await this.evict()
    } catch (err) {
      // The temp file may not exist; `tmp/` is emptied at every open anyway.
      await unlink(tmp).catch(() => undefined)
      this.log.warn('disk cache write failed', { err })
    }
  }

  /** Forgets an entry whose bytes turned out wrong. */
  async invalidate(key: string): Promise<void> {
    this.drop(key)
    // Gone already is fine; a file left behind is re-hashed (and dropped) before any use.
    await unlink(this.fileOf(key)).catch(() => undefined)
  }

  private drop(key: string): void {
    const size = this.entries.get(key)
    if (size === undefined) return
    this.entries.delete(key)
    this.totalBytes -= size
  }

  private async evict(): Promise<void> {
    while (this.totalBytes > this.maxBytes) {
      const oldest = this.entries.keys().next()
      if (oldest.done) break
      const key = oldest.value
      this.drop(key)
      // A file that stays behind is counted again by the next start's scan, and evicted then.
      await unlink(this.fileOf(key)).catch(() => undefined)
    }
  }
}
