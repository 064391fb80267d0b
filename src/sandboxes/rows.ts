// The `sandboxes` table as the domain sees it: the stored config (the claim's wire config plus
// what the service derived from the template), the row, and its mapping from Postgres.
import type { RootfsSnapshotId, SandboxId, TeamId, VolumeId } from '../core/ids.js'
import type { SandboxNetworkPolicy } from '../egress/policy/types.js'
import type { DriverName } from '../runtime/driver.js'
import type { SandboxStatus } from './status.js'
import type { RootfsSpec } from './templates.js'

/** The claim / update config, in its wire shape (stored as sent). */
export interface SandboxConfig {
  env_vars?: Record<string, string>
  /** `ephemeralStorage`: an s0 extension at claim (the SDK has it on templates). */
  resources?: { memory?: string; ephemeralStorage?: string }
  ttl?: number
  hard_ttl?: number
  network?: SandboxNetworkPolicy
  auto_resume?: boolean
  webhook?: Record<string, unknown>
  /** App services (services/model.ts `AppService`), checked when stored. */
  services?: unknown[]
}

export interface VolumeMountRequest {
  sandboxvolume_id: string
  mount_point: string
  /** s0 extension (also implied by the template's volumeMounts[].readOnly). */
  read_only?: boolean
}

/** What the sandbox was made from, kept so that it resumes even if the template changes or goes. */
export interface TemplateSnapshot {
  rootfs: RootfsSpec
  env: Record<string, string>
  /** Declared mount points: directories in the root even when nothing is bound there. */
  mount_paths: string[]
}

export type StoredConfig = SandboxConfig & {
  memory_bytes: number
  cpu_millis: number
  pids_max: number
  /** The writable root's size (ext4 image); absent on rows from before it: the server's default. */
  disk_bytes?: number
  /** Volumes mounted at claim (Sandbox0's `mounts`). */
  mounts?: VolumeMountRequest[]
  template?: TemplateSnapshot
  /** A runsc memory image kept by a pause with keep_memory (until the resume uses it). */
  memory_image?: string
}

export interface SandboxRow {
  id: SandboxId
  teamId: TeamId
  templateId: string
  status: SandboxStatus
  statusReason: string
  config: StoredConfig
  driver: DriverName
  runtimeGeneration: number
  /** The last committed root-filesystem checkpoint (a rootfs volume); null: the template alone. */
  rootfsVolumeId: VolumeId | null
  workVolumeId: VolumeId | null
  /** The host (node) that runs it or ran it last (cluster/: a live other node's is not ours to touch). */
  host: string
  claimedAt: Date
  expiresAt: Date | null
  hardExpiresAt: Date | null
  pausedAt: Date | null
  createdAt: Date
  updatedAt: Date
}

/** A row as Postgres returns it. */
export interface Row {
  id: string
  team_id: string
  template_id: string
  status: SandboxStatus
  status_reason: string
  config: StoredConfig
  driver: DriverName
  runtime_generation: number
  rootfs_volume_id: string | null
  work_volume_id: string | null
  host: string
  claimed_at: Date
  expires_at: Date | null
  hard_expires_at: Date | null
  paused_at: Date | null
  created_at: Date
  updated_at: Date
}

export function toRow(r: Row): SandboxRow {
  return {
    id: r.id as SandboxId,
    teamId: r.team_id as TeamId,
    templateId: r.template_id,
    status: r.status,
    statusReason: r.status_reason,
    config: r.config,
    driver: r.driver,
    runtimeGeneration: r.runtime_generation,
    rootfsVolumeId: r.rootfs_volume_id as VolumeId | null,
    workVolumeId: r.work_volume_id as VolumeId | null,
    host: r.host,
    claimedAt: r.claimed_at,
    expiresAt: r.expires_at,
    hardExpiresAt: r.hard_expires_at,
    pausedAt: r.paused_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

/** A volume mounted into a running sandbox, as the claim reports it (`bootstrap_mounts`). */
export interface MountStatus {
  volumeId: string
  mountPoint: string
  mountedAt: Date
  mountedDurationSec: number
}

export interface ClaimRequest {
  template: string
  config?: SandboxConfig
  mounts?: VolumeMountRequest[]
  snapshot_id?: string
}

/** A root-filesystem snapshot of a sandbox (its content is the rootfs volume `volumeId`). */
export interface RootfsSnapshotRow {
  id: RootfsSnapshotId
  teamId: TeamId
  sandboxId: SandboxId
  volumeId: VolumeId
  name: string
  description: string
  createdAt: Date
  expiresAt: Date | null
}

export interface ListQuery {
  status?: SandboxStatus
  templateId?: string
  paused?: boolean
  limit?: number
  offset?: number
}
