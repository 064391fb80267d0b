// Resolution of a binding's source for the proxy: the current version, decrypted, reused for a
// bounded time (the binding's cachePolicy.ttl, capped by limits.credentialCacheTtlMsMax). A write
// or delete in this process invalidates at once; other processes see it within the TTL.
import type { TeamId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { CredentialBinding } from '../policy/types.js'
import { project, type Projection, type ResolvedCredential } from './projections.js'
import { parseGoDurationMs } from './template.js'

export interface ResolverOptions {
  /** The source's current version, decrypted; throws `credential_source_not_found` when absent. */
  load(teamId: TeamId, name: string): Promise<ResolvedCredential>
  ttlMsDefault?: number
  ttlMsMax?: number
  entriesMax?: number
  /** A monotonic clock in ms (tests step it). */
  now?: () => number
}

interface Entry {
  value: ResolvedCredential
  loadedAtMs: number
}

export class CredentialResolver {
  private readonly entries = new Map<string, Entry>()
  private readonly inflight = new Map<string, { epoch: number; promise: Promise<ResolvedCredential> }>()
  /** Bumped by every invalidation: a load that started before one is not cached. */
  private epoch = 0
  private readonly ttlMsDefault: number
  private readonly ttlMsMax: number
  private readonly entriesMax: number
  private readonly now: () => number

  constructor(private readonly opts: ResolverOptions) {
    this.ttlMsMax = opts.ttlMsMax ?? limits.credentialCacheTtlMsMax
    this.ttlMsDefault = Math.min(opts.ttlMsDefault ?? limits.credentialCacheTtlMsDefault, this.ttlMsMax)
    this.entriesMax = opts.entriesMax ?? limits.credentialCacheEntriesMax
    this.now = opts.now ?? (() => performance.now())
  }

  /** The TTL a binding's `cachePolicy.ttl` means here (a Go duration; unset: the default). */
  ttlMs(ttl: string | undefined): number {
    if (ttl === undefined || ttl.trim() === '') return this.ttlMsDefault
    return Math.min(parseGoDurationMs(ttl), this.ttlMsMax)
  }

  /** The source `sourceRef` of the team, at most `ttl` old. */
  async resolve(teamId: TeamId, sourceRef: string, opts: { ttl?: string } = {}): Promise<ResolvedCredential> {
    const ttlMs = this.ttlMs(opts.ttl)
    const key = `${teamId}\0${sourceRef}`
    const hit = this.entries.get(key)
    if (hit && this.now() - hit.loadedAtMs < ttlMs) {
      this.entries.delete(key) // least recently used goes first
      this.entries.set(key, hit)
      return hit.value
    }
    const joined = this.inflight.get(key)
    if (joined && joined.epoch === this.epoch) return joined.promise
    const epoch = this.epoch
    const startedMs = this.now()
    const promise = this.opts.load(teamId, sourceRef).then(
      (loaded) => {
        const value = Object.freeze({ ...loaded, fields: Object.freeze({ ...loaded.fields }) })
        if (this.inflight.get(key)?.promise === promise) this.inflight.delete(key)
        if (epoch === this.epoch) this.remember(key, { value, loadedAtMs: startedMs })
        return value
      },
      (err: unknown) => {
        if (this.inflight.get(key)?.promise === promise) this.inflight.delete(key)
        throw err
      },
    )
    this.inflight.set(key, { epoch, promise })
    return promise
  }

  /** Resolves the binding's source and applies its projection. */
  async resolveBinding(
    teamId: TeamId,
    binding: CredentialBinding,
  ): Promise<{ credential: ResolvedCredential; projection: Projection }> {
    const credential = await this.resolve(teamId, binding.sourceRef, { ttl: binding.cachePolicy?.ttl })
    return { credential, projection: project(binding, credential) }
  }

  /** Forgets the source (it was written or deleted): the next resolve reads it again. */
  invalidate(teamId: TeamId, name: string): void {
    this.epoch++
    const key = `${teamId}\0${name}`
    this.entries.delete(key)
    this.inflight.delete(key)
  }

  clear(): void {
    this.epoch++
    this.entries.clear()
    this.inflight.clear()
  }

  get size(): number {
    return this.entries.size
  }

  private remember(key: string, entry: Entry): void {
    this.entries.delete(key)
    this.entries.set(key, entry)
    while (this.entries.size > this.entriesMax) {
      const oldest = this.entries.keys().next().value as string
      this.entries.delete(oldest)
    }
  }
}
