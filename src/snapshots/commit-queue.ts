// Write-behind for one volume's metadata: changes are queued in order and committed relaxed, up to
// limits.commitGroupChangesMax merged per statement, retried on failure; `drain` waits for the
// queue, `sync` makes everything before it durable with one synchronous commit (group commit).
import type { LayerId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { MetadataBatch, MetadataStore, VolumeUsage } from './metadata-store.js'

interface QueuedCommit {
  batch: MetadataBatch
  head: LayerId
  usage: VolumeUsage
}

export class CommitQueue {
  private readonly queue: QueuedCommit[] = []
  private committing: Promise<void> | null = null
  private relaxedSinceSync = false
  private syncing: Promise<void> | null = null
  private syncNext: Promise<void> | null = null

  constructor(
    private readonly metadata: MetadataStore,
    private readonly volumeId: string,
  ) {}

  /** At the bound: a writer far ahead of Postgres should `drain` before going on. */
  get full(): boolean {
    return this.queue.length >= limits.commitQueueChangesMax
  }

  /** Queues a change to the head layer `head`; `usage` is the volume's after it. */
  enqueue(batch: MetadataBatch, head: LayerId, usage: VolumeUsage): void {
    this.queue.push({ batch, head, usage })
    this.relaxedSinceSync = true
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

  /** Commits queued changes in order: all queued batches of one head layer per statement. */
  private async run(): Promise<void> {
    while (this.queue.length > 0) {
      const first = this.queue[0] as QueuedCommit
      let n = 1
      while (n < this.queue.length && n < limits.commitGroupChangesMax && this.queue[n]?.head === first.head)
        n++
      const merged = this.metadata.newBatch()
      for (let k = 0; k < n; k++) merged.absorb((this.queue[k] as QueuedCommit).batch)
      const usage = (this.queue[n - 1] as QueuedCommit).usage
      for (let attempt = 0; ; attempt++) {
        try {
          await this.metadata.commit(merged, first.head, usage)
          break
        } catch (err) {
          if (attempt >= limits.commitRetriesMax) throw err
          await new Promise((r) => setTimeout(r, limits.commitRetryBackoffBaseMs * 2 ** attempt))
        }
      }
      this.queue.splice(0, n)
    }
  }

  /**
   * Makes every committed change of this volume durable: one synchronous commit flushes the
   * WAL past all relaxed commits before it. Free when nothing relaxed happened since. Group
   * commit: callers arriving while one runs share the next one.
   */
  async sync(): Promise<void> {
    await this.drain()
    if (this.syncing) {
      // The running sync covers changes made before it started (the flag was clear then); a
      // change since set the flag again and needs the next one.
      if (!this.relaxedSinceSync) return this.syncing
      this.syncNext ??= this.syncing
        // The running sync's failure belongs to its own callers; the next one runs regardless.
        .catch(() => undefined)
        .then(() => {
          this.syncNext = null
          return this.sync()
        })
      return this.syncNext
    }
    if (!this.relaxedSinceSync) return
    this.relaxedSinceSync = false
    const run = this.metadata.syncVolume(this.volumeId).then(
      () => undefined,
      (err: unknown) => {
        this.relaxedSinceSync = true
        throw err
      },
    )
    this.syncing = run
    // Bookkeeping only: the caller awaits `run` and sees its error.
    void run
      .catch(() => undefined)
      .finally(() => {
        if (this.syncing === run) this.syncing = null
      })
    return run
  }
}
