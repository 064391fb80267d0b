// File watch over WebSocket (`/api/v1/sandboxvolumes/{id}/files/watch`), in the Sandbox0 frame
// format: the client subscribes to a path, the server confirms, then streams change events.
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { S0Error } from '../core/errors.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import { joinPath, resolve, splitPath } from '../snapshots/paths.js'
import { isDir } from '../snapshots/types.js'
import type { ChangeEvent, Vfs } from '../snapshots/vfs.js'
import { requireAuth } from './server.js'
import { userVolume } from './volumes.js'
import { sendFrame as send } from './watch-protocol.js'
import { onWatchMessages } from './watch-protocol.js'

const SUBSCRIBE_TIMEOUT_MS = 10_000
/** Events waiting to be sent to one slow client before it is disconnected. */
const PENDING_EVENTS_MAX = 10_000

interface Subscription {
  id: string
  path: string
  recursive: boolean
  stop: () => void
}

/** Whether `path` is reported to a subscription on `root`. */
export function watches(root: string, recursive: boolean, path: string): boolean {
  if (root === '/') return recursive || path.lastIndexOf('/') === 0
  if (path === root) return true
  if (!path.startsWith(root + '/')) return false
  return recursive || !path.slice(root.length + 1).includes('/')
}

export function registerVolumeWatchRoute(app: FastifyInstance, engine: VolumeEngine): void {
  app.get<{ Params: { id: string } }>(
    '/api/v1/sandboxvolumes/:id/files/watch',
    { websocket: true },
    (socket, request) => {
      const ws = socket as unknown as WebSocket
      const subs = new Map<string, Subscription>()
      let vfs: Vfs | undefined
      let counter = 0
      let pending = 0
      const timer = setTimeout(() => {
        if (subs.size === 0) {
          send(ws, { type: 'error', error: 'no subscribe message within 10 s' })
          ws.close(1008)
        }
      }, SUBSCRIBE_TIMEOUT_MS)

      const subscribe = async (path: string, recursive: boolean): Promise<void> => {
        const { teamId } = requireAuth(request)
        if (!vfs) {
          await userVolume(engine, teamId, request.params.id)
          vfs = await engine.vfs(teamId, request.params.id)
        }
        const parts = splitPath(path)
        const dir = await resolve(vfs, parts)
        if (!isDir(dir.mode)) throw new S0Error('path_not_directory', `${path} is not a directory`)
        const root = joinPath(parts)
        const id = `w${++counter}`
        const target = vfs
        const stop = target.watch((e: ChangeEvent) => {
          if (pending > PENDING_EVENTS_MAX) return ws.close(1013, 'too many pending events')
          pending++
          void eventPath(target, e)
            .then((p) => {
              if (p !== undefined && (e.event === 'invalidate' || watches(root, recursive, p))) {
                send(ws, {
                  type: 'event',
                  watch_id: id,
                  event: e.event,
                  path: e.event === 'invalidate' ? root : p,
                })
              }
            })
            .finally(() => pending--)
        })
        subs.set(id, { id, path: root, recursive, stop })
        send(ws, { type: 'subscribed', watch_id: id, path })
      }

      onWatchMessages(ws, {
        subscribe,
        unsubscribe: (watchId) => {
          const sub = subs.get(watchId)
          sub?.stop()
          subs.delete(watchId)
        },
      })
      ws.on('close', () => {
        clearTimeout(timer)
        for (const s of subs.values()) s.stop()
        subs.clear()
      })
    },
  )
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
