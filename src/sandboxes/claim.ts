// What a claim asks for, checked and turned into a sandbox's stored config: limits from the
// template unless the claim overrides them, the template as it is now (so the sandbox resumes the
// same later), and the volumes to mount, with the one-writer rule.
import { S0Error } from '../core/errors.js'
import { checkPolicy } from '../egress/policy/compile.js'
import { DEFAULT_NETWORK_POLICY } from '../egress/policy/types.js'
import type { MountManager } from '../fuse/mounts.js'
import type { ClaimRequest, SandboxConfig, StoredConfig, VolumeMountRequest } from './rows.js'
import { checkServices, type AppService } from './services/model.js'
import {
  checkedDisk,
  checkedMemory,
  cpuForMemory,
  type ResolvedTemplate,
  type TemplateRow,
} from './templates.js'

const RESERVED_MOUNT_POINTS = ['/tmp', '/proc', '/dev', '/sys']

/** The stored config of a sandbox of this template with this claim config. */
export function claimConfig(
  tpl: ResolvedTemplate,
  cfg: SandboxConfig,
  mounts: readonly VolumeMountRequest[],
): StoredConfig {
  const { memoryBytes, cpuMillis } = claimResources(tpl, cfg)
  return {
    ...cfg,
    // The policy the sandbox starts with: the claim's, else its template's (kept as it was at claim).
    network: cfg.network
      ? checkPolicy(cfg.network, 'config.network')
      : checkPolicy(tpl.row.spec.network ?? DEFAULT_NETWORK_POLICY, 'template spec.network'),
    memory_bytes: memoryBytes,
    cpu_millis: cpuMillis,
    pids_max: tpl.pidsMax,
    disk_bytes:
      cfg.resources?.ephemeralStorage !== undefined
        ? checkedDisk(cfg.resources.ephemeralStorage, 'resources.ephemeralStorage')
        : tpl.diskBytes,
    ...(mounts.length > 0 ? { mounts: [...mounts] } : {}),
    ...(cfg.services !== undefined ? { services: checkServices(cfg.services as AppService[]) } : {}),
    template: { rootfs: tpl.row.rootfs, env: tpl.env, mount_paths: tpl.mountPaths },
  }
}

/**
 * The memory and CPU a sandbox of this template gets with this claim config: the template's,
 * unless the claim sets `resources.memory` (its CPU then follows the memory).
 */
export function claimResources(
  tpl: Pick<ResolvedTemplate, 'memoryBytes' | 'cpuMillis'>,
  cfg: SandboxConfig,
): { memoryBytes: number; cpuMillis: number } {
  if (cfg.resources?.memory === undefined) return { memoryBytes: tpl.memoryBytes, cpuMillis: tpl.cpuMillis }
  const memoryBytes = checkedMemory(cfg.resources.memory, 'resources.memory')
  return { memoryBytes, cpuMillis: cpuForMemory(memoryBytes) }
}

/**
 * Whether a claim may take a warm slot of its template: one that mounts volumes, starts from a
 * snapshot or from a template made from a sandbox starts cold (service.ts; warm.ts also wants
 * the template's disk size).
 */
export function warmCandidate(
  req: Pick<ClaimRequest, 'mounts' | 'snapshot_id'>,
  tpl: Pick<TemplateRow, 'baseVolumeId'>,
): boolean {
  return (
    (req.mounts ?? []).length === 0 && req.snapshot_id === undefined && (tpl.baseVolumeId ?? null) === null
  )
}

/**
 * One writer per volume on this host: a writable mount needs the volume mounted nowhere else, a
 * read-only one needs no writable mount of it.
 */
export function checkOneWriter(manager: MountManager, volumeId: string, readOnly: boolean): void {
  const others = manager.mountsOf(volumeId)
  if (readOnly ? others.some((o) => !o.readOnly) : others.length > 0)
    throw new S0Error(
      'conflict',
      `volume ${volumeId} is mounted ${readOnly ? 'for writing ' : ''}elsewhere (one writer at a time)`,
    )
}

/**
 * Claim `mounts`: absolute, distinct mount points outside the sandbox's own mounts; each volume
 * once. Read-only when the claim says so or the template declares the mount point read-only.
 */
export function checkMounts(
  mounts: readonly VolumeMountRequest[],
  tpl: ResolvedTemplate,
  manager: MountManager | undefined,
): VolumeMountRequest[] {
  if (mounts.length === 0) return []
  if (!manager) throw new S0Error('not_supported', 'this server does not mount volumes')
  const points = new Set<string>()
  const volumes = new Set<string>()
  const out: VolumeMountRequest[] = []
  for (const m of mounts) {
    const p = m.mount_point
    if (
      !p.startsWith('/') ||
      p === '/' ||
      p.includes('\0') ||
      p.split('/').some((c) => c === '..' || c === '.')
    )
      throw new S0Error(
        'bad_request',
        `mount_point must be an absolute path without . or .. (${JSON.stringify(p)})`,
      )
    const norm = p.replace(/\/{2,}/g, '/').replace(/\/+$/, '')
    if (RESERVED_MOUNT_POINTS.some((r) => norm === r || norm.startsWith(r + '/')))
      throw new S0Error('bad_request', `mount_point ${norm} is reserved`)
    if (points.has(norm)) throw new S0Error('bad_request', `mount_point ${norm} is given twice`)
    if (volumes.has(m.sandboxvolume_id))
      throw new S0Error('bad_request', `volume ${m.sandboxvolume_id} is given twice`)
    const readOnly = m.read_only ?? tpl.readOnlyMountPaths.includes(norm)
    checkOneWriter(manager, m.sandboxvolume_id, readOnly)
    points.add(norm)
    volumes.add(m.sandboxvolume_id)
    out.push({
      sandboxvolume_id: m.sandboxvolume_id,
      mount_point: norm,
      ...(readOnly ? { read_only: true } : {}),
    })
  }
  return out
}
