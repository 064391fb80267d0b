// The server's FUSE mounts: volumes mounted on this host for the API, the CLI and sandboxes
// (their volumes and root-filesystem checkpoints), by id. All mounts of a volume share its one
// Vfs (the writer lease holder), so they, the files API and the watchers see one state.
import { mkdir, readdir, rmdir } from 'node:fs/promises'
import { join } from 'node:path'
import { randomHexId } from '../core/ids.js'
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import type { Logger } from '../core/log.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import { detachIfStale, FuseMount, type MountOptions } from './mount.js'
import type { Durability, TransportName } from './transport.js'

export interface MountInfo {
  id: string
  teamId: TeamId
  volumeId: string
  dir: string
  readOnly: boolean
  durability: Durability
  mountedAt: Date
  /** The sandbox this mount serves (a volume at claim or its root-filesystem checkpoint). */
  sandboxId?: string
}

export interface MountRequest {
  /** Host directory; default: a new directory under the manager's root. */
  dir?: string
  readOnly?: boolean
  durability?: Durability
  /** See MountOptions.immutable. */
  immutable?: boolean
  sandboxId?: string
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
      /** Default: S0_FUSE_TRANSPORT, else lowlevel. */
      transport?: TransportName
      /** Extra FUSE options (tests, bench). */
      fuse?: Omit<MountOptions, 'readOnly' | 'durability'>
    },
  ) {}

  get engine(): VolumeEngine {
    return this.opts.engine
  }

  async mount(teamId: TeamId, volumeId: string, req: MountRequest = {}): Promise<MountInfo> {
    const volume = await this.opts.engine.catalog.get(teamId, volumeId) // 404 for another team
    const vfs = await this.opts.engine.vfs(teamId, volumeId)
    const id = `mnt-${randomHexId(8)}`
    const dir = req.dir ?? join(this.opts.rootDir, id)
    if (!req.dir) await mkdir(dir, { recursive: true, mode: 0o755 })
    const durability = req.durability ?? this.opts.durability ?? 'close'
    const readOnly = (req.readOnly ?? false) || (req.immutable ?? false)
    try {
      const mount = await FuseMount.mount(
        vfs,
        dir,
        {
          uid: volume.defaultPosixUid,
          gid: volume.defaultPosixGid,
          ...(this.opts.transport ? { transport: this.opts.transport } : {}),
          ...this.opts.fuse,
          readOnly,
          durability,
          ...(req.immutable ? { immutable: true } : {}),
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
        ...(req.sandboxId ? { sandboxId: req.sandboxId } : {}),
      }
      this.mounts.set(id, { info, mount, ownDir: !req.dir })
      return info
    } catch (err) {
      // The mount's failure is the error to report; a directory this leaves (a process got into
      // it meanwhile) is an mnt-* directory sweepStale removes at the next start.
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

  /** Every mount of the volume on this host, whoever made it. */
  mountsOf(volumeId: string): MountInfo[] {
    return [...this.mounts.values()].map((e) => e.info).filter((i) => i.volumeId === volumeId)
  }

  /**
   * After a crash: mount points a dead server left under the root directory are detached
   * (FUSE's auto_unmount usually did it already) and their empty directories removed.
   */
  async sweepStale(): Promise<string[]> {
    const mine = new Set([...this.mounts.values()].map((e) => e.info.dir))
    const swept: string[] = []
    const names = await readdir(this.opts.rootDir).catch((err: NodeJS.ErrnoException) => {
      // No root directory yet: nothing was ever mounted here. Anything else is worth a line,
      // not a failed start: the sweep only tidies up.
      if (err.code !== 'ENOENT')
        this.opts.log.warn('mount root not readable', { dir: this.opts.rootDir, err })
      return [] as string[]
    })
    for (const name of names) {
      if (!/^mnt-[a-f0-9]+$/.test(name)) continue
      const dir = join(this.opts.rootDir, name)
      if (mine.has(dir)) continue
      await detachIfStale(dir, this.opts.log).catch((err: unknown) =>
        this.opts.log.warn('stale mount not detached', { dir, err }),
      )
      // A directory that is not empty (someone's files) or still busy stays; it is just not
      // reported as swept.
      if (
        await rmdir(dir).then(
          () => true,
          () => false,
        )
      )
        swept.push(dir)
    }
    return swept
  }

  isMounted(volumeId: string): boolean {
    return this.mountsOf(volumeId).length > 0
  }

  async unmount(teamId: TeamId, id: string): Promise<void> {
    this.get(teamId, id)
    const e = this.mounts.get(id) as Entry
    await e.mount.unmount()
    this.mounts.delete(id)
    // Unmounted cleanly; a directory someone left files in is theirs to keep (and the sweep's).
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
