// One buffered writer for append-only logs in Postgres (sandbox events, sandbox output logs):
// appending never blocks the caller (the egress proxy audits on its hot path, contexts log every
// output chunk); items queue in memory, bounded, and are written in batches by one writer at a
// time. What a full queue cannot take is counted as dropped and logged, never silently lost.
// `flush()` makes everything appended so far durable; listeners hear of each committed batch
// (live tails wake on them instead of polling).
import type { Logger } from './log.js'

export interface AppenderBounds {
  queueMax: number
  batchMax: number
  flushIntervalMs: number
}

export class BatchedAppender<T> {
  private queue: T[] = []
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined
  private closed = false
  private readonly listeners = new Set<(batch: readonly T[]) => void>()
  /** Items a full queue (or a closed appender) could not take, since start (metrics). */
  dropped = 0
  /** Items written, since start (metrics). */
  written = 0

  constructor(
    private readonly what: string,
    private readonly bounds: AppenderBounds,
    /** Writes one batch in one transaction; throws if nothing of it was written. */
    private readonly writeBatch: (batch: T[]) => Promise<void>,
    private readonly log: Logger,
  ) {}

  /** Queues an item; false if it was dropped. Never throws, never waits. */
  push(item: T): boolean {
    if (this.closed || this.queue.length >= this.bounds.queueMax) {
      if (this.dropped++ % this.bounds.queueMax === 0)
        this.log.warn(`${this.what} queue full: dropped`, { dropped: this.dropped })
      return false
    }
    this.queue.push(item)
    // A flush in progress drains the queue to the end: kicking again would only stack waiters
    // (one per append while a batch is being written: thousands under load).
    if (this.queue.length >= this.bounds.batchMax) {
      if (!this.flushing) this.kick()
    } else this.timer ??= setTimeout(() => this.kick(), this.bounds.flushIntervalMs)
    return true
  }

  /** Called after every committed batch, with its items in order. */
  onWritten(listener: (batch: readonly T[]) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private kick(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    // Its failure is logged inside; the items stay queued for the next flush.
    void this.flush()
  }

  /** Writes everything queued so far, batch by batch (and waits for a write in progress). */
  async flush(): Promise<void> {
    for (;;) {
      while (this.flushing) await this.flushing
      if (this.queue.length === 0) return
      let ok = false
      this.flushing = this.write()
        .then((written) => void (ok = written))
        .finally(() => (this.flushing = undefined))
      await this.flushing
      if (!ok) break // the database failed: the timer tries again
    }
    if (this.queue.length > 0 && !this.timer && !this.closed)
      this.timer = setTimeout(() => this.kick(), this.bounds.flushIntervalMs)
  }

  /** One batch; false if the database refused it (the batch is back in the queue). */
  private async write(): Promise<boolean> {
    const batch = this.queue.splice(0, this.bounds.batchMax)
    try {
      await this.writeBatch(batch)
    } catch (err) {
      // Back to the front (bounded: what no longer fits is dropped and counted), retried later.
      const room = Math.max(0, this.bounds.queueMax - this.queue.length)
      this.dropped += Math.max(0, batch.length - room)
      this.queue.unshift(...batch.slice(0, room))
      this.log.warn(`writing ${this.what} failed; will retry`, { items: batch.length, err })
      return false
    }
    this.written += batch.length
    for (const l of this.listeners) {
      try {
        l(batch)
      } catch (err) {
        this.log.error(`${this.what} listener failed`, { err })
      }
    }
    return true
  }

  /** Flushes and stops taking items. */
  async close(): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    await this.flush()
    this.closed = true
  }
}
