// File watch of a sandbox's tree: inotify (fs.watch) on the host directories of its mount view,
// one watcher per directory (recursive = the tree below, following the sandbox's mounts, bounded
// per connection), symlinks never followed. Events carry the path as the sandbox sees it.
import { watch, type FSWatcher } from 'node:fs'
import { lstat, readdir } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { joinSandboxPath, splitSandboxPath, type SandboxTree, type TreeMount } from './paths.js'

export type WatchEvent = 'create' | 'write' | 'remove'

/** Directories watched by one connection, over all its subscriptions. */
export interface WatchBudget {
  dirs: number
}

export class TreeWatch {
  /** Keyed by container path. */
  private readonly watchers = new Map<string, FSWatcher>()

  private constructor(
    private readonly tree: SandboxTree,
    private readonly recursive: boolean,
    private readonly emit: (event: WatchEvent, sandboxPath: string) => void,
    private readonly budget: WatchBudget,
  ) {}

  /** Starts watching `sandboxPath` (a directory); `path_not_directory` otherwise. */
  static async start(opts: {
    tree: SandboxTree
    path: string
    recursive: boolean
    budget: WatchBudget
    emit: (event: WatchEvent, sandboxPath: string) => void
  }): Promise<TreeWatch> {
    const r = await opts.tree.resolve(splitSandboxPath(opts.path), { followLast: true })
    if (!(await lstat(r.host)).isDirectory())
      throw new S0Error('path_not_directory', `${opts.path} is not a directory`)
    const w = new TreeWatch(opts.tree, opts.recursive, opts.emit, opts.budget)
    try {
      await w.add(r.parts)
    } catch (err) {
      w.close()
      throw err
    }
    return w
  }

  /** Watches the directory at container `parts` and, if recursive, the directories below. */
  private async add(parts: readonly string[]): Promise<void> {
    const key = joinSandboxPath(parts)
    if (this.watchers.has(key)) return
    if (this.budget.dirs >= limits.watchDirsMax)
      throw new S0Error('quota_exceeded', `a watch may cover at most ${limits.watchDirsMax} directories`)
    const { host, mount } = this.tree.hostOf(parts)
    this.budget.dirs++
    const w = watch(host, { persistent: false }, (type, name) => void this.onEvent(mount, host, type, name))
    // The directory went away (or cannot be watched any more): its own removal is reported by
    // its parent's watcher; this one just stops.
    w.on('error', () => this.drop(key))
    this.watchers.set(key, w)
    if (!this.recursive) return
    // A directory that vanished meanwhile has no subdirectories to watch.
    for (const e of await readdir(host, { withFileTypes: true }).catch(() => [])) {
      const child = [...parts, e.name]
      if (e.isDirectory() && this.tree.reachable(child)) await this.add(child)
    }
  }

  private drop(key: string): void {
    this.watchers.get(key)?.close()
    if (this.watchers.delete(key)) this.budget.dirs--
  }

  private async onEvent(
    mount: TreeMount,
    dir: string,
    type: string,
    name: string | Buffer | null,
  ): Promise<void> {
    if (name === null) return
    const host = path.join(dir, name.toString())
    const sandboxPath = this.tree.containerPathOf(mount, host)
    if (type === 'change') return this.emit('write', sandboxPath)
    const st = await lstat(host).catch(() => undefined)
    if (!st) {
      this.drop(sandboxPath)
      return this.emit('remove', sandboxPath)
    }
    this.emit('create', sandboxPath)
    // Past the budget, new directories go unwatched: the events already sent stay true.
    const parts = splitSandboxPath(sandboxPath)
    if (this.recursive && st.isDirectory() && this.tree.reachable(parts))
      await this.add(parts).catch(() => undefined)
  }

  close(): void {
    for (const key of [...this.watchers.keys()]) this.drop(key)
  }
}
