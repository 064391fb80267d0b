// Unflushed writes to one file, kept as sorted, non-overlapping byte runs. Reads overlay them on
// the committed content, so every handle sees them before they are flushed.

export interface DirtyRun {
  off: number
  data: Buffer
}

export class WriteBuffer {
  runs: DirtyRun[] = []
  bytes = 0

  /** Copies `data` in (the caller may reuse its buffer). Overlapping runs are merged. */
  write(off: number, data: Uint8Array): void {
    if (data.length === 0) return
    const end = off + data.length
    const out: DirtyRun[] = []
    let mergedStart = off
    let mergedEnd = end
    const overlapping: DirtyRun[] = []
    for (const r of this.runs) {
      const rEnd = r.off + r.data.length
      if (rEnd < off || r.off > end) out.push(r)
      else {
        // Touching or overlapping runs merge into one, so runs stay few for sequential writes.
        overlapping.push(r)
        mergedStart = Math.min(mergedStart, r.off)
        mergedEnd = Math.max(mergedEnd, rEnd)
      }
    }
    let merged: Buffer
    if (overlapping.length === 0) merged = Buffer.from(data)
    else {
      merged = Buffer.allocUnsafe(mergedEnd - mergedStart)
      for (const r of overlapping) r.data.copy(merged, r.off - mergedStart)
      merged.set(data, off - mergedStart)
    }
    out.push({ off: mergedStart, data: merged })
    out.sort((a, b) => a.off - b.off)
    this.runs = out
    this.bytes = out.reduce((s, r) => s + r.data.length, 0)
  }

  /** Forgets bytes at or past `size` (truncate). */
  truncate(size: number): void {
    this.runs = this.runs
      .filter((r) => r.off < size)
      .map((r) => (r.off + r.data.length > size ? { off: r.off, data: r.data.subarray(0, size - r.off) } : r))
    this.bytes = this.runs.reduce((s, r) => s + r.data.length, 0)
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
      const rEnd = r.off + r.data.length
      if (rEnd <= off || r.off >= end) continue
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
