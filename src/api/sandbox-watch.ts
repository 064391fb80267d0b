// File watch over WebSocket for a sandbox's root file system (`/api/v1/sandboxes/{id}/files/watch`),
// in the same frames as the volume watch. inotify (fs.watch) on the host side of the overlay, one
// watcher per directory (recursive = the tree below, bounded), symlinks never followed.
import { watch, type FSWatcher } from 'node:fs'
import { lstat, readdir } from 'node:fs/promises'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { S0Error } from '../core/errors.js'
import type { SandboxRootSource } from './sandbox-files.js'
import { joinSandboxPath, SandboxRoot, splitSandboxPath } from './sandbox-paths.js'
import { requireAuth } from './server.js'
import { onWatchMessages } from './watch-protocol.js'

export const sandboxWatchLimits = {
  subscribeTimeoutMs: 10_000,
  /** Directories one connection may watch (a recursive watch of a big tree is refused beyond it). */
  watchedDirsMax: 1_024,
  subscriptionsMax: 16,
  /** A client this far behind is disconnected. */
  bufferedBytesMax: 4 * 1024 * 1024,
} as const

function send(ws: WebSocket, frame: Record<string, unknown>): void {
  if (ws.readyState !== ws.OPEN) return
  if (ws.bufferedAmount > sandboxWatchLimits.bufferedBytesMax) return ws.close(1013, 'client too slow')
  ws.send(JSON.stringify(frame))
}

class Subscription {
  private readonly watchers = new Map<string, FSWatcher>()

  constructor(
    readonly id: string,
    private readonly root: SandboxRoot,
    private readonly recursive: boolean,
    private readonly emit: (event: string, sandboxPath: string) => void,
    private readonly budget: { dirs: number },
  ) {}

  /** Watches `host` (a real directory inside the root) and, if recursive, the directories below. */
  async add(host: string): Promise<void> {
    if (this.watchers.has(host)) return
    if (this.budget.dirs >= sandboxWatchLimits.watchedDirsMax)
      throw new S0Error(
        'quota_exceeded',
        `a watch may cover at most ${sandboxWatchLimits.watchedDirsMax} directories`,
      )
    this.budget.dirs++
    const w = watch(host, { persistent: false }, (type, name) => void this.onEvent(host, type, name))
    w.on('error', () => this.drop(host))
    this.watchers.set(host, w)
    if (!this.recursive) return
    for (const e of await readdir(host, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await this.add(path.join(host, e.name))
    }
  }

  private drop(host: string): void {
    this.watchers.get(host)?.close()
    if (this.watchers.delete(host)) this.budget.dirs--
  }

  private async onEvent(dir: string, type: string, name: string | Buffer | null): Promise<void> {
    if (name === null) return
    const host = path.join(dir, name.toString())
    const sandboxPath = joinSandboxPath(path.relative(this.root.root, host).split(path.sep))
    if (type === 'change') return this.emit('write', sandboxPath)
    const st = await lstat(host).catch(() => undefined)
    if (!st) {
      this.drop(host)
      return this.emit('remove', sandboxPath)
    }
    this.emit('create', sandboxPath)
    if (this.recursive && st.isDirectory()) await this.add(host).catch(() => undefined)
  }

  close(): void {
    for (const host of [...this.watchers.keys()]) this.drop(host)
  }
}

export function registerSandboxWatchRoute(app: FastifyInstance, sandboxes: SandboxRootSource): void {
  app.get<{ Params: { id: string } }>(
    '/api/v1/sandboxes/:id/files/watch',
    { websocket: true },
    (socket, request) => {
      const ws = socket as unknown as WebSocket
      const subs = new Map<string, Subscription>()
      const budget = { dirs: 0 }
      let counter = 0
      const timer = setTimeout(() => {
        if (subs.size === 0) {
          send(ws, { type: 'error', error: 'no subscribe message within 10 s' })
          ws.close(1008)
        }
      }, sandboxWatchLimits.subscribeTimeoutMs)

      const subscribe = async (p: string, recursive: boolean): Promise<void> => {
        const { teamId } = requireAuth(request)
        if (subs.size >= sandboxWatchLimits.subscriptionsMax)
          throw new S0Error('quota_exceeded', 'too many subscriptions on one connection')
        const root = await SandboxRoot.open(await sandboxes.rootfs(teamId, request.params.id))
        const r = await root.resolve(splitSandboxPath(p), { followLast: true })
        if (!(await lstat(r.host)).isDirectory())
          throw new S0Error('path_not_directory', `${p} is not a directory`)
        const id = `w${++counter}`
        const sub = new Subscription(
          id,
          root,
          recursive,
          (event, path) => send(ws, { type: 'event', watch_id: id, event, path }),
          budget,
        )
        subs.set(id, sub)
        try {
          await sub.add(r.host)
        } catch (err) {
          sub.close()
          subs.delete(id)
          throw err
        }
        send(ws, { type: 'subscribed', watch_id: id, path: p })
      }

      onWatchMessages(ws, {
        subscribe,
        unsubscribe: (watchId) => {
          subs.get(watchId)?.close()
          subs.delete(watchId)
        },
      })
      ws.on('close', () => {
        clearTimeout(timer)
        for (const s of subs.values()) s.close()
        subs.clear()
      })
    },
  )
}
