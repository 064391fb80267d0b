// Write-behind for one volume's metadata: changes are queued in order and committed relaxed, up to
// limits.commitGroupChangesMax merged per statement, retried on failure; `drain` waits for the
// queue, `sync` makes everything before it durable with one synchronous commit (group commit):
// the last queued statement itself when a sync waits for it, else a commit after it.
import { isS0Error } from '../core/errors.js'
import type { LayerId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { MetadataBatch, MetadataStore, VolumeUsage } from './metadata-store.js'

interface QueuedCommit {
  batch: MetadataBatch
  head: LayerId
  usage: VolumeUsage
  /** Its place in the order of changes (1, 2, ...). */
  seq: number
}

export class CommitQueue {
  private readonly queue: QueuedCommit[] = []
  private committing: Promise<void> | null = null
  /** Sequence numbers: of the last change queued, the last committed, the last known durable. */
  private enqueued = 0
  private committed = 0
  private durable = 0
  /** Syncs waiting for the queue to drain: its last statement is then a synchronous commit. */
  private syncWaiters = 0
  private syncing: Promise<void> | null = null
  /** The change `syncing` makes durable, with everything before it. */
  private syncingCovers = 0
  private syncNext: Promise<void> | null = null

  constructor(
    private readonly metadata: MetadataStore,
    private readonly volumeId: string,
    /** The writer lease's epoch every commit is fenced with (undefined: not fenced). */
    private readonly epoch?: number,
  ) {}

  /** At the bound: a writer far ahead of Postgres should `drain` before going on. */
  get full(): boolean {
    return this.queue.length >= limits.commitQueueChangesMax
  }

  /** Queues a change to the head layer `head`; `usage` is the volume's after it. */
  enqueue(batch: MetadataBatch, head: LayerId, usage: VolumeUsage): void {
    this.queue.push({ batch, head, usage, seq: ++this.enqueued })
    this.kick()
  }

  /** Resolves once every queued change is in the database (relaxed); throws if committing fails. */
  async drain(): Promise<void> {
    while (this.queue.length > 0) {
      this.kick()
      await this.committing
    }
  }

  private kick(): void {
    if (this.committing || this.queue.length === 0) return
    const run = this.run()
    this.committing = run
    run.then(
      () => {
        this.committing = null
        // Changes queued just as the run ended (after its last look at the queue).
        this.kick()
      },
      () => {
        // A failed run leaves its batches queued: the next change, read or sync retries them
        // (and `drain`, which awaited this run, has the error).
        this.committing = null
      },
    )
  }

  /**
   * Commits queued changes in order: all queued batches of one head layer per statement. The
   * statement that empties the queue while a sync waits is synchronous: it makes itself and
   * every relaxed commit before it durable (WAL order), so that sync needs no statement of its own.
   */
  private async run(): Promise<void> {
    while (this.queue.length > 0) {
      const first = this.queue[0] as QueuedCommit
      let n = 1
      while (n < this.queue.length && n < limits.commitGroupChangesMax && this.queue[n]?.head === first.head)
        n++
      const merged = this.metadata.newBatch()
      for (let k = 0; k < n; k++) merged.absorb((this.queue[k] as QueuedCommit).batch)
      const last = this.queue[n - 1] as QueuedCommit
      const durable = this.syncWaiters > 0 && n === this.queue.length
      for (let attempt = 0; ; attempt++) {
        try {
          await this.metadata.commit(merged, first.head, last.usage, {
            durable,
            ...(this.epoch !== undefined ? { epoch: this.epoch } : {}),
          })
          break
        } catch (err) {
          // A lost lease never comes back by retrying: another writer owns the volume now.
          if (attempt >= limits.commitRetriesMax || (isS0Error(err) && err.code === 'volume_lease_lost'))
            throw err
          await new Promise((r) => setTimeout(r, limits.commitRetryBackoffBaseMs * 2 ** attempt))
        }
      }
      this.committed = last.seq
      if (durable) this.durable = Math.max(this.durable, last.seq)
      this.queue.splice(0, n)
    }
  }

  /**
   * Makes every change queued before the call durable: free when they are already; else the
   * queue drains with its last statement synchronous, or, when everything was committed relaxed
   * already, one synchronous commit flushes the WAL past them. Group commit: callers arriving
   * while one runs share it, or the next one.
   */
  async sync(): Promise<void> {
    const target = this.enqueued
    if (this.durable >= target) return
    this.syncWaiters++
    try {
      await this.drain()
    } finally {
      this.syncWaiters--
    }
    if (this.durable >= target) return
    if (this.syncing) {
      // The running sync covers what was committed when it started; later changes need the next.
      if (this.syncingCovers >= target) return this.syncing
      this.syncNext ??= this.syncing
        // The running sync's failure belongs to its own callers; the next one runs regardless.
        .catch(() => undefined)
        .then(() => {
          this.syncNext = null
          return this.sync()
        })
      return this.syncNext
    }
    const covers = this.committed
    const run = this.metadata.syncVolume(this.volumeId).then(() => {
      this.durable = Math.max(this.durable, covers)
    })
    this.syncing = run
    this.syncingCovers = covers
    // Bookkeeping only: the caller awaits `run` and sees its error (durable stays behind: retried).
    void run
      .catch(() => undefined)
      .finally(() => {
        if (this.syncing === run) this.syncing = null
      })
    return run
  }
}
