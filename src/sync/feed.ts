// A volume's sync change feed: the paths the Vfs reported changed, numbered, in a bounded ring.
// A cursor is `<epoch>.<seq>`; the epoch is new for every feed (a server restart, a restore or
// restart of the Vfs, an overflow), and a cursor of another epoch or older than the ring gets
// "rescan" instead of a partial answer: events are never silently lost.
import { randomBytes } from 'node:crypto'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { Vfs } from '../snapshots/vfs.js'
import { watchVolume } from '../snapshots/volume-watch.js'
import { entryAt, isTempName, volumePath, walk, type SyncEntry } from './entries.js'
import { resolve, splitPath } from '../snapshots/paths.js'

export interface FeedChange {
  path: string
  /** null: nothing at `path` any more (for a directory: nor anything under it). */
  entry: SyncEntry | null
}

export interface FeedAnswer {
  cursor: string
  rescan: boolean
  changes: FeedChange[]
}

interface Noted {
  seq: number
  path: string
  /** A directory appearing here (create, rename) brings its whole subtree. */
  subtree: boolean
}

export class VolumeFeed {
  readonly vfs: Vfs
  private epoch = randomBytes(6).toString('hex')
  private seq = 0
  private ring: Noted[] = []
  /** The lowest seq a cursor may name and still be answered from the ring. */
  private floor = 0
  private waiters = new Set<() => void>()
  private stop: (() => void) | undefined
  lastPollAt = Date.now()

  private constructor(vfs: Vfs) {
    this.vfs = vfs
  }

  static async open(vfs: Vfs): Promise<VolumeFeed> {
    const f = new VolumeFeed(vfs)
    f.stop = await watchVolume(vfs, {
      path: '/',
      recursive: true,
      pendingMax: limits.watchPendingEventsMax,
      emit: (event, path) => {
        // A restore or another writer moved the head: anything may have changed.
        if (event === 'invalidate') return f.reset()
        f.note(path, event === 'create' || event === 'rename')
      },
      onOverflow: () => f.reset(),
    })
    return f
  }

  private closed = false

  close(): void {
    this.closed = true
    this.stop?.()
    this.wake()
  }

  cursor(): string {
    return `${this.epoch}.${this.seq}`
  }

  private note(path: string, subtree: boolean): void {
    this.ring.push({ seq: ++this.seq, path, subtree })
    if (this.ring.length > limits.syncFeedPathsMax) {
      const drop = this.ring.length - limits.syncFeedPathsMax
      this.floor = (this.ring[drop - 1] as Noted).seq
      this.ring = this.ring.slice(drop)
    }
    this.wake()
  }

  /** Every cursor so far becomes a rescan. */
  private reset(): void {
    this.epoch = randomBytes(6).toString('hex')
    this.seq = 0
    this.floor = 0
    this.ring = []
    this.wake()
  }

  private wake(): void {
    for (const w of this.waiters) w()
    this.waiters.clear()
  }

  /** Whether `cursor` is answerable; throws sync_cursor_invalid when it is not a cursor at all. */
  private parse(cursor: string): { epoch: string; seq: number } {
    const m = /^([0-9a-f]{12})\.(\d{1,15})$/.exec(cursor)
    if (!m) throw new S0Error('sync_cursor_invalid', `not a sync cursor: ${JSON.stringify(cursor)}`)
    return { epoch: m[1] as string, seq: Number(m[2]) }
  }

  /**
   * What changed under `root` after `cursor`, waiting up to `waitMs` for a first change. Each
   * changed path comes with its entry now (not its history): replaying an answer is harmless.
   */
  async changes(root: string, cursor: string, waitMs: number, signal?: AbortSignal): Promise<FeedAnswer> {
    this.lastPollAt = Date.now()
    const c = this.parse(cursor)
    const stale = (): boolean => c.epoch !== this.epoch || c.seq < this.floor || c.seq > this.seq
    if (stale()) return { cursor: this.cursor(), rescan: true, changes: [] }
    if (c.seq === this.seq && waitMs > 0 && !this.closed) {
      await new Promise<void>((resolveWait) => {
        const done = (): void => {
          clearTimeout(t)
          this.waiters.delete(done)
          signal?.removeEventListener('abort', done)
          resolveWait()
        }
        const t = setTimeout(done, Math.min(waitMs, limits.syncChangesWaitMsMax))
        this.waiters.add(done)
        signal?.addEventListener('abort', done)
      })
      if (stale()) return { cursor: this.cursor(), rescan: true, changes: [] }
    }
    // Distinct paths after the cursor, in order of their last change, bounded per answer.
    const start = this.ring.findIndex((n) => n.seq > c.seq)
    const picked = new Map<string, boolean>()
    let upTo = c.seq
    for (let i = start < 0 ? this.ring.length : start; i < this.ring.length; i++) {
      const n = this.ring[i] as Noted
      if (!picked.has(n.path) && picked.size >= limits.syncChangesPerReplyMax) break
      picked.set(n.path, (picked.get(n.path) ?? false) || n.subtree)
      upTo = n.seq
    }
    const answer: FeedAnswer = { cursor: `${this.epoch}.${upTo}`, rescan: false, changes: [] }
    const prefix = root === '/' ? '/' : `${root}/`
    for (const [path, subtree] of picked) {
      if (path === root || (root !== '/' && prefix.startsWith(path + '/'))) {
        // The sync root itself changed (moved, removed, replaced): the client must look again.
        if (path !== root || subtree) return { cursor: this.cursor(), rescan: true, changes: [] }
        continue
      }
      if (!path.startsWith(prefix)) continue
      const rel = path.slice(prefix.length)
      if (isTempName(rel.slice(rel.lastIndexOf('/') + 1))) continue
      const entry = await entryAt(this.vfs, root, rel)
      answer.changes.push({ path: rel, entry })
      if (entry?.kind === 'dir' && subtree) {
        const dir = await resolve(this.vfs, splitPath(volumePath(root, rel))).catch(() => undefined)
        if (dir)
          for await (const e of walk(this.vfs, dir.ino, rel)) answer.changes.push({ path: e.path, entry: e })
      }
    }
    return answer
  }
}
