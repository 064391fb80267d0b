// Templates from a sandbox (`POST /templates/from-sandbox`): the sandbox's root file system beyond
// its template is captured as a rootfs snapshot (O(delta): what changed since its last capture,
// deduplicated chunks), then forked (O(1)) into a rootfs volume the new template alone owns, and
// the snapshot is deleted. The new template is the source's template spec plus the overrides, on
// the same lower root file system; its claims fork that volume to seed their writable root, like
// a claim from a snapshot. The volume outlives the source sandbox, is invisible to the snapshot
// API, and is deleted with the template.
//
// Answers by Idempotency-Key: the same key and body give the same template, another body a 409.
import { createHash } from 'node:crypto'
import type { Db } from '../core/db.js'
import { isS0Error, S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { RootfsSnapshotRow, SandboxRow } from './rows.js'
import type { TemplateBuilds } from './template-builds.js'
import type { TemplateCatalog, TemplateCreation, TemplateRow, TemplateSpec } from './templates.js'

export interface FromSandboxRequest {
  template_id: string
  sandbox_id: string
  spec_overrides?: {
    description?: string
    displayName?: string
    tags?: string[]
    pool?: { minIdle?: number; maxIdle?: number }
  }
}

export interface FromSandboxOptions {
  db: Db
  catalog: TemplateCatalog
  builds: TemplateBuilds
  hostId: string
  log: Logger
  getSandbox: (teamId: TeamId, id: string) => Promise<SandboxRow>
  snapshot: (teamId: TeamId, sandboxId: string, meta: { name: string }) => Promise<RootfsSnapshotRow>
  getSnapshot: (teamId: TeamId, id: string) => Promise<RootfsSnapshotRow>
  deleteSnapshot: (teamId: TeamId, id: string) => Promise<void>
  /** A new rootfs volume forked (O(1)) from `volumeId`. */
  forkVolume: (teamId: TeamId, volumeId: string) => Promise<string>
  dropVolume: (teamId: TeamId, volumeId: string) => Promise<void>
}

export class TemplatesFromSandbox {
  constructor(private readonly o: FromSandboxOptions) {}

  async create(teamId: TeamId, req: FromSandboxRequest, idempotencyKey?: string): Promise<TemplateRow> {
    const bodyHash = createHash('sha256')
      .update(JSON.stringify([req.template_id, req.sandbox_id, req.spec_overrides ?? null]))
      .digest('hex')
    if (idempotencyKey !== undefined) {
      const { rows } = await this.o.db.query<{ body_sha256: string; template_id: string }>(
        `SELECT body_sha256, template_id FROM template_idempotency
          WHERE team_id = $1 AND idempotency_key = $2 AND created_at > now() - make_interval(secs => $3::double precision / 1000)`,
        [teamId, idempotencyKey, limits.templateIdempotencyTtlMs],
      )
      const seen = rows[0]
      if (seen && seen.body_sha256 !== bodyHash)
        throw new S0Error('conflict', `Idempotency-Key ${idempotencyKey} was used with another request body`)
      if (seen) return this.o.catalog.get(teamId, seen.template_id)
    }
    const pool = req.spec_overrides?.pool
    if ((pool?.minIdle ?? 0) > 0)
      throw new S0Error(
        'invalid_request',
        'spec_overrides.pool: warm pools are not supported for templates made from a sandbox (minIdle must be 0)',
        { details: { field: 'spec_overrides.pool' } },
      )
    const sandbox = await this.o.getSandbox(teamId, req.sandbox_id)
    const source = await this.o.catalog.get(teamId, sandbox.templateId).catch((err: unknown) => {
      if (isS0Error(err, 'template_not_found')) return undefined // deleted since the claim
      throw err
    })
    const spec: TemplateSpec = { ...(source?.spec ?? {}) }
    const ov = req.spec_overrides ?? {}
    if (ov.description !== undefined) spec['description'] = ov.description
    if (ov.displayName !== undefined) spec['displayName'] = ov.displayName
    if (ov.tags !== undefined) spec['tags'] = ov.tags
    spec['pool'] = { minIdle: 0, maxIdle: 0 }
    const creation: TemplateCreation = {
      state: 'creating',
      stage: 'capturing',
      startedAt: new Date().toISOString(),
      sourceSandboxId: sandbox.id,
    }
    // The lower layer the snapshot's delta is over: the one the sandbox was claimed with.
    const rootfs = sandbox.config.template?.rootfs ?? source?.rootfs ?? { kind: 'debian' as const }
    const row = await this.o.catalog.insertFromSandbox(
      teamId,
      req.template_id,
      spec,
      rootfs,
      source?.driver ?? null,
      creation,
      this.o.hostId,
    )
    if (idempotencyKey !== undefined)
      await this.o.db.query(
        `INSERT INTO template_idempotency (team_id, idempotency_key, body_sha256, template_id)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (team_id, idempotency_key) DO UPDATE SET body_sha256 = EXCLUDED.body_sha256,
           template_id = EXCLUDED.template_id, created_at = now()`,
        [teamId, idempotencyKey, bodyHash, row.id],
      )
    this.o.builds.track(() => this.capture(row, sandbox.id))
    return row
  }

  /** Captures the sandbox into a snapshot, then publishes it. */
  private async capture(row: TemplateRow, sandboxId: string): Promise<void> {
    const creation = row.creation as TemplateCreation
    const teamId = row.teamId as TeamId
    try {
      const snap = await this.o.snapshot(teamId, sandboxId, { name: `template ${row.id}` })
      const captured: TemplateCreation = {
        ...creation,
        stage: 'publishing',
        capturedAt: new Date().toISOString(),
        snapshotId: snap.id,
      }
      if (!(await this.o.catalog.setCreation(row, creation.startedAt, captured))) {
        await this.o.deleteSnapshot(teamId, snap.id) // the template was deleted meanwhile
        return
      }
      await this.publish({ ...row, creation: captured })
    } catch (err) {
      await this.fail(row, creation, err)
    }
  }

  /** After a restart: publishes the snapshot a capture had taken. */
  async resume(row: TemplateRow): Promise<void> {
    try {
      await this.publish(row)
    } catch (err) {
      await this.fail(row, row.creation as TemplateCreation, err)
    }
  }

  /** The snapshot becomes the template's own volume; the snapshot row goes. */
  private async publish(row: TemplateRow): Promise<void> {
    const creation = row.creation as TemplateCreation
    const teamId = row.teamId as TeamId
    const snap = await this.o.getSnapshot(teamId, creation.snapshotId as string)
    const volume = await this.o.forkVolume(teamId, snap.volumeId)
    const done: TemplateCreation = {
      state: 'ready',
      stage: 'publishing',
      startedAt: creation.startedAt,
      ...(creation.capturedAt ? { capturedAt: creation.capturedAt } : {}),
      completedAt: new Date().toISOString(),
      ...(creation.sourceSandboxId ? { sourceSandboxId: creation.sourceSandboxId } : {}),
    }
    if (!(await this.o.catalog.setCreation(row, creation.startedAt, done, { baseVolumeId: volume })))
      await this.o.dropVolume(teamId, volume) // deleted meanwhile
    await this.o.deleteSnapshot(teamId, snap.id).catch((err: unknown) => {
      if (!isS0Error(err, 'not_found')) throw err
    })
    this.o.log.info('template captured from sandbox', { template: row.id, sandbox: creation.sourceSandboxId })
  }

  private async fail(row: TemplateRow, creation: TemplateCreation, err: unknown): Promise<void> {
    const reason = isS0Error(err) ? err.code : 'CaptureFailed'
    await this.o.catalog.setCreation(row, creation.startedAt, {
      ...creation,
      state: 'failed',
      completedAt: new Date().toISOString(),
      reason,
      message: (err as Error).message.slice(0, 2000),
    })
    this.o.log.warn('template from sandbox failed', { template: row.id, reason, err })
  }
}
