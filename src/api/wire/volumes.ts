// Volumes, volume snapshots and server mounts in the SDK's wire shapes.
import type { MountInfo } from '../../fuse/mounts.js'
import type { SnapshotRow, VolumeRow } from '../../snapshots/volume-catalog.js'
import { isoIfSet } from './time.js'

export function volumeJson(v: VolumeRow): Record<string, unknown> {
  return {
    id: v.id,
    team_id: v.teamId,
    user_id: '',
    ...(v.sourceVolumeId ? { source_volume_id: v.sourceVolumeId } : {}),
    default_posix_uid: v.defaultPosixUid,
    default_posix_gid: v.defaultPosixGid,
    access_mode: v.accessMode,
    backend: 's0fs',
    metered_storage_bytes: v.usedBytes,
    storage_observed_at: v.updatedAt.toISOString(),
    created_at: v.createdAt.toISOString(),
    updated_at: v.updatedAt.toISOString(),
  }
}

export function volumeSnapshotJson(s: SnapshotRow): Record<string, unknown> {
  return {
    id: s.id,
    volume_id: s.volumeId,
    name: s.name,
    description: s.description,
    size_bytes: s.sizeBytes,
    created_at: s.createdAt.toISOString(),
    ...isoIfSet('expires_at', s.expiresAt),
  }
}

/** A volume mounted on the server's host (s0 extension: Sandbox0 mounts volumes only at claim). */
export function mountJson(m: MountInfo): Record<string, unknown> {
  return {
    id: m.id,
    sandboxvolume_id: m.volumeId,
    host_path: m.dir,
    read_only: m.readOnly,
    durability: m.durability,
    mounted_at: m.mountedAt.toISOString(),
    ...(m.sandboxId ? { sandbox_id: m.sandboxId } : {}),
  }
}
