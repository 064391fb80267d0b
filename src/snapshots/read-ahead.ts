// Reading file bytes: the extents of a range fetched from the chunk store, buffered writes laid
// over them, and a window of chunks fetched ahead of sequential readers (limits.readAheadBytes,
// refilled when half used), so a refill is one ranged GET of several chunks, not one per chunk.
import { LRUCache } from 'lru-cache'
import type { ChunkStore } from '../blockstore/chunk-store.js'
import type { TeamId, Ino } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { extentsIn, type Extent } from './extents.js'
import type { Inode } from './types.js'

/** Unflushed writes of a file (write-back's DirtyFile), as reads see them. */
export interface Overlay {
  readonly end: number
  overlay(off: number, out: Buffer): void
}

interface ReadState {
  lastEnd: number
  prefetchedTo: number
}

export class ReadAhead {
  private readonly state = new LRUCache<number, ReadState>({ max: limits.readAheadFilesMax })

  constructor(
    private readonly chunks: ChunkStore,
    private readonly teamId: TeamId,
  ) {}

  /** Bytes [off, off+len) of a regular file, cut at its size; holes read as zeros. */
  async read(i: Inode, d: Overlay | undefined, off: number, len: number): Promise<Buffer> {
    const size = Math.max(i.size, d?.end ?? 0)
    const end = Math.min(size, off + len)
    if (off >= end) return Buffer.alloc(0)
    const out = Buffer.alloc(end - off) // holes read as zeros
    const ext = extentsIn(i.extents, off, end - off)
    const ahead = this.window(i.ino, i.extents, off, end, size)
    // This read asks for its own chunks first; read-ahead then fills the cache in the
    // background (one coalesced GET for the rest of the window) without holding this read up.
    const needed = ext.map((e) => e.hash)
    const own = needed.length > 0 ? this.chunks.readMany(this.teamId, needed) : null
    const rest = ahead.filter((h) => !needed.some((n) => n.equals(h)))
    // A hint only: a chunk that fails to arrive here is fetched (and its error reported) by
    // the read that needs it.
    if (rest.length > 0) void this.chunks.readMany(this.teamId, rest).catch(() => undefined)
    if (own) {
      const bufs = await own
      ext.forEach((e, k) => {
        const chunk = bufs[k] as Buffer
        const from = Math.max(off, e.off)
        const to = Math.min(end, e.off + e.len)
        chunk.copy(out, from - off, e.coff + (from - e.off), e.coff + (to - e.off))
      })
    }
    d?.overlay(off, out)
    return out
  }

  /** Forgets every file's position (the volume's content was replaced). */
  clear(): void {
    this.state.clear()
  }

  /** The hashes to fetch ahead of a read of [off, end) of a file of `size` bytes. */
  private window(ino: Ino, extents: readonly Extent[], off: number, end: number, size: number): Buffer[] {
    const st = this.state.get(ino) ?? { lastEnd: 0, prefetchedTo: 0 }
    const sequential = off === st.lastEnd
    st.lastEnd = end
    this.state.set(ino, st)
    const window = limits.readAheadBytes
    if (!sequential || end + window / 2 <= st.prefetchedTo || end >= size) return []
    const from = Math.max(end, st.prefetchedTo)
    const to = Math.min(size, end + window)
    st.prefetchedTo = to
    return from < to ? extentsIn(extents, from, to - from).map((e) => e.hash) : []
  }
}
