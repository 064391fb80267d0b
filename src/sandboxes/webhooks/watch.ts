// File changes under a webhook's watch_dir become `file` events (action `file.change`,
// attributes {path, kind}) in the event log, and from there webhooks. One recursive tree watch
// (files/watch.ts, the machinery of the watch API) per running sandbox with a watch_dir, opened
// and closed as sandboxes start, pause, resume and go (reconcile() compares with what runs).
// Changes are coalesced per path for a moment (an editor's save is several inotify events) and
// bounded per sandbox: beyond the bound they are counted and dropped.
import type { EventLog } from '../../core/events.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { WatchEvent } from '../files/watch.js'

export interface WatchTarget {
  sandboxId: string
  teamId: string
  dir: string
  /** Changes when the sandbox's runtime restarts (its tree is a new one). */
  generation: string
}

export interface WebhookWatchesOptions {
  /** The running sandboxes of this server with a watch_dir. */
  targets: () => Promise<WatchTarget[]>
  open: (t: WatchTarget, emit: (kind: WatchEvent, path: string) => void) => Promise<{ close(): void }>
  events: EventLog
  log: Logger
}

const COALESCE_MS = 250

interface Open {
  target: WatchTarget
  generation: string
  watch: { close(): void }
  pending: Map<string, WatchEvent>
  timer: NodeJS.Timeout | undefined
}

export class WebhookWatches {
  private readonly open = new Map<string, Open>()
  /** Changes dropped because a sandbox's queue was full (metrics). */
  dropped = 0

  constructor(private readonly o: WebhookWatchesOptions) {}

  /** Opens watches for new targets, closes those of sandboxes no longer running. */
  async reconcile(): Promise<void> {
    const targets = await this.o.targets()
    const want = new Map(targets.map((t) => [t.sandboxId, t]))
    for (const [id, w] of this.open) {
      const t = want.get(id)
      if (!t || t.generation !== w.generation) this.closeOne(id)
    }
    for (const t of targets) {
      if (this.open.has(t.sandboxId)) continue
      const entry: Open = {
        target: t,
        generation: t.generation,
        watch: { close: () => undefined },
        pending: new Map(),
        timer: undefined,
      }
      try {
        entry.watch = await this.o.open(t, (kind, p) => this.change(t, entry, kind, p))
        this.open.set(t.sandboxId, entry)
      } catch (err) {
        // watch_dir absent yet (the sandbox makes it later) or the sandbox stopped: next round.
        this.o.log.debug('webhook watch not opened', { sandbox: t.sandboxId, dir: t.dir, err })
      }
    }
  }

  private change(t: WatchTarget, entry: Open, kind: WatchEvent, p: string): void {
    if (kind === 'invalidate') return
    if (!entry.pending.has(p) && entry.pending.size >= limits.webhookWatchQueueMax) {
      this.dropped++
      return
    }
    entry.pending.set(p, kind)
    entry.timer ??= setTimeout(() => this.flush(t, entry), COALESCE_MS)
  }

  private flush(t: WatchTarget, entry: Open): void {
    entry.timer = undefined
    const now = new Date()
    for (const [p, kind] of entry.pending)
      this.o.events.append({
        teamId: t.teamId,
        sandboxId: t.sandboxId,
        occurredAt: now,
        source: 'procd',
        eventType: 'file',
        phase: 'effect',
        outcome: 'succeeded',
        actor: { kind: 'sandbox_workload' },
        action: 'file.change',
        resource: { type: 'file', id: p },
        attributes: { path: p, kind },
      })
    entry.pending.clear()
  }

  private closeOne(id: string): void {
    const w = this.open.get(id)
    if (!w) return
    this.open.delete(id)
    clearTimeout(w.timer)
    // What was seen before the close still goes out.
    if (w.pending.size > 0) this.flush(w.target, w)
    w.watch.close()
  }

  close(): void {
    for (const id of [...this.open.keys()]) this.closeOne(id)
  }
}
