// Background template builds: a template written `creating` (a registry image, or a capture of a
// sandbox) is built here while the API has already answered; `status.creation` in Postgres says
// how it goes (the SDK polls it). Builds run in this process; at start a server takes back the
// builds it (or nobody) was running: a pull starts again (it is idempotent, the blob cache keeps
// what was fetched), a capture that had taken its snapshot is published, one that had not fails
// with reason `Interrupted`. A build never stays `creating` past its server's next start.
import { isS0Error } from '../core/errors.js'
import type { Logger } from '../core/log.js'
import { ImagePullError } from '../runtime/image-pull.js'
import { formatImageRef } from '../runtime/image-ref.js'
import type { TemplateCatalog, TemplateCreation, TemplateRow } from './templates.js'

export interface TemplateBuildsOptions {
  catalog: TemplateCatalog
  hostId: string
  log: Logger
  /** Finishes a from-sandbox build after a restart (template-from-sandbox.ts). */
  resumeCapture?: (row: TemplateRow) => Promise<void>
}

export class TemplateBuilds {
  private readonly running = new Set<Promise<void>>()

  constructor(private readonly o: TemplateBuildsOptions) {
    o.catalog.startBuild = (row) => this.pull(row)
  }

  /** Runs `fn` in the background, tracked (close waits for it); its failure is its own to record. */
  track(fn: () => Promise<void>): void {
    const p = fn()
      .catch((err: unknown) => this.o.log.warn('template build failed', { err }))
      .finally(() => this.running.delete(p))
    this.running.add(p)
  }

  /** Pulls the template's registry image and records the digest; failure is `failed` with a reason. */
  pull(row: TemplateRow): void {
    const creation = row.creation
    if (row.rootfs.kind !== 'registry' || creation?.state !== 'creating') return
    const rootfs = row.rootfs
    const startedAt = creation.startedAt
    const catalog = this.o.catalog
    this.track(async () => {
      try {
        await catalog.setCreation(
          row,
          startedAt,
          { ...creation, stage: 'capturing' },
          { buildHost: this.o.hostId },
        )
        const { ref, opts } = await catalog.pullOptions(rootfs.teamId, rootfs.image)
        const digest = await catalog.images!.puller.resolve(ref, opts)
        await catalog.images!.puller.pull(ref, digest, opts)
        // Into the chunk engine too (a no-op when the pull just did it): other hosts read it from there.
        await catalog.images!.puller.ensureStored(digest)
        const done: TemplateCreation = {
          state: 'ready',
          stage: 'publishing',
          startedAt,
          capturedAt: new Date().toISOString(),
          completedAt: new Date().toISOString(),
          outputImage: formatImageRef(ref, { digest }),
        }
        await catalog.setCreation(row, startedAt, done, { rootfs: { ...rootfs, digest } })
        this.o.log.info('template ready', { template: row.id, image: done.outputImage })
      } catch (err) {
        const reason = err instanceof ImagePullError ? err.reason : isS0Error(err) ? err.code : 'BuildFailed'
        await catalog.setCreation(row, startedAt, {
          ...creation,
          state: 'failed',
          completedAt: new Date().toISOString(),
          reason,
          message: (err as Error).message.slice(0, 2000),
        })
        this.o.log.warn('template build failed', { template: row.id, reason })
      }
    })
  }

  /** Takes back this host's builds still `creating` (at start). */
  async resume(): Promise<void> {
    for (const row of await this.o.catalog.creatingOn(this.o.hostId)) {
      const creation = row.creation as TemplateCreation
      if (row.rootfs.kind === 'registry') this.pull(row)
      else if (creation.snapshotId && this.o.resumeCapture) {
        const finish = this.o.resumeCapture
        this.track(() => finish(row))
      } else
        await this.o.catalog.setCreation(row, creation.startedAt, {
          ...creation,
          state: 'failed',
          completedAt: new Date().toISOString(),
          reason: 'Interrupted',
          message:
            'the server restarted while it captured the sandbox; delete the template and create it again',
        })
    }
  }

  /** Resolves when no build is running (close, tests). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running])
  }
}
