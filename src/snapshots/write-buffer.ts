// Unflushed writes to one file, kept as sorted, non-overlapping byte runs. Reads overlay them on
// the committed content, so every handle sees them before they are flushed.

export interface DirtyRun {
  off: number
  data: Buffer
}

export class WriteBuffer {
  runs: DirtyRun[] = []
  bytes = 0

  /**
   * Copies `data` in (the caller may reuse its buffer). Older bytes under the new range are cut
   * away without copying; touching runs are not merged (that would copy the whole run on every
   * append): `contiguous()` groups them for the flush instead.
   */
  write(off: number, data: Uint8Array): void {
    if (data.length === 0) return
    const run: DirtyRun = { off, data: Buffer.from(data) }
    const end = off + data.length
    const last = this.runs[this.runs.length - 1]
    if (!last || last.off + last.data.length <= off) {
      // Appending past every run: the common case of sequential writes.
      this.runs.push(run)
      this.bytes += data.length
      return
    }
    const out: DirtyRun[] = []
    let inserted = false
    for (const r of this.runs) {
      const rEnd = r.off + r.data.length
      if (rEnd <= off) {
        out.push(r)
        continue
      }
      if (r.off >= end) {
        if (!inserted) {
          out.push(run)
          inserted = true
        }
        out.push(r)
        continue
      }
      if (r.off < off) out.push({ off: r.off, data: r.data.subarray(0, off - r.off) })
      if (!inserted) {
        out.push(run)
        inserted = true
      }
      if (rEnd > end) out.push({ off: end, data: r.data.subarray(end - r.off) })
    }
    if (!inserted) out.push(run)
    this.runs = out
    this.bytes = out.reduce((sum, r) => sum + r.data.length, 0)
  }

  /** Runs grouped into maximal contiguous ranges, in order. */
  contiguous(): DirtyRun[][] {
    const groups: DirtyRun[][] = []
    let cur: DirtyRun[] = []
    let curEnd = -1
    for (const r of this.runs) {
      if (cur.length > 0 && r.off !== curEnd) {
        groups.push(cur)
        cur = []
      }
      cur.push(r)
      curEnd = r.off + r.data.length
    }
    if (cur.length > 0) groups.push(cur)
    return groups
  }

  /** Forgets bytes at or past `size` (truncate). */
  truncate(size: number): void {
    this.runs = this.runs
      .filter((r) => r.off < size)
      .map((r) => (r.off + r.data.length > size ? { off: r.off, data: r.data.subarray(0, size - r.off) } : r))
    this.bytes = this.runs.reduce((sum, r) => sum + r.data.length, 0)
  }

  /** The end of the last dirty byte (0 when empty). */
  get end(): number {
    const last = this.runs[this.runs.length - 1]
    return last ? last.off + last.data.length : 0
  }

  /** Copies dirty bytes inside [off, off+out.length) over `out`. */
  overlay(off: number, out: Buffer): void {
    const end = off + out.length
    for (const r of this.runs) {
      if (r.off >= end) break // runs are sorted
      const rEnd = r.off + r.data.length
      if (rEnd <= off) continue
      const from = Math.max(off, r.off)
      const to = Math.min(end, rEnd)
      r.data.copy(out, from - off, from - r.off, to - r.off)
    }
  }

  take(): DirtyRun[] {
    const runs = this.runs
    this.runs = []
    this.bytes = 0
    return runs
  }
}

/** Serialises async critical sections (per volume metadata changes). */
export class Mutex {
  private tail: Promise<void> = Promise.resolve()

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn)
    this.tail = result.then(
      () => undefined,
      () => undefined,
    )
    return result
  }
}
