// File watch of a sandbox's tree, as its processes see it: inotify (fs.watch) on the host
// directories of its overlay and scratch, one watcher per directory (recursive = the tree below,
// bounded per connection), symlinks never followed; and, under a volume mount point, the
// volume's own change feed. Never inotify on a volume's FUSE mount: adding a watch looks the path
// up through FUSE from the event loop that serves that very mount, which deadlocks.
import { watch, type FSWatcher } from 'node:fs'
import { lstat, readdir } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { Vfs } from '../../snapshots/vfs.js'
import { watchVolume } from '../../snapshots/volume-watch.js'
import { joinSandboxPath, splitSandboxPath, type SandboxTree, type TreeMount } from './paths.js'

export type WatchEvent = 'create' | 'write' | 'remove' | 'rename' | 'chmod' | 'invalidate'

/** Directories watched by one connection, over all its subscriptions. */
export interface WatchBudget {
  dirs: number
}

/** A volume mounted in the sandbox, with the Vfs that serves its mount. */
export interface WatchedVolume {
  containerPath: string
  vfs: Vfs
}

export interface TreeWatchOptions {
  tree: SandboxTree
  path: string
  recursive: boolean
  budget: WatchBudget
  /** The sandbox's volume mounts: watched through their change feed, not inotify. */
  volumes: readonly WatchedVolume[]
  emit(event: WatchEvent, sandboxPath: string): void
  /** A volume's events pile up beyond watchPendingEventsMax (the client is too slow). */
  onOverflow(): void
}

const under = (parts: readonly string[], prefix: readonly string[]): boolean =>
  prefix.length <= parts.length && prefix.every((c, i) => parts[i] === c)

export class TreeWatch {
  /** inotify watchers, keyed by container path. */
  private readonly watchers = new Map<string, FSWatcher>()
  /** Volume change feeds, keyed by mount point. */
  private readonly feeds = new Map<string, () => void>()
  private readonly volumes: readonly (WatchedVolume & { parts: string[] })[]

  private constructor(private readonly o: TreeWatchOptions) {
    this.volumes = o.volumes.map((v) => ({ ...v, parts: splitSandboxPath(v.containerPath) }))
  }

  /** Starts watching `o.path` (a directory); `path_not_directory` otherwise. */
  static async start(o: TreeWatchOptions): Promise<TreeWatch> {
    const r = await o.tree.resolve(splitSandboxPath(o.path), { followLast: true })
    const w = new TreeWatch(o)
    try {
      const volume = w.volumeOf(r.parts)
      if (volume) await w.addVolume(volume, r.parts)
      else {
        if (!(await lstat(r.host)).isDirectory())
          throw new S0Error('path_not_directory', `${o.path} is not a directory`)
        await w.add(r.parts)
      }
    } catch (err) {
      w.close()
      throw err
    }
    return w
  }

  private volumeOf(parts: readonly string[]): (WatchedVolume & { parts: string[] }) | undefined {
    return this.volumes.find((v) => under(parts, v.parts))
  }

  private charge(): void {
    if (this.o.budget.dirs >= limits.watchDirsMax)
      throw new S0Error('quota_exceeded', `a watch may cover at most ${limits.watchDirsMax} directories`)
    this.o.budget.dirs++
  }

  /** The volume's change feed for the directory at container `parts` (at or under its mount). */
  private async addVolume(v: WatchedVolume & { parts: string[] }, parts: readonly string[]): Promise<void> {
    const key = v.containerPath
    if (this.feeds.has(key)) return
    this.charge()
    const prefix = v.parts.length === 0 ? '' : joinSandboxPath(v.parts)
    try {
      const stop = await watchVolume(v.vfs, {
        path: joinSandboxPath(parts.slice(v.parts.length)),
        recursive: this.o.recursive,
        pendingMax: limits.watchPendingEventsMax,
        emit: (event, p) => this.o.emit(event, p === '/' ? prefix || '/' : prefix + p),
        onOverflow: () => this.o.onOverflow(),
      })
      this.feeds.set(key, stop)
    } catch (err) {
      this.o.budget.dirs--
      throw err
    }
  }

  /** Watches the directory at container `parts` and, if recursive, the directories below. */
  private async add(parts: readonly string[]): Promise<void> {
    const key = joinSandboxPath(parts)
    if (this.watchers.has(key)) return
    const { host, mount } = this.o.tree.hostOf(parts)
    this.charge()
    const w = watch(host, { persistent: false }, (type, name) => void this.onEvent(mount, host, type, name))
    // The directory went away (or cannot be watched any more): its own removal is reported by
    // its parent's watcher; this one just stops.
    w.on('error', () => this.drop(key))
    this.watchers.set(key, w)
    if (!this.o.recursive) return
    // A directory that vanished meanwhile has no subdirectories to watch.
    for (const e of await readdir(host, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await this.child([...parts, e.name])
    }
  }

  /** A subdirectory found while recursing: a volume mount point, a plain directory, or unreachable. */
  private async child(parts: readonly string[]): Promise<void> {
    const volume = this.volumeOf(parts)
    if (volume) await this.addVolume(volume, volume.parts)
    else if (this.o.tree.reachable(parts)) await this.add(parts)
  }

  private drop(key: string): void {
    this.watchers.get(key)?.close()
    if (this.watchers.delete(key)) this.o.budget.dirs--
  }

  private async onEvent(
    mount: TreeMount,
    dir: string,
    type: string,
    name: string | Buffer | null,
  ): Promise<void> {
    if (name === null) return
    const host = path.join(dir, name.toString())
    const sandboxPath = this.o.tree.containerPathOf(mount, host)
    if (type === 'change') return this.o.emit('write', sandboxPath)
    // Gone by the time we look (or never readable): for the watcher it was removed.
    const st = await lstat(host).catch(() => undefined)
    if (!st) {
      this.drop(sandboxPath)
      return this.o.emit('remove', sandboxPath)
    }
    this.o.emit('create', sandboxPath)
    // Past the budget, new directories go unwatched: the events already sent stay true.
    if (this.o.recursive && st.isDirectory())
      await this.child(splitSandboxPath(sandboxPath)).catch(() => undefined)
  }

  close(): void {
    for (const key of [...this.watchers.keys()]) this.drop(key)
    for (const stop of this.feeds.values()) stop()
    this.o.budget.dirs -= this.feeds.size
    this.feeds.clear()
  }
}
