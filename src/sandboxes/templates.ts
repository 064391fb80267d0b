// The template catalog: sandbox templates in Postgres: the two built-ins (`default`: Debian bookworm + python3,
// `busybox`), team templates, and what a template means to the runtime (root file system,
// driver, memory / cpu / pids, environment, mount points).
import { createHash } from 'node:crypto'
import type { Db, Queryable } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { NAME_ID_PATTERN, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { checkPolicy } from '../egress/policy/compile.js'
import type { SandboxNetworkPolicy } from '../egress/policy/types.js'
import { DRIVER_NAMES, type DriverName } from '../runtime/driver.js'
import type { ImagePuller } from '../runtime/image-pull.js'
import { formatImageRef, isInsecureRegistry, parseImageRef } from '../runtime/image-ref.js'
import type { TemplateStore } from '../runtime/templates.js'
import type { RegistryCredentials } from './registry-credentials.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB

export const TEMPLATE_ID = NAME_ID_PATTERN

export type RootfsSpec =
  | { kind: 'busybox' }
  | { kind: 'debian' }
  | { kind: 'image'; source: string }
  /**
   * A registry image (`image` canonical, `registry/repo:tag` or `@digest`), pulled in the
   * background; `digest` is recorded when the pull resolved it (absent while creating), `teamId`
   * names whose registry credentials a pull on another host uses.
   */
  | { kind: 'registry'; image: string; digest?: string; teamId: string }

/** `status.creation` of a template built in the background (wire shape, camelCase). */
export interface TemplateCreation {
  state: 'creating' | 'ready' | 'failed'
  /** SDK enum: capturing (pull / capture), publishing (unpack / record), reconciling. */
  stage: 'capturing' | 'publishing' | 'reconciling'
  startedAt: string
  capturedAt?: string
  completedAt?: string
  outputImage?: string
  reason?: string
  message?: string
  /** From a sandbox: the snapshot taken, so a restart can finish publishing it (not on the wire). */
  snapshotId?: string
  /** From a sandbox: its id (not on the wire). */
  sourceSandboxId?: string
}

/** The wire spec (camelCase), as stored and returned. */
export type TemplateSpec = Record<string, unknown> & {
  mainContainer?: {
    image: string
    env?: { name: string; value?: string }[]
    resources: { memory: string; cpu?: string; pids?: number; ephemeralStorage?: string }
  }
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[]
  envVars?: Record<string, string>
  runtime?: { driver?: DriverName }
  /** The default egress policy of the template's sandboxes. */
  network?: SandboxNetworkPolicy
  /** s0 extension: processes a warm pool starts in each warm sandbox before it is claimed. */
  warmProcesses?: WarmProcessSpec[]
  /** Of a Kubernetes pod spec, s0 reads `nodeSelector`: the labels of the nodes its sandboxes run on. */
  pod?: Record<string, unknown> & { nodeSelector?: Record<string, string> }
}

/**
 * A warm process: a REPL (handed to the first `run` of its language after the claim, so it
 * does not wait for the interpreter to start) or a command (a server, a cache warmer), with a
 * readiness probe; a pool sandbox is claimable once all of its are ready.
 */
export type WarmProcessSpec =
  | { type: 'repl'; alias: string }
  | {
      type: 'cmd'
      command: string[]
      readiness?: {
        type: 'process' | 'delay' | 'output'
        delayMs?: number
        output?: string
        timeoutMs?: number
      }
    }

export interface TemplateRow {
  teamId: string
  id: string
  spec: TemplateSpec
  rootfs: RootfsSpec
  driver: DriverName | null
  builtin: boolean
  /** Null: usable at once (built-ins, local images). Absent: not read (the pool's rows). */
  creation?: TemplateCreation | null
  /** Made from a sandbox: the rootfs volume its claims fork for their writable root. */
  baseVolumeId?: string | null
  createdAt: Date
  updatedAt: Date
}

/** What a claim needs from its template. */
export interface ResolvedTemplate {
  row: TemplateRow
  memoryBytes: number
  cpuMillis: number
  pidsMax: number
  /** The writable root's size: `resources.ephemeralStorage`, else the server's default. */
  diskBytes: number
  env: Record<string, string>
  mountPaths: string[]
  /** Declared mount points that sandboxes get read-only. */
  readOnlyMountPaths: string[]
  warmProcesses: WarmProcessSpec[]
}

const BUILTINS: { id: string; rootfs: RootfsSpec; spec: TemplateSpec }[] = [
  {
    id: 'default',
    rootfs: { kind: 'debian' },
    spec: {
      displayName: 'Debian bookworm with Python 3',
      description: 'Debian 12 (mmdebstrap) with python3, nodejs, bash, coreutils, git and curl.',
      tags: ['debian', 'python', 'node'],
      mainContainer: { image: 's0/default', resources: { memory: '1Gi', cpu: '1', pids: 256 } },
      volumeMounts: [{ name: 'data', mountPath: '/workspace/data' }],
      network: { mode: 'block-all' },
      pool: { minIdle: 0, maxIdle: 0 },
    },
  },
  {
    id: 'busybox',
    rootfs: { kind: 'busybox' },
    spec: {
      displayName: 'BusyBox',
      description: 'A 2 MB busybox-static root file system: fast starts, sh and the usual applets.',
      tags: ['busybox'],
      mainContainer: { image: 's0/busybox', resources: { memory: '256Mi', cpu: '0.5', pids: 128 } },
      volumeMounts: [{ name: 'data', mountPath: '/workspace/data' }],
      network: { mode: 'block-all' },
      pool: { minIdle: 0, maxIdle: 0 },
    },
  },
]

interface Row {
  team_id: string
  id: string
  spec: TemplateSpec
  rootfs: RootfsSpec
  driver: DriverName | null
  builtin: boolean
  creation?: TemplateCreation | null
  base_volume_id?: string | null
  created_at: Date
  updated_at: Date
}

function toRow(r: Row): TemplateRow {
  return {
    teamId: r.team_id,
    id: r.id,
    spec: r.spec,
    rootfs: r.rootfs,
    driver: r.driver,
    builtin: r.builtin,
    creation: r.creation ?? null,
    baseVolumeId: r.base_volume_id ?? null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

/** `512Mi`, `2Gi`, `1G`, `1048576` → bytes; undefined if malformed. */
export function parseMemory(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$/.exec(text.trim())
  if (!m) return undefined
  const unit: Record<string, number> = {
    '': 1,
    Ki: 1024,
    Mi: 1024 * 1024,
    Gi: GiB,
    Ti: 1024 * GiB,
    K: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
  }
  const n = Math.round(Number(m[1]) * (unit[m[2] ?? ''] ?? 1))
  return Number.isSafeInteger(n) ? n : undefined
}

/** A memory string within the platform bounds, in bytes; `invalid_request` otherwise. */
export function checkedMemory(text: string, what: string): number {
  const bytes = parseMemory(text)
  if (bytes === undefined)
    throw new S0Error(
      'invalid_request',
      `${what}: ${JSON.stringify(text)} is not a memory size like 512Mi or 2Gi`,
    )
  if (bytes < limits.templateMemoryBytesMin || bytes > limits.templateMemoryBytesMax)
    throw new S0Error('invalid_request', `${what}: ${text} is outside [128Mi, 32Gi]`)
  return bytes
}

/**
 * An `ephemeralStorage` (a memory-style size: 10Gi, 512Mi) within the platform bounds, in bytes;
 * `invalid_request` naming the field otherwise.
 */
export function checkedDisk(text: string, what: string): number {
  const bytes = parseMemory(text)
  if (bytes === undefined)
    throw new S0Error('invalid_request', `${what}: ${JSON.stringify(text)} is not a size like 512Mi or 10Gi`)
  if (bytes < limits.sandboxDiskBytesMin || bytes > limits.sandboxDiskBytesMax)
    throw new S0Error(
      'invalid_request',
      `${what}: ${text} is outside [${limits.sandboxDiskBytesMin / MiB}Mi, ${limits.sandboxDiskBytesMax / GiB}Gi]`,
    )
  return bytes
}

/** `500m`, `1`, `1.5` → thousandths of a core. */
function checkedCpu(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(m)?$/.exec(text.trim())
  const millis = m ? Math.round(Number(m[1]) * (m[2] ? 1 : 1000)) : NaN
  if (!(millis >= limits.templateCpuMillisMin && millis <= limits.templateCpuMillisMax))
    throw new S0Error('invalid_request', `cpu: ${JSON.stringify(text)} must be 100m..64 cores (e.g. 500m, 2)`)
  return millis
}

/** Without an explicit cpu, a sandbox gets one core per GiB of memory, at least a quarter core. */
export function cpuForMemory(memoryBytes: number): number {
  return Math.max(250, Math.min(limits.templateCpuMillisMax, Math.round((memoryBytes / GiB) * 1000)))
}

/**
 * Maps `mainContainer.image` to a root file system: the built-ins, a local image on the server's
 * disk (admin keys), or a registry image (`python:3.12-slim`, `ghcr.io/org/app:1.4`, `host:port/x@sha256:...`).
 */
export function rootfsForImage(image: string, teamId: string = ''): RootfsSpec {
  if (image === 's0/default' || image === 'default') return { kind: 'debian' }
  if (image === 's0/busybox' || image === 'busybox') return { kind: 'busybox' }
  if (/^(oci-archive|docker-archive|oci):\//.test(image)) return { kind: 'image', source: image }
  if (/^[a-z-]+:\//.test(image))
    throw new S0Error(
      'invalid_request',
      `image ${JSON.stringify(image)}: use s0/default, s0/busybox, a registry image (python:3.12-slim, ghcr.io/org/app:1.4) or a local image (oci-archive:/path.tar, docker-archive:/path.tar, oci:/layout:tag)`,
      { details: { field: 'spec.mainContainer.image' } },
    )
  return { kind: 'registry', image: formatImageRef(parseImageRef(image)), teamId }
}

/** Checks a spec's values beyond its JSON schema; returns its rootfs and driver. */
export function checkSpec(
  spec: TemplateSpec,
  teamId: string = '',
): { rootfs: RootfsSpec; driver: DriverName | null } {
  const mc = spec.mainContainer
  const rootfs = rootfsForImage(mc?.image ?? 's0/default', teamId)
  if (mc) {
    checkedMemory(mc.resources.memory, 'mainContainer.resources.memory')
    if (mc.resources.cpu !== undefined) checkedCpu(mc.resources.cpu)
    if (mc.resources.ephemeralStorage !== undefined)
      checkedDisk(mc.resources.ephemeralStorage, 'mainContainer.resources.ephemeralStorage')
  }
  for (const m of spec.volumeMounts ?? []) {
    if (!m.mountPath.startsWith('/') || m.mountPath.split('/').includes('..'))
      throw new S0Error(
        'invalid_request',
        `volumeMounts: ${JSON.stringify(m.mountPath)} must be an absolute path`,
      )
  }
  for (const w of spec.warmProcesses ?? []) {
    if (w.type === 'repl' && !('alias' in w && w.alias))
      throw new S0Error('invalid_request', 'warmProcesses: a repl needs an alias (python, bash, node)')
    if (w.type === 'cmd' && !('command' in w && w.command?.length))
      throw new S0Error('invalid_request', 'warmProcesses: a cmd needs a command')
    if (w.type === 'cmd' && w.readiness?.type === 'output' && !w.readiness.output)
      throw new S0Error('invalid_request', 'warmProcesses: readiness type output needs `output`')
  }
  if (spec.network !== undefined) checkPolicy(spec.network, 'spec.network')
  const driver = spec.runtime?.driver ?? null
  if (driver !== null && !DRIVER_NAMES.includes(driver))
    throw new S0Error('invalid_request', `runtime.driver must be one of ${DRIVER_NAMES.join(', ')}`)
  return { rootfs, driver }
}

/**
 * The template a team sees under `id`: its own, else the public one of that id (a team template
 * shadows a built-in); undefined when there is none.
 */
export async function findTemplate(
  q: Queryable,
  teamId: string,
  id: string,
): Promise<TemplateRow | undefined> {
  if (!TEMPLATE_ID.test(id)) return undefined
  const { rows } = await q.query<Row>(
    `SELECT * FROM sandbox_templates WHERE id = $1 AND team_id IN ('', $2)
     ORDER BY team_id DESC LIMIT 1`,
    [id, teamId],
  )
  return rows[0] ? toRow(rows[0]) : undefined
}

/** The memory and CPU of a template's sandboxes: its mainContainer.resources, else the defaults. */
export function templateResources(spec: TemplateSpec): { memoryBytes: number; cpuMillis: number } {
  const res = spec.mainContainer?.resources
  const memoryBytes = res ? checkedMemory(res.memory, 'template memory') : limits.templateMemoryBytesDefault
  return {
    memoryBytes,
    cpuMillis: res?.cpu !== undefined ? checkedCpu(res.cpu) : cpuForMemory(memoryBytes),
  }
}

/**
 * The labels a node must carry to run the template's sandboxes: its `pod.nodeSelector`, as a
 * Kubernetes pod's (s0 matches them against the labels an agent registers with, S0_NODE_LABELS).
 */
export function templateNodeSelector(spec: TemplateSpec): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(spec.pod?.nodeSelector ?? {})) if (typeof v === 'string') out[k] = v
  return out
}

/** Who asks for a template change: importing an image reads a path on the server's disk. */
export interface Actor {
  role: 'admin' | 'member'
}

function checkImageRole(spec: TemplateSpec, actor: Actor): void {
  const image = spec.mainContainer?.image ?? ''
  if (/^(oci-archive|docker-archive|oci):/.test(image) && actor.role !== 'admin')
    throw new S0Error('forbidden', 'only admin keys may import images from the server disk')
}

/** Registry image pulls: the shared blob cache, the teams' credentials, the http-allowed hosts. */
export interface ImageSupport {
  puller: ImagePuller
  credentials?: RegistryCredentials | undefined
  insecureHosts: readonly string[]
}

export class TemplateCatalog {
  /** Starts a background build of a template just written `creating` (set by TemplateBuilds). */
  startBuild: ((row: TemplateRow) => void) | undefined
  /** Deletes a template's base volume (set by the sandbox service, which owns the volumes). */
  dropVolume: ((teamId: TeamId, volumeId: string) => Promise<void>) | undefined

  constructor(
    private readonly db: Db,
    readonly store: TemplateStore,
    /** A sandbox's writable root when its template sets no ephemeralStorage (S0_SANDBOX_DISK_BYTES). */
    private readonly diskBytesDefault: number = limits.sandboxDiskBytesDefault,
    readonly images?: ImageSupport,
  ) {}

  get database(): Db {
    return this.db
  }

  /** Inserts or refreshes the built-in templates (their spec follows the code). */
  async ensureBuiltins(): Promise<void> {
    for (const b of BUILTINS) {
      await this.db.query(
        `INSERT INTO sandbox_templates (team_id, id, spec, rootfs, driver, builtin)
         VALUES ('', $1, $2, $3, NULL, true)
         ON CONFLICT (team_id, id) DO UPDATE SET spec = EXCLUDED.spec, rootfs = EXCLUDED.rootfs`,
        [b.id, JSON.stringify(b.spec), JSON.stringify(b.rootfs)],
      )
    }
  }

  async list(teamId: TeamId): Promise<TemplateRow[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM sandbox_templates WHERE team_id IN ('', $1) ORDER BY team_id, id`,
      [teamId],
    )
    return rows.map(toRow)
  }

  /** A template visible to the team (its own or a public one); `template_not_found` otherwise. */
  async get(teamId: TeamId, id: string, q: Queryable = this.db): Promise<TemplateRow> {
    if (!TEMPLATE_ID.test(id)) throw new S0Error('template_not_found', `no template ${JSON.stringify(id)}`)
    const row = await findTemplate(q, teamId, id)
    if (!row) throw new S0Error('template_not_found', `no template ${id}`)
    return row
  }

  async create(teamId: TeamId, id: string, spec: TemplateSpec, actor: Actor): Promise<TemplateRow> {
    if (!TEMPLATE_ID.test(id))
      throw new S0Error('invalid_request', 'template_id must be a DNS label (a-z, 0-9, -; up to 63)')
    checkImageRole(spec, actor)
    const { rootfs, driver } = checkSpec(spec, teamId)
    const creation = rootfs.kind === 'registry' ? this.creatingNow() : null
    const created = await this.insertNew(teamId, id, spec, rootfs, driver, creation, null)
    if (created.creation?.state === 'creating') this.build(created)
    return created
  }

  /** A `creating` status as of now, first stage. */
  creatingNow(): TemplateCreation {
    if (!this.images)
      throw new S0Error('not_supported', 'this server does not pull registry images', {
        details: { field: 'spec.mainContainer.image' },
      })
    return { state: 'creating', stage: 'capturing', startedAt: new Date().toISOString() }
  }

  private build(row: TemplateRow): void {
    if (!this.startBuild)
      throw new S0Error('not_supported', 'this server builds no templates in the background')
    this.startBuild(row)
  }

  async update(teamId: TeamId, id: string, spec: TemplateSpec, actor: Actor): Promise<TemplateRow> {
    const current = await this.get(teamId, id)
    if (current.teamId === '')
      throw new S0Error('forbidden', `template ${id} is built in and cannot be changed`)
    if (current.creation?.state === 'creating')
      throw new S0Error('conflict', `template ${id} is still being created`, {
        retryAfterS: limits.templateNotReadyRetryAfterS,
      })
    checkImageRole(spec, actor)
    const checked = checkSpec(spec, teamId)
    const driver = checked.driver
    let rootfs = checked.rootfs
    let creation: TemplateCreation | null = null
    if (current.baseVolumeId !== null) {
      // Its base volume is a layer over the source's root file system: that cannot change.
      if ((spec.mainContainer?.image ?? '') !== (current.spec.mainContainer?.image ?? ''))
        throw new S0Error(
          'invalid_request',
          `template ${id} was made from a sandbox: its mainContainer.image cannot change`,
          { details: { field: 'spec.mainContainer.image' } },
        )
      rootfs = current.rootfs
      creation = current.creation ?? null
    } else if (rootfs.kind === 'registry') {
      const same = current.rootfs.kind === 'registry' && current.rootfs.image === rootfs.image
      // The same tag again is pulled again (it may have moved); a pinned digest already pulled is kept.
      if (same && rootfs.image.includes('@') && current.creation?.state === 'ready') {
        rootfs = current.rootfs
        creation = current.creation
      } else creation = this.creatingNow()
    }
    const { rows } = await this.db.query<Row>(
      `UPDATE sandbox_templates SET spec = $3, rootfs = $4, driver = $5, creation = $6, updated_at = now()
       WHERE team_id = $1 AND id = $2 RETURNING *`,
      [
        teamId,
        id,
        JSON.stringify(spec),
        JSON.stringify(rootfs),
        driver,
        creation && JSON.stringify(creation),
      ],
    )
    const row = rows[0]
    if (!row) throw new S0Error('template_not_found', `no template ${id}`)
    const updated = toRow(row)
    if (updated.creation?.state === 'creating') this.build(updated)
    return updated
  }

  /** Records a build's progress; false if the template is gone or was rewritten meanwhile. */
  async setCreation(
    row: Pick<TemplateRow, 'teamId' | 'id'>,
    startedAt: string,
    creation: TemplateCreation,
    extra: { rootfs?: RootfsSpec; baseVolumeId?: string; buildHost?: string | null } = {},
  ): Promise<boolean> {
    const r = await this.db.query(
      `UPDATE sandbox_templates SET creation = $4,
         rootfs = COALESCE($5::jsonb, rootfs), base_volume_id = COALESCE($6, base_volume_id),
         build_host = CASE WHEN $7::boolean THEN $8 ELSE build_host END
       WHERE team_id = $1 AND id = $2 AND creation ->> 'startedAt' = $3`,
      [
        row.teamId,
        row.id,
        startedAt,
        JSON.stringify(creation),
        extra.rootfs ? JSON.stringify(extra.rootfs) : null,
        extra.baseVolumeId ?? null,
        extra.buildHost !== undefined,
        extra.buildHost ?? null,
      ],
    )
    return (r.rowCount ?? 0) > 0
  }

  /** Templates still `creating` whose build ran on `host` (or on no host yet). */
  async creatingOn(host: string): Promise<TemplateRow[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM sandbox_templates WHERE creation ->> 'state' = 'creating'
         AND (build_host = $1 OR build_host IS NULL) ORDER BY created_at`,
      [host],
    )
    return rows.map(toRow)
  }

  /** Inserts a template made from a sandbox, `creating` (the caller runs its build). */
  async insertFromSandbox(
    teamId: TeamId,
    id: string,
    spec: TemplateSpec,
    rootfs: RootfsSpec,
    driver: DriverName | null,
    creation: TemplateCreation,
    buildHost: string,
  ): Promise<TemplateRow> {
    return this.insertNew(teamId, id, spec, rootfs, driver, creation, buildHost)
  }

  /** A new team template: its id free (built-ins included), within the team's quota. */
  private insertNew(
    teamId: TeamId,
    id: string,
    spec: TemplateSpec,
    rootfs: RootfsSpec,
    driver: DriverName | null,
    creation: TemplateCreation | null,
    buildHost: string | null,
  ): Promise<TemplateRow> {
    if (!TEMPLATE_ID.test(id))
      throw new S0Error('invalid_request', 'template_id must be a DNS label (a-z, 0-9, -; up to 63)')
    return this.db.tx(async (c) => {
      const existing = await c.query(
        `SELECT 1 FROM sandbox_templates WHERE id = $1 AND team_id IN ('', $2)`,
        [id, teamId],
      )
      if (existing.rowCount) throw new S0Error('conflict', `template ${id} already exists`)
      const count = await c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM sandbox_templates WHERE team_id = $1',
        [teamId],
      )
      if ((count.rows[0]?.n ?? 0) >= limits.templatesPerTeamMax)
        throw new S0Error('quota_exceeded', `a team may have at most ${limits.templatesPerTeamMax} templates`)
      const { rows } = await c.query<Row>(
        `INSERT INTO sandbox_templates (team_id, id, spec, rootfs, driver, creation, build_host)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
        [
          teamId,
          id,
          JSON.stringify(spec),
          JSON.stringify(rootfs),
          driver,
          creation && JSON.stringify(creation),
          buildHost,
        ],
      )
      return toRow(rows[0] as Row)
    })
  }

  async delete(teamId: TeamId, id: string): Promise<void> {
    const current = await this.get(teamId, id)
    if (current.teamId === '')
      throw new S0Error('forbidden', `template ${id} is built in and cannot be deleted`)
    await this.db.query('DELETE FROM sandbox_templates WHERE team_id = $1 AND id = $2', [teamId, id])
    // Claims forked it: their sandboxes keep their own copies (volumes are independent).
    if (current.baseVolumeId && this.dropVolume) await this.dropVolume(teamId, current.baseVolumeId)
  }

  /** The template's limits and environment, and its root file system (built or imported if needed). */
  async resolve(teamId: TeamId, id: string): Promise<ResolvedTemplate & { rootfsPath: string }> {
    return this.resolveRow(await this.get(teamId, id))
  }

  async resolveRow(row: TemplateRow): Promise<ResolvedTemplate & { rootfsPath: string }> {
    const creation = row.creation
    if (creation && creation.state !== 'ready') {
      const why =
        creation.state === 'failed'
          ? `its build failed (${creation.reason ?? 'failed'}: ${creation.message ?? ''}); update or delete it`
          : `it is still being created (stage ${creation.stage})`
      throw new S0Error('template_not_ready', `template ${row.id} is not ready: ${why}`, {
        retryAfterS: limits.templateNotReadyRetryAfterS,
        details: { state: creation.state, stage: creation.stage, reason: creation.reason },
      })
    }
    const res = row.spec.mainContainer?.resources
    const { memoryBytes, cpuMillis } = templateResources(row.spec)
    const env: Record<string, string> = {}
    for (const e of row.spec.mainContainer?.env ?? []) env[e.name] = e.value ?? ''
    Object.assign(env, row.spec.envVars ?? {})
    return {
      row,
      memoryBytes,
      cpuMillis,
      pidsMax: Math.min(res?.pids ?? limits.templatePidsDefault, limits.templatePidsMax),
      diskBytes:
        res?.ephemeralStorage !== undefined
          ? checkedDisk(res.ephemeralStorage, 'template ephemeralStorage')
          : this.diskBytesDefault,
      env,
      mountPaths: (row.spec.volumeMounts ?? []).map((m) => normMountPath(m.mountPath)),
      readOnlyMountPaths: (row.spec.volumeMounts ?? [])
        .filter((m) => m.readOnly)
        .map((m) => normMountPath(m.mountPath)),
      warmProcesses: row.spec.warmProcesses ?? [],
      rootfsPath: await this.rootfsPath(row.rootfs),
    }
  }

  /** The host directory of a root file system (built or imported on first use). */
  async rootfsPath(rootfs: RootfsSpec): Promise<string> {
    switch (rootfs.kind) {
      case 'busybox':
        return this.store.ensure('busybox')
      case 'debian':
        return this.store.ensure('default')
      case 'image': {
        const name = `img-${createHash('sha256').update(rootfs.source).digest('hex').slice(0, 16)}`
        return this.store.importImage(name, rootfs.source)
      }
      case 'registry': {
        if (!rootfs.digest || !this.images)
          throw new S0Error('template_not_ready', `image ${rootfs.image} is not pulled yet`, {
            retryAfterS: limits.templateNotReadyRetryAfterS,
          })
        if (await this.images.puller.isPulled(rootfs.digest))
          return this.images.puller.rootfsPath(rootfs.digest)
        // Pulled before, but not on this host (or its cache was cleared): written back from the
        // chunk store (image-volumes.ts), else pulled again by digest (ImagePuller.pull).
        return this.pullImage(rootfs.teamId, rootfs.image, rootfs.digest)
      }
    }
  }

  /** Resolves (if `digest` is not given) and pulls a registry image with the team's credentials. */
  async pullImage(teamId: string, image: string, digest?: string): Promise<string> {
    const { ref, opts } = await this.pullOptions(teamId, image)
    return this.images!.puller.pull(ref, digest ?? (await this.images!.puller.resolve(ref, opts)), opts)
  }

  async pullOptions(
    teamId: string,
    image: string,
  ): Promise<{
    ref: ReturnType<typeof parseImageRef>
    opts: { auth: Awaited<ReturnType<RegistryCredentials['forPull']>>; insecure: boolean }
  }> {
    const images = this.images
    if (!images) throw new S0Error('not_supported', 'this server does not pull registry images')
    const ref = parseImageRef(image)
    const auth =
      teamId && images.credentials
        ? await images.credentials.forPull(teamId as TeamId, ref.registry)
        : undefined
    return { ref, opts: { auth, insecure: isInsecureRegistry(ref.registry, images.insecureHosts) } }
  }
}

function normMountPath(p: string): string {
  return p.replace(/\/{2,}/g, '/').replace(/\/+$/, '') || '/'
}
