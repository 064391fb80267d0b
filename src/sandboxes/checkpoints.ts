// Root-filesystem checkpoints and rootfs snapshots of sandboxes in the volume engine. A sandbox's state beyond its template is one
// hidden volume (kind `rootfs`), an overlay layer over the template (see runtime/rootfs-capture):
// - a checkpoint is such a volume, written by one capture (or a few, incrementally) and never
//   again; resume mounts it read-only (FUSE, content fetched lazily) under a fresh upper;
// - a rootfs snapshot is a fork of one (O(1)); fork, restore and claims from a snapshot fork
//   again. Volumes are independent: deleting one never breaks another made from it, the layer
//   references keep shared content alive.
import { randomBytes } from 'node:crypto'
import type { Db } from '../core/db.js'
import { S0Error, isS0Error } from '../core/errors.js'
import type { RootfsSnapshotId, SandboxId, TeamId, VolumeId } from '../core/ids.js'
import type { Logger } from '../core/log.js'
import type { MountInfo, MountManager } from '../fuse/mounts.js'
import { captureUpper, type CaptureManifest, type CaptureStats } from '../runtime/rootfs-capture.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import { releaseUnusedImageVolumes } from './image-volumes.js'
import type { RootfsSnapshotRow } from './rows.js'

export const ROOTFS_SNAPSHOT_ID = /^rootfs-snapshot-[a-z0-9]{10}$/
const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'

interface SnapshotDbRow {
  id: string
  team_id: TeamId
  sandbox_id: string
  volume_id: string
  name: string
  description: string
  created_at: Date
  expires_at: Date | null
}

function toSnapshot(r: SnapshotDbRow): RootfsSnapshotRow {
  return {
    id: r.id as RootfsSnapshotId,
    teamId: r.team_id,
    sandboxId: r.sandbox_id as SandboxId,
    volumeId: r.volume_id as VolumeId,
    name: r.name,
    description: r.description,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  }
}

/** `rootfs-snapshot-` + 10 random characters, as upstream names them. */
function snapshotId(): RootfsSnapshotId {
  const bytes = randomBytes(10)
  return `rootfs-snapshot-${[...bytes].map((b) => ID_ALPHABET[b % ID_ALPHABET.length]).join('')}` as RootfsSnapshotId
}

export class Checkpoints {
  readonly engine: VolumeEngine

  constructor(private readonly opts: { db: Db; mounts: MountManager; log: Logger }) {
    this.engine = opts.mounts.engine
  }

  /** A capture target: a fork of the checkpoint (O(1)), or an empty rootfs volume. */
  async newTarget(teamId: TeamId, checkpoint: VolumeId | null): Promise<VolumeId> {
    const v = checkpoint
      ? await this.engine.fork(teamId, checkpoint, { kind: 'rootfs' })
      : await this.engine.create(teamId, { kind: 'rootfs' })
    return v.id
  }

  /** The checkpoint, read-only and cached by the kernel, for the overlay's top lower layer. */
  mountLower(teamId: TeamId, volumeId: VolumeId, sandboxId: SandboxId): Promise<MountInfo> {
    return this.opts.mounts.mount(teamId, volumeId, { immutable: true, sandboxId })
  }

  async unmountLower(teamId: TeamId, mount: { mountId: string; volumeId: VolumeId }): Promise<void> {
    await this.opts.mounts.unmountById(mount.mountId)
    await this.engine.closeVfs(teamId, mount.volumeId)
  }

  /** Applies an upper directory onto the target volume and makes it durable. */
  async capture(opts: {
    teamId: TeamId
    target: VolumeId
    upperDir: string
    templateDir: string
    exclude: readonly string[]
    manifest?: CaptureManifest
  }): Promise<{ manifest: CaptureManifest; stats: CaptureStats }> {
    return captureUpper({
      upperDir: opts.upperDir,
      templateDir: opts.templateDir,
      vfs: await this.engine.vfs(opts.teamId, opts.target),
      exclude: opts.exclude,
      ...(opts.manifest ? { manifest: opts.manifest } : {}),
    })
  }

  /** Forgets the volume's Vfs here (after its last capture). */
  release(teamId: TeamId, volumeId: VolumeId): Promise<void> {
    return this.engine.closeVfs(teamId, volumeId)
  }

  /** Deletes a rootfs volume; one already gone is fine. */
  async drop(teamId: TeamId, volumeId: VolumeId | null | undefined): Promise<void> {
    if (!volumeId) return
    try {
      await this.engine.closeVfs(teamId, volumeId)
      await this.engine.delete(teamId, volumeId)
    } catch (err) {
      if (!(isS0Error(err) && err.code === 'not_found')) throw err
    }
  }

  // ---- rootfs snapshots ----------------------------------------------------------------------

  async createSnapshot(
    teamId: TeamId,
    sandboxId: SandboxId,
    volumeId: VolumeId,
    meta: { name?: string; description?: string; expiresAt?: Date },
  ): Promise<RootfsSnapshotRow> {
    const { rows } = await this.opts.db.query<SnapshotDbRow>(
      `INSERT INTO rootfs_snapshots (id, team_id, sandbox_id, volume_id, name, description, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
      [
        snapshotId(),
        teamId,
        sandboxId,
        volumeId,
        meta.name ?? '',
        meta.description ?? '',
        meta.expiresAt ?? null,
      ],
    )
    return toSnapshot(rows[0] as SnapshotDbRow)
  }

  async listSnapshots(teamId: TeamId, sandboxId: string): Promise<RootfsSnapshotRow[]> {
    const { rows } = await this.opts.db.query<SnapshotDbRow>(
      `SELECT * FROM rootfs_snapshots WHERE team_id = $1 AND sandbox_id = $2 ORDER BY created_at, id`,
      [teamId, sandboxId],
    )
    return rows.map(toSnapshot)
  }

  /** A snapshot of the team; `not_found` for anything else (a malformed id costs no query). */
  async getSnapshot(teamId: TeamId, id: string): Promise<RootfsSnapshotRow> {
    if (!ROOTFS_SNAPSHOT_ID.test(id))
      throw new S0Error('not_found', `no rootfs snapshot ${JSON.stringify(id)}`)
    const { rows } = await this.opts.db.query<SnapshotDbRow>(
      `SELECT * FROM rootfs_snapshots WHERE id = $1 AND team_id = $2`,
      [id, teamId],
    )
    if (!rows[0]) throw new S0Error('not_found', `no rootfs snapshot ${id}`)
    return toSnapshot(rows[0])
  }

  /** The row goes first: a crash in between leaves an unreferenced volume for the sweep. */
  async deleteSnapshot(teamId: TeamId, id: string): Promise<void> {
    const s = await this.getSnapshot(teamId, id)
    await this.opts.db.query(`DELETE FROM rootfs_snapshots WHERE id = $1`, [id])
    await this.drop(teamId, s.volumeId)
  }

  async deleteExpiredSnapshots(): Promise<number> {
    const { rows } = await this.opts.db.query<SnapshotDbRow>(
      `SELECT * FROM rootfs_snapshots WHERE expires_at < now() LIMIT 100`,
    )
    for (const r of rows) await this.deleteSnapshot(r.team_id, r.id)
    return rows.length
  }

  /**
   * Deletes rootfs volumes that no sandbox and no snapshot refers to, older than `graceMs` (a
   * capture target is recorded on its sandbox right after it is made; the grace covers that).
   */
  async sweepOrphans(graceMs: number): Promise<VolumeId[]> {
    // Images no template or sandbox names any more: their volumes become orphans right here.
    await releaseUnusedImageVolumes(this.opts.db, graceMs)
    const { rows } = await this.opts.db.query<{ id: VolumeId; team_id: TeamId }>(
      `SELECT v.id, v.team_id FROM volumes v
        WHERE v.kind = 'rootfs' AND v.created_at < now() - make_interval(secs => $1::double precision / 1000)
          AND NOT EXISTS (SELECT 1 FROM sandboxes s WHERE s.rootfs_volume_id = v.id OR s.work_volume_id = v.id)
          AND NOT EXISTS (SELECT 1 FROM rootfs_snapshots r WHERE r.volume_id = v.id)
          AND NOT EXISTS (SELECT 1 FROM sandbox_templates t WHERE t.base_volume_id = v.id)
          AND NOT EXISTS (SELECT 1 FROM image_volumes i WHERE i.volume_id = v.id)
        LIMIT 1000`,
      [graceMs],
    )
    for (const r of rows) {
      await this.drop(r.team_id, r.id).catch((err: unknown) =>
        this.opts.log.warn('orphan rootfs volume not deleted', { volumeId: r.id, err }),
      )
    }
    return rows.map((r) => r.id)
  }
}
