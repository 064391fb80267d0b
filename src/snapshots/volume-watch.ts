// Change events of a volume for one watched directory: which events a subscription sees
// (recursive or not), and the path each names, with a bound on events in flight per watcher.
import { S0Error } from '../core/errors.js'
import { joinPath, resolve, splitPath } from './paths.js'
import { isDir } from './types.js'
import type { ChangeEvent, Vfs } from './vfs.js'

/** Whether `path` is reported to a subscription on `root`. */
export function watches(root: string, recursive: boolean, path: string): boolean {
  if (root === '/') return recursive || path.lastIndexOf('/') === 0
  if (path === root) return true
  if (!path.startsWith(root + '/')) return false
  return recursive || !path.slice(root.length + 1).includes('/')
}

async function eventPath(vfs: Vfs, e: ChangeEvent): Promise<string | undefined> {
  try {
    if (e.name) {
      const dir = await vfs.dirPath(e.parentIno)
      return (dir === '/' ? '/' : dir + '/') + e.name.toString('utf8')
    }
    return e.ino ? await vfs.pathOf(e.ino) : await vfs.dirPath(e.parentIno)
  } catch {
    return undefined // the node is already gone again: nothing to name
  }
}

export interface VolumeWatchOptions {
  path: string
  recursive: boolean
  /** More than this many events resolving at once: `onOverflow` is called and events are dropped. */
  pendingMax: number
  emit(event: ChangeEvent['event'], path: string): void
  onOverflow(): void
}

/** Watches a directory of the volume; returns the function that stops it. */
export async function watchVolume(vfs: Vfs, o: VolumeWatchOptions): Promise<() => void> {
  const parts = splitPath(o.path)
  const dir = await resolve(vfs, parts)
  if (!isDir(dir.mode)) throw new S0Error('path_not_directory', `${o.path} is not a directory`)
  const root = joinPath(parts)
  let pending = 0
  // Paths resolve at different speeds (cache or database): each event's path is looked up at
  // once, but events are emitted in the order they happened, never a later one first.
  let last: Promise<unknown> = Promise.resolve()
  return vfs.watch((e: ChangeEvent) => {
    if (pending > o.pendingMax) return o.onOverflow()
    pending++
    const path = eventPath(vfs, e)
    last = Promise.all([path, last])
      .then(([p]) => {
        if (p !== undefined && (e.event === 'invalidate' || watches(root, o.recursive, p)))
          o.emit(e.event, e.event === 'invalidate' ? root : p)
      })
      .finally(() => pending--)
  })
}
