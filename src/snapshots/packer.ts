// The background packer: moves inline small files of a volume's head layer into packs, a bounded
// pass at a time, without changing what any reader sees. Chunks are made durable first (rule 1),
// then the Vfs swaps each file's inline bytes for extents only if its inode still holds exactly
// those bytes and no write is buffered (compare-and-swap under the Vfs mutex).
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { assert } from '../core/assert.js'
import type { Ino, LayerId, TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Extent } from './extents.js'
import type { MetadataStore } from './metadata-store.js'

/** A file whose inline bytes are now in the chunk store: the extents that hold them. */
export interface PackedFile {
  ino: Ino
  /** The inline bytes that were packed (the swap compares the inode's against them). */
  bytes: Buffer
  extents: Extent[]
}

export interface PackerOptions {
  chunks: ChunkStore
  teamId: TeamId
  metadata: Pick<MetadataStore, 'inlineFiles'>
  /** The volume's head layer now; a pass gives up when it moved (snapshot, fork, restore). */
  head(): LayerId
  /** A write to the file is buffered: packing it now would be wasted (the swap would refuse). */
  busy(ino: Ino): boolean
  /** Commits the Vfs's queued metadata, so the work list (a query) sees every inline row. */
  drain(): Promise<void>
  /**
   * Under the Vfs mutex, for each file: if the head is still `head`, no write to it is buffered
   * and its inode holds exactly `bytes` inline, replaces them by `extents` (one metadata change).
   * Returns how many files were swapped.
   */
  swap(head: LayerId, files: readonly PackedFile[]): Promise<number>
  /** Bounds (limits.packer*); tests pass smaller ones. */
  filesPerPassMax?: number
  bytesPerPassMax?: number
  delayMs?: number
}

export interface PackerStats {
  passes: number
  packedFiles: number
  /** Bytes written to the chunk store (swapped or not). */
  storedBytes: number
  /** Files packed but not swapped: written, truncated or removed meanwhile (their chunks are garbage). */
  lostRaces: number
  /** Passes that failed (logged by nobody here: the inline rows stay, the next pass retries). */
  errors: number
}

export class InlinePacker {
  readonly stats: PackerStats = { passes: 0, packedFiles: 0, storedBytes: 0, lostRaces: 0, errors: 0 }
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private stopped = false
  private readonly filesPerPassMax: number
  private readonly bytesPerPassMax: number
  private readonly delayMs: number

  constructor(private readonly opts: PackerOptions) {
    this.filesPerPassMax = opts.filesPerPassMax ?? limits.packerFilesPerPassMax
    this.bytesPerPassMax = opts.bytesPerPassMax ?? limits.packerBytesPerPassMax
    this.delayMs = opts.delayMs ?? limits.packerDelayMs
    // A pass always makes progress: the largest inline file fits in one.
    assert(this.bytesPerPassMax >= limits.inlineFileBytesMax, 'a packer pass must hold an inline file')
  }

  /** An inline file was committed: a run starts delayMs from the first such notice. */
  notify(): void {
    if (this.stopped || this.timer) return
    this.timer = setTimeout(() => {
      this.timer = null
      // Failures are counted in stats; the inline rows simply stay until the next run.
      void this.runNow().catch(() => undefined)
    }, this.delayMs)
    this.timer.unref?.()
  }

  /**
   * Runs up to limits.packerPassesPerRunMax passes now (after any run in progress); resolves
   * with the files swapped. Tests and the timer call it.
   */
  runNow(): Promise<number> {
    const prev = this.running ?? Promise.resolve()
    let swapped = 0
    const run = prev.then(async () => {
      swapped = await this.run()
    })
    const tracked = run.finally(() => {
      if (this.running === tracked) this.running = null
    })
    this.running = tracked.catch(() => undefined)
    return tracked.then(() => swapped)
  }

  /** No new pass starts; resolves when the running one has ended (Vfs close, engine shutdown). */
  async stop(): Promise<void> {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    await this.running
  }

  private async run(): Promise<number> {
    let swapped = 0
    let after: Ino | 0 = 0
    for (let pass = 0; pass < limits.packerPassesPerRunMax && !this.stopped; pass++) {
      const r: { swapped: number; last: Ino | null } = await this.pass(after).catch((err: unknown) => {
        this.stats.errors++
        throw err
      })
      swapped += r.swapped
      if (r.last === null) break
      after = r.last
    }
    return swapped
  }

  /** One bounded pass over inline files after `after`; `last` null once the list is exhausted. */
  private async pass(after: Ino | 0): Promise<{ swapped: number; last: Ino | null }> {
    this.stats.passes++
    const head = this.opts.head()
    await this.opts.drain()
    const list = await this.opts.metadata.inlineFiles(head, after, this.filesPerPassMax)
    if (list.length === 0) return { swapped: 0, last: null }
    const packed: PackedFile[] = []
    let bytes = 0
    let seen = 0
    for (const f of list) {
      if (this.stopped || this.opts.head() !== head) return { swapped: 0, last: null }
      if (packed.length > 0 && bytes + f.bytes.length > this.bytesPerPassMax) break
      seen++
      if (this.opts.busy(f.ino)) continue
      // One chunking stream per file, as a flush would cut it (so later writes dedup against it).
      const w = this.opts.chunks.writer(this.opts.teamId)
      await w.write(f.bytes)
      const refs = await w.finish({ durable: false })
      const extents: Extent[] = []
      let at = 0
      for (const ref of refs) {
        extents.push({ off: at, len: ref.size, hash: ref.hash, coff: 0 })
        at += ref.size
      }
      assert(at === f.bytes.length, 'packed chunks do not cover the inline bytes')
      packed.push({ ino: f.ino, bytes: f.bytes, extents })
      bytes += f.bytes.length
    }
    // The next pass goes on after the last file looked at, unless the list ended here.
    const exhausted = seen === list.length && list.length < this.filesPerPassMax
    const last = exhausted ? null : (list[seen - 1] as { ino: Ino }).ino
    if (packed.length === 0) return { swapped: 0, last }
    // Rule 1: every chunk durable and indexed before the metadata that points at it is queued.
    await this.opts.chunks.flush()
    if (this.stopped) return { swapped: 0, last: null }
    const swapped = await this.opts.swap(head, packed)
    this.stats.packedFiles += swapped
    this.stats.storedBytes += bytes
    this.stats.lostRaces += packed.length - swapped
    return { swapped, last }
  }
}
