// Write-back of file data. Unflushed writes wait in one buffer per file, shared by every handle
// and laid over reads; bounded per file and per volume. Flushes run in batches, one at a time:
// the files' chunks share packs and one durability barrier, then one metadata change commits them.
// Small files skip the chunk store: their bytes go inline into that metadata change.
import type { ChunkStore } from '../blockstore/chunk-store.js'
import type { TeamId, Ino } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Extent } from './extents.js'
import { nowNs } from './types.js'
import { WriteBuffer } from './write-buffer.js'

/**
 * A file's unflushed writes: `pending` takes new writes; `inFlight` holds the runs being flushed
 * (still visible to reads until their commit). Batches run one at a time, so a file's flushes
 * commit in order.
 */
export class DirtyFile {
  pending = new WriteBuffer()
  inFlight: WriteBuffer | null = null
  /** Time of the last write; null once a setattr set the times after it (rsync, tar, cp -p). */
  mtimeNs: bigint | null = null
  /** Who wrote the buffered bytes (ChangeEvent.origin); null once two different writers did. */
  origin: object | null | undefined = undefined

  get end(): number {
    return Math.max(this.pending.end, this.inFlight?.end ?? 0)
  }

  get bytes(): number {
    return this.pending.bytes + (this.inFlight?.bytes ?? 0)
  }

  overlay(off: number, out: Buffer): void {
    this.inFlight?.overlay(off, out)
    this.pending.overlay(off, out)
  }

  truncate(size: number): void {
    this.pending.truncate(size)
    this.inFlight?.truncate(size)
  }
}

/** One file of a batch, its bytes stored: the extents that now cover each range written. */
export interface FlushedFile {
  ino: Ino
  d: DirtyFile
  inFlight: WriteBuffer
  /** The runs go inline into the inode (nothing was stored in the chunk store). */
  inline: boolean
  /** The file's inline bytes moved into chunks with the runs (`added` covers them too). */
  spilled: boolean
  added: Array<{ off: number; len: number; extents: Extent[] }>
}

/**
 * Where a flush puts a file's bytes: inline in its inode, or in the chunk store; `spill` is the
 * inline data the file had, which then moves to chunks together with the new runs.
 */
export type Placement = { inline: true } | { inline: false; spill: Buffer | null }

export interface WriteBackOptions {
  chunks: ChunkStore
  teamId: TeamId
  fileDirtyBytesMax: number
  volumeDirtyBytesMax: number
  writebackDelayMs: number
  /**
   * Points the files' inodes at their new extents (one metadata change). A file whose buffer is
   * no longer `files.get(ino)` was freed meanwhile and must be skipped.
   */
  commit(files: readonly FlushedFile[]): Promise<void>
  /** Asked once per file of a batch, with the end of its runs, before anything is stored. */
  placement(ino: Ino, runsEnd: number): Promise<Placement>
}

/** Files to flush together; `urgent` once someone awaits it (else it waits writebackDelayMs). */
interface WritebackBatch {
  inos: Set<Ino>
  urgent: boolean
  done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

export class WriteBack {
  /** Files with unflushed writes. */
  readonly files = new Map<Ino, DirtyFile>()
  /** Batches that failed so far (their writes were kept and will be retried). */
  errors = 0
  private pendingBatch: WritebackBatch | null = null
  private batchRunning = false
  private timer: NodeJS.Timeout | null = null

  constructor(private readonly opts: WriteBackOptions) {}

  /**
   * Buffers a write to `ino` (`d`: its current buffer, if any). Past fileDirtyBytesMax the file
   * is flushed in the background while the writer goes on; the writer waits only when a second
   * buffer's worth piles up behind the one in flight (bounded memory, pipelined throughput).
   * Returns what the writer must wait for, if anything (not async: no promise per write).
   */
  write(
    ino: Ino,
    d: DirtyFile | undefined,
    off: number,
    data: Uint8Array,
    origin?: object,
  ): Promise<void> | undefined {
    if (!d) {
      this.files.set(ino, (d = new DirtyFile()))
      d.origin = origin
    } else if (d.origin !== origin) d.origin = null
    d.pending.write(off, data)
    d.mtimeNs = nowNs()
    if (d.pending.bytes < this.opts.fileDirtyBytesMax) return this.boundVolume()
    const flushed = this.flush(ino)
    if (d.bytes >= 2 * this.opts.fileDirtyBytesMax) return flushed
    // Not awaited: a failed flush puts the runs back in `pending`, and fsync or close reports it.
    flushed.catch(() => undefined)
    return undefined
  }

  private async boundVolume(): Promise<void> {
    let total = 0
    let largest: { ino: Ino; bytes: number } | undefined
    for (const [ino, d] of this.files) {
      total += d.bytes
      if (d.pending.bytes > (largest?.bytes ?? 0)) largest = { ino, bytes: d.pending.bytes }
    }
    if (total > this.opts.volumeDirtyBytesMax && largest) await this.flush(largest.ino)
  }

  /**
   * Commits the file's buffered writes: content goes to the chunk store first (rule 1), then the
   * new extent list, size and mtime in one metadata change (rule 2). Resolves only after every
   * write made before the call is committed. Files asking while a batch runs go together in the
   * next one (shared packs, one durability barrier, one metadata statement).
   */
  async flush(ino: Ino): Promise<void> {
    if (!this.files.has(ino)) return
    const batch = this.nextBatch()
    batch.inos.add(ino)
    batch.urgent = true
    this.kick()
    await batch.done
  }

  /** Queues the file for the next batch, which starts within writebackDelayMs. */
  flushSoon(ino: Ino): void {
    if (!this.files.has(ino)) return
    this.nextBatch().inos.add(ino)
    this.kick()
  }

  /** Flushes every file, including those dirtied while it runs (up to flushAllRoundsMax rounds). */
  async flushAll(): Promise<void> {
    if (this.files.size === 0) return
    const batch = this.nextBatch()
    for (const ino of this.files.keys()) batch.inos.add(ino)
    batch.urgent = true
    this.kick()
    await batch.done
    // Files dirtied while that batch ran (or by a batch that was already running).
    for (let rounds = 0; this.files.size > 0 && rounds < limits.flushAllRoundsMax; rounds++) {
      for (const ino of [...this.files.keys()]) await this.flush(ino)
    }
  }

  private nextBatch(): WritebackBatch {
    if (!this.pendingBatch) {
      let resolve!: () => void
      let reject!: (err: unknown) => void
      const done = new Promise<void>((res, rej) => {
        resolve = res
        reject = rej
      })
      // A batch nobody awaits (flushSoon only) must not be an unhandled rejection; its writes
      // stay buffered and the next flush of those files reports the error.
      done.catch(() => undefined)
      this.pendingBatch = { inos: new Set(), urgent: false, done, resolve, reject }
    }
    return this.pendingBatch
  }

  /** Starts the pending batch when none runs: now if someone waits on it, else after a delay. */
  private kick(): void {
    const batch = this.pendingBatch
    if (!batch || this.batchRunning) return
    if (!batch.urgent) {
      this.timer ??= setTimeout(() => {
        this.timer = null
        if (this.pendingBatch) this.pendingBatch.urgent = true
        this.kick()
      }, this.opts.writebackDelayMs)
      this.timer.unref?.()
      return
    }
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.pendingBatch = null
    this.batchRunning = true
    // The batch's promise carries the outcome to its callers; this chain only keeps the queue
    // moving, and ends in `finally` with no rejection left (both outcomes are handled above it).
    void this.run(batch)
      .then(batch.resolve, (err: unknown) => {
        this.errors++
        batch.reject(err)
      })
      .finally(() => {
        this.batchRunning = false
        this.kick()
      })
  }

  private async run(batch: WritebackBatch): Promise<void> {
    const files: FlushedFile[] = []
    for (const ino of batch.inos) {
      const d = this.files.get(ino)
      if (!d || d.pending.bytes === 0) continue
      const inFlight = new WriteBuffer()
      for (const r of d.pending.take()) inFlight.runs.push(r)
      inFlight.bytes = inFlight.runs.reduce((s, r) => s + r.data.length, 0)
      d.inFlight = inFlight
      files.push({ ino, d, inFlight, inline: false, spilled: false, added: [] })
    }
    if (files.length === 0) return
    try {
      // Each contiguous range is one chunking stream, so a file written in small pieces is cut
      // into the same chunks as one written at once. Chunks of every file share packs; one
      // barrier then makes them all durable before any metadata refers to them. Inline files
      // store nothing here: a batch of only those costs no pack and no barrier, just the commit.
      let stored = false
      for (const f of files) {
        const place = await this.opts.placement(f.ino, f.inFlight.end)
        if (place.inline) {
          f.inline = true
          continue
        }
        let source = f.inFlight
        if (place.spill) {
          // The file outgrew inline storage: its old bytes are chunked with the new runs over them.
          source = new WriteBuffer()
          source.write(0, place.spill)
          for (const r of f.inFlight.runs) source.write(r.off, r.data)
          f.spilled = true
        }
        stored = true
        for (const group of source.contiguous()) {
          const w = this.opts.chunks.writer(this.opts.teamId)
          for (const r of group) await w.write(r.data)
          const refs = await w.finish({ durable: false })
          const start = (group[0] as { off: number }).off
          let at = start
          const extents: Extent[] = refs.map((ref) => {
            const e = { off: at, len: ref.size, hash: ref.hash, coff: 0 }
            at += ref.size
            return e
          })
          f.added.push({ off: start, len: at - start, extents })
        }
      }
      if (stored) await this.opts.chunks.flush()
      await this.opts.commit(files)
      for (const f of files) {
        f.d.inFlight = null
        if (f.d.pending.bytes === 0 && this.files.get(f.ino) === f.d) this.files.delete(f.ino)
      }
    } catch (err) {
      // Nothing was acknowledged: the runs go back under any newer writes, to be retried.
      for (const f of files) {
        const newer = f.d.pending.take()
        for (const r of f.inFlight.runs) f.d.pending.write(r.off, r.data)
        for (const r of newer) f.d.pending.write(r.off, r.data)
        f.d.inFlight = null
      }
      throw err
    }
  }
}
