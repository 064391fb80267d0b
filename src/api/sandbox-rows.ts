// The `sandboxes` table as the service sees it: statuses, the stored config (the claim's wire
// config plus what the service derived from the template), and row mapping.
import type { TeamId } from '../core/ids.js'
import type { DriverName } from '../runtime/driver.js'
import type { RootfsSpec } from './template-catalog.js'

export const sandboxLimitsApi = {
  sweepIntervalMs: 1_000,
  activeSandboxesPerTeamMax: 100,
  ttlSecMax: 30 * 24 * 3600,
  listLimitDefault: 50,
  listLimitMax: 200,
  /** How long a pause request waits for the checkpoint before answering `paused: false`. */
  pauseWaitMs: 15_000,
  /** A runtime call to a paused sandbox waits this long for its auto-resume, then gets 503. */
  autoResumeWaitMsDefault: 10_000,
  /** Unreferenced rootfs volumes younger than this are left alone (a capture may be starting). */
  orphanGraceMs: 10 * 60_000,
} as const

/** `idle`: started by a warm pool, not claimed yet; never shown by the API. */
export type SandboxStatus = 'idle' | 'starting' | 'running' | 'paused' | 'terminating' | 'failed'
export const SANDBOX_ID = /^[a-z0-9][a-z0-9-]{0,62}$/

/** The claim / update config, in its wire shape. */
export interface SandboxConfig {
  env_vars?: Record<string, string>
  resources?: { memory?: string }
  ttl?: number
  hard_ttl?: number
  network?: Record<string, unknown>
  auto_resume?: boolean
  webhook?: Record<string, unknown>
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
  /** Volumes mounted at claim (Sandbox0's `mounts`). */
  mounts?: VolumeMountRequest[]
  template?: TemplateSnapshot
}

export interface SandboxRow {
  id: string
  teamId: string
  templateId: string
  status: SandboxStatus
  statusReason: string
  config: StoredConfig
  driver: DriverName
  runtimeGeneration: number
  /** The last committed root-filesystem checkpoint (a rootfs volume); null: the template alone. */
  rootfsVolumeId: string | null
  workVolumeId: string | null
  claimedAt: Date
  expiresAt: Date | null
  hardExpiresAt: Date | null
  pausedAt: Date | null
  createdAt: Date
  updatedAt: Date
}

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
  claimed_at: Date
  expires_at: Date | null
  hard_expires_at: Date | null
  paused_at: Date | null
  created_at: Date
  updated_at: Date
}

export function toRow(r: Row): SandboxRow {
  return {
    id: r.id,
    teamId: r.team_id,
    templateId: r.template_id,
    status: r.status,
    statusReason: r.status_reason,
    config: r.config,
    driver: r.driver,
    runtimeGeneration: r.runtime_generation,
    rootfsVolumeId: r.rootfs_volume_id,
    workVolumeId: r.work_volume_id,
    claimedAt: r.claimed_at,
    expiresAt: r.expires_at,
    hardExpiresAt: r.hard_expires_at,
    pausedAt: r.paused_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

/** Sandbox0's MountStatus, as the claim answers it in `bootstrap_mounts`. */
export interface MountStatus {
  sandboxvolume_id: string
  mount_point: string
  state: 'mounted'
  mounted_at: string
  mounted_duration_sec: number
}

export interface ClaimRequest {
  template: string
  config?: SandboxConfig
  mounts?: VolumeMountRequest[]
  snapshot_id?: string
}

export function isoOrNull(d: Date | null): string | null {
  return d ? d.toISOString() : null
}

export function teamOf(row: SandboxRow): TeamId {
  return row.teamId as TeamId
}
