// Sandboxes in the SDK's wire shapes (snake_case): Sandbox, SandboxSummary, the status, claim,
// refresh, pause and resume answers, MountStatus and rootfs snapshots.
import type { MountStatus, RootfsSnapshotRow, SandboxRow } from '../../sandboxes/index.js'
import { iso, isoIfSet, isoOrZero } from './time.js'

export function mountStatusJson(m: MountStatus): Record<string, unknown> {
  return {
    sandboxvolume_id: m.volumeId,
    mount_point: m.mountPoint,
    state: 'mounted',
    mounted_at: iso(m.mountedAt),
    mounted_duration_sec: m.mountedDurationSec,
  }
}

export function claimJson(s: SandboxRow, mounts: readonly MountStatus[]): Record<string, unknown> {
  return {
    sandbox_id: s.id,
    template: s.templateId,
    status: s.status,
    pod_name: s.id,
    bootstrap_mounts: mounts.map(mountStatusJson),
  }
}

/**
 * `ssh`: the server's SSH endpoint (sandboxes/ssh), when it runs; the login name is the sandbox id.
 */
export function sandboxJson(
  s: SandboxRow,
  ssh?: { host: string; port: number } | undefined,
): Record<string, unknown> {
  return {
    id: s.id,
    template_id: s.templateId,
    team_id: s.teamId,
    user_id: '',
    status: s.status,
    paused: s.status === 'paused',
    auto_resume: s.config.auto_resume ?? true,
    ...(s.config.services?.length ? { services: s.config.services } : {}),
    resources: {
      memory: s.config.resources?.memory ?? `${Math.round(s.config.memory_bytes / 1024 / 1024)}Mi`,
      // s0 extension: the root file system's size.
      ...(s.config.disk_bytes !== undefined
        ? {
            ephemeralStorage:
              s.config.resources?.ephemeralStorage ?? `${Math.round(s.config.disk_bytes / 1024 / 1024)}Mi`,
          }
        : {}),
    },
    mounts: (s.config.mounts ?? []).map((m) => ({
      sandboxvolume_id: m.sandboxvolume_id,
      mount_point: m.mount_point,
      ...(m.read_only ? { read_only: true } : {}),
    })),
    pod_name: s.id,
    runtime_generation: s.runtimeGeneration,
    expires_at: isoOrZero(s.expiresAt),
    hard_expires_at: isoOrZero(s.hardExpiresAt),
    claimed_at: iso(s.claimedAt),
    created_at: iso(s.createdAt),
    updated_at: iso(s.updatedAt),
    // s0 extensions: which OCI runtime runs it, and why it is failed or stopped.
    runtime: { driver: s.driver },
    ...(s.statusReason ? { status_reason: s.statusReason } : {}),
    ...(ssh ? { ssh: { host: ssh.host, port: ssh.port, username: s.id } } : {}),
  }
}

export function summaryJson(s: SandboxRow): Record<string, unknown> {
  return {
    id: s.id,
    template_id: s.templateId,
    status: s.status,
    paused: s.status === 'paused',
    runtime_generation: s.runtimeGeneration,
    created_at: iso(s.createdAt),
    expires_at: isoOrZero(s.expiresAt),
    hard_expires_at: isoOrZero(s.hardExpiresAt),
    updated_at: iso(s.updatedAt),
    runtime: { driver: s.driver },
  }
}

export function statusJson(s: SandboxRow): Record<string, unknown> {
  return {
    sandbox_id: s.id,
    template_id: s.templateId,
    team_id: s.teamId,
    user_id: '',
    pod_name: s.id,
    status: s.status,
    claimed_at: iso(s.claimedAt),
    expires_at: isoOrZero(s.expiresAt),
    hard_expires_at: isoOrZero(s.hardExpiresAt),
    created_at: iso(s.createdAt),
    ...(s.statusReason ? { status_reason: s.statusReason } : {}),
  }
}

export function refreshJson(s: SandboxRow): Record<string, unknown> {
  return { sandbox_id: s.id, expires_at: isoOrZero(s.expiresAt), hard_expires_at: isoOrZero(s.hardExpiresAt) }
}

export function rootfsSnapshotJson(s: RootfsSnapshotRow): Record<string, unknown> {
  return {
    id: s.id,
    sandbox_id: s.sandboxId,
    ...(s.name ? { name: s.name } : {}),
    ...(s.description ? { description: s.description } : {}),
    created_at: iso(s.createdAt),
    ...isoIfSet('expires_at', s.expiresAt),
  }
}
