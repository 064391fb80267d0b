// The server's FUSE mounts: volumes mounted on this host for the API, the CLI and (next) the
// sandbox runtime, by id. All mounts of a volume share its one Vfs (the writer lease holder), so
// they, the files API and the watchers see one state.
import { mkdir, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { randomHexId } from '../core/ids.js'
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import type { Logger } from '../core/log.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import { FuseMount, type MountOptions } from './mount.js'
import type { Durability } from './operations.js'

export interface MountInfo {
  id: string
  teamId: TeamId
  volumeId: string
  dir: string
  readOnly: boolean
  durability: Durability
  mountedAt: Date
}

export interface MountRequest {
  /** Host directory; default: a new directory under the manager's root. */
  dir?: string
  readOnly?: boolean
  durability?: Durability
}

interface Entry {
  info: MountInfo
  mount: FuseMount
  /** The directory was made by us (removed again at unmount). */
  ownDir: boolean
}

export class MountManager {
  private readonly mounts = new Map<string, Entry>()

  constructor(
    private readonly opts: {
      engine: VolumeEngine
      log: Logger
      /** Parent of the directories made for mounts without an explicit one. */
      rootDir: string
      durability?: Durability
      /** Extra FUSE options (tests, bench). */
      fuse?: Omit<MountOptions, 'readOnly' | 'durability'>
    },
  ) {}

  async mount(teamId: TeamId, volumeId: string, req: MountRequest = {}): Promise<MountInfo> {
    const volume = await this.opts.engine.catalog.get(teamId, volumeId) // 404 for another team
    const vfs = await this.opts.engine.vfs(teamId, volumeId)
    const id = `mnt-${randomHexId(8)}`
    const dir = req.dir ?? join(this.opts.rootDir, id)
    if (!req.dir) await mkdir(dir, { recursive: true, mode: 0o755 })
    const durability = req.durability ?? this.opts.durability ?? 'close'
    const readOnly = req.readOnly ?? false
    try {
      const mount = await FuseMount.mount(
        vfs,
        dir,
        {
          uid: volume.defaultPosixUid,
          gid: volume.defaultPosixGid,
          ...this.opts.fuse,
          readOnly,
          durability,
        },
        this.opts.log,
      )
      const info: MountInfo = {
        id,
        teamId,
        volumeId,
        dir: mount.dir,
        readOnly,
        durability,
        mountedAt: new Date(),
      }
      this.mounts.set(id, { info, mount, ownDir: !req.dir })
      return info
    } catch (err) {
      if (!req.dir) await rmdir(dir).catch(() => undefined)
      throw err
    }
  }

  get(teamId: TeamId, id: string): MountInfo {
    const e = this.mounts.get(id)
    if (!e || e.info.teamId !== teamId) throw new S0Error('mount_not_found', `no mount ${id}`)
    return e.info
  }

  /** The FuseMount behind an id (op counters for metrics and the bench). */
  fuseMount(id: string): FuseMount | undefined {
    return this.mounts.get(id)?.mount
  }

  list(teamId: TeamId, volumeId?: string): MountInfo[] {
    return [...this.mounts.values()]
      .map((e) => e.info)
      .filter((i) => i.teamId === teamId && (volumeId === undefined || i.volumeId === volumeId))
  }

  isMounted(volumeId: string): boolean {
    for (const e of this.mounts.values()) if (e.info.volumeId === volumeId) return true
    return false
  }

  async unmount(teamId: TeamId, id: string): Promise<void> {
    this.get(teamId, id)
    const e = this.mounts.get(id) as Entry
    await e.mount.unmount()
    this.mounts.delete(id)
    if (e.ownDir) await rmdir(e.info.dir).catch(() => undefined)
  }

  /** Unmounts by id alone (the sandbox service, which made the mount for a team). */
  async unmountById(id: string): Promise<void> {
    const e = this.mounts.get(id)
    if (e) await this.unmount(e.info.teamId, id)
  }

  /** Unmounts every mount of the volume (a forced delete). */
  async unmountVolume(teamId: TeamId, volumeId: string): Promise<void> {
    for (const i of this.list(teamId, volumeId)) await this.unmount(teamId, i.id)
  }

  /** Unmounts everything (server shutdown); failures are logged, the rest still unmount. */
  async close(): Promise<void> {
    for (const e of [...this.mounts.values()]) {
      await this.unmount(e.info.teamId, e.info.id).catch((err: unknown) =>
        this.opts.log.error('unmount at shutdown failed', { dir: e.info.dir, err }),
      )
    }
  }
}
