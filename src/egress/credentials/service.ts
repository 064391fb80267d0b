// The credential-source service the API and the proxy use: team-scoped CRUD with roles (admins
// write, every key reads metadata), validation, audit lines without secrets, and resolution
// through a TTL cache that this service invalidates on every write.
import { S0Error } from '../../core/errors.js'
import type { Db } from '../../core/db.js'
import type { TeamId } from '../../core/ids.js'
import type { Logger } from '../../core/log.js'
import type { CredentialBinding } from '../policy/types.js'
import type { SecretKey } from './key.js'
import type { Projection, ResolvedCredential } from './projections.js'
import { CredentialResolver } from './resolve.js'
import { checkSourceName, checkWrite, fieldsOf } from './spec.js'
import { CredentialStore, type CredentialSourceInfo } from './store.js'

/** Who asks: only admin keys may create, change or delete sources. */
export interface CredentialActor {
  role: 'admin' | 'member'
}

export interface CredentialServiceOptions {
  db: Db
  key: SecretKey
  log: Logger
  /** Cache settings of the resolver (tests step its clock). */
  cache?: { ttlMsDefault?: number; ttlMsMax?: number; entriesMax?: number; now?: () => number }
}

export class CredentialSourceService {
  readonly store: CredentialStore
  readonly resolver: CredentialResolver
  private readonly log: Logger

  constructor(opts: CredentialServiceOptions) {
    this.store = new CredentialStore(opts.db, opts.key)
    this.log = opts.log
    this.resolver = new CredentialResolver({
      ...opts.cache,
      load: async (teamId, name) => {
        const s = await this.store.open(teamId, name)
        return {
          name: s.name,
          version: s.version,
          kind: s.resolverKind,
          fields: fieldsOf(s.resolverKind, s.spec),
        }
      },
    })
  }

  list(teamId: TeamId): Promise<CredentialSourceInfo[]> {
    return this.store.list(teamId)
  }

  async get(teamId: TeamId, name: string): Promise<CredentialSourceInfo> {
    return this.store.get(teamId, this.pathName(name))
  }

  /** A new source (version 1). `write` is untrusted input: it is checked here. */
  async create(teamId: TeamId, write: unknown, actor: CredentialActor): Promise<CredentialSourceInfo> {
    requireAdmin(actor, 'create')
    const checked = checkWrite(write)
    const info = await this.store.create(teamId, checked)
    this.resolver.invalidate(teamId, info.name)
    this.audit('credential source created', teamId, info)
    return info
  }

  /** The next version of the source `name`; the body's name is replaced by `name`. */
  async update(
    teamId: TeamId,
    name: string,
    write: unknown,
    actor: CredentialActor,
  ): Promise<CredentialSourceInfo> {
    requireAdmin(actor, 'update')
    const pathName = this.pathName(name)
    const body = typeof write === 'object' && write !== null ? { ...write, name: pathName } : write
    const checked = checkWrite(body)
    const info = await this.store.update(teamId, checked, (current) => {
      if (current.resolverKind !== checked.resolverKind)
        throw new S0Error(
          'invalid_request',
          `resolverKind: is immutable (source ${pathName} is ${current.resolverKind}); delete it and create it again to change the kind`,
          { details: { field: 'resolverKind' } },
        )
    })
    this.resolver.invalidate(teamId, info.name)
    this.audit('credential source updated', teamId, info)
    return info
  }

  async delete(teamId: TeamId, name: string, actor: CredentialActor): Promise<void> {
    requireAdmin(actor, 'delete')
    const pathName = this.pathName(name)
    try {
      await this.store.delete(teamId, pathName)
    } finally {
      this.resolver.invalidate(teamId, pathName)
    }
    this.log.info('credential source deleted', { teamId, name: pathName })
  }

  /** The source's current version, decrypted (see CredentialResolver). */
  resolve(teamId: TeamId, sourceRef: string, opts: { ttl?: string } = {}): Promise<ResolvedCredential> {
    return this.resolver.resolve(teamId, sourceRef, opts)
  }

  /** The binding's projection of its source's current version. */
  resolveBinding(
    teamId: TeamId,
    binding: CredentialBinding,
  ): Promise<{ credential: ResolvedCredential; projection: Projection }> {
    return this.resolver.resolveBinding(teamId, binding)
  }

  /** A name from a URL path: a malformed one cannot exist, so it is a 404 like any other. */
  private pathName(name: string): string {
    try {
      return checkSourceName(name)
    } catch {
      throw new S0Error('credential_source_not_found', `no credential source ${JSON.stringify(name)}`)
    }
  }

  private audit(msg: string, teamId: TeamId, info: CredentialSourceInfo): void {
    // Metadata only: the spec is never logged.
    this.log.info(msg, {
      teamId,
      name: info.name,
      resolverKind: info.resolverKind,
      version: info.currentVersion,
    })
  }
}

function requireAdmin(actor: CredentialActor, action: string): void {
  if (actor.role !== 'admin')
    throw new S0Error('forbidden', `only admin API keys may ${action} credential sources`)
}
