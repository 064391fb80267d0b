// The Vfs's caches of metadata rows, kept coherent by the single writer: inodes (or "absent"),
// names (parent and name to inode, 0 = absent), directories whose every name is cached, and
// directory paths. Each holds at most limits.inodeCacheEntriesMax entries; inodes also at most
// limits.inodeCacheBytesMax bytes (inline files carry their data).
import type { Ino } from '../core/ids.js'
import { LRUCache } from 'lru-cache'
import { limits } from '../core/limits.js'
import type { DirEntry, Inode } from './types.js'

/** The key of a name in the cache (and of an entry in a metadata batch). */
export function nameKey(parent: Ino, name: Buffer): string {
  return `${parent}:${name.toString('hex')}`
}

/** About what a cached inode holds in memory (the fixed part is an estimate). */
function inodeBytes(i: Inode | false): number {
  if (i === false) return 64
  return 512 + (i.inline?.length ?? 0) + (i.target?.length ?? 0) + i.extents.length * 96
}

export class InodeCache {
  // Bounded in entries and in bytes: an inline file's inode carries up to
  // limits.inlineFileBytesMax of data, and reads of inline files are served from here.
  private readonly inodes = new LRUCache<number, Inode | false>({
    max: limits.inodeCacheEntriesMax,
    maxSize: limits.inodeCacheBytesMax,
    sizeCalculation: inodeBytes,
  })
  /**
   * Directories whose every entry is in `names` (made by this Vfs, the single writer): a miss
   * there is a definite "no such name", with no query. A directory leaves the set as soon as
   * one of its names is evicted from the cache.
   */
  private readonly completeDirs = new Set<Ino>()
  private readonly names = new LRUCache<string, Ino | 0>({
    max: limits.inodeCacheEntriesMax,
    dispose: (_ino, key, reason) => {
      if (reason === 'evict' || reason === 'delete')
        this.completeDirs.delete(Number(key.slice(0, key.indexOf(':'))) as Ino)
    },
  })
  private readonly dirPaths = new Map<Ino, string>()

  /** The inode; false when known to be absent; undefined when not cached. */
  inode(ino: Ino): Inode | false | undefined {
    return this.inodes.get(ino)
  }

  setInode(ino: Ino, i: Inode | false): void {
    this.inodes.set(ino, i)
  }

  /** The inode `key` (see nameKey) names, 0 when known absent, undefined when not known. */
  name(key: string, parent: Ino): Ino | 0 | undefined {
    const cached = this.names.get(key)
    if (cached !== undefined) return cached
    return this.completeDirs.has(parent) ? 0 : undefined
  }

  setName(key: string, ino: Ino | 0): void {
    this.names.set(key, ino)
  }

  /** A directory this Vfs just made: every name it will hold goes through the cache. */
  markComplete(dir: Ino): void {
    this.completeDirs.add(dir)
  }

  /** Remembers every entry of a directory; it is complete if inserting them evicted none. */
  fillDir(dir: Ino, entries: readonly DirEntry[]): void {
    if (entries.length > limits.inodeCacheEntriesMax / 4) return
    const keys = entries.map((e) => nameKey(dir, e.name))
    entries.forEach((e, i) => this.names.set(keys[i] as string, e.ino))
    if (keys.every((k) => this.names.has(k))) this.completeDirs.add(dir)
  }

  dirPath(ino: Ino): string | undefined {
    return this.dirPaths.get(ino)
  }

  setDirPath(ino: Ino, path: string): void {
    if (this.dirPaths.size > limits.inodeCacheEntriesMax) this.dirPaths.clear()
    this.dirPaths.set(ino, path)
  }

  /** After a directory moved or went: paths below it may be stale. */
  forgetDirPaths(): void {
    this.dirPaths.clear()
  }

  /** Inode and name rows (after a failed change, which may have left part of itself here). */
  dropRows(): void {
    this.inodes.clear()
    this.names.clear()
    this.completeDirs.clear()
  }

  clear(): void {
    this.dropRows()
    this.dirPaths.clear()
  }
}
