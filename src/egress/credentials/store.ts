// Credential sources in Postgres: one metadata row per (team, name) and sealed versions of the
// secret spec (migrations/0006). Every write is one transaction: the new version row, the bumped
// current version, and the pruning of versions beyond limits.credentialVersionsKept.
import type pg from 'pg'
import { S0Error } from '../../core/errors.js'
import type { Db } from '../../core/db.js'
import type { TeamId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { CredentialSourceSpec, CredentialSourceWrite, ResolverKind } from '../policy/types.js'
import type { SecretKey } from './key.js'
import { open, seal } from './seal.js'

/** What may be shown of a source: never its spec. */
export interface CredentialSourceInfo {
  name: string
  resolverKind: ResolverKind
  currentVersion: number
  status: 'active'
  createdAt: Date
  updatedAt: Date
}

/** A source's current version, opened. */
export interface OpenedSource {
  name: string
  resolverKind: ResolverKind
  version: number
  spec: CredentialSourceSpec
}

interface InfoRow {
  name: string
  resolver_kind: ResolverKind
  current_version: number
  status: 'active'
  created_at: Date
  updated_at: Date
}

const INFO_COLUMNS = 'name, resolver_kind, current_version, status, created_at, updated_at'

function toInfo(r: InfoRow): CredentialSourceInfo {
  return {
    name: r.name,
    resolverKind: r.resolver_kind,
    currentVersion: r.current_version,
    status: r.status,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

export function notFound(name: string): S0Error {
  return new S0Error('credential_source_not_found', `no credential source ${JSON.stringify(name)}`)
}

export class CredentialStore {
  constructor(
    private readonly db: Db,
    private readonly key: SecretKey,
  ) {}

  async list(teamId: TeamId): Promise<CredentialSourceInfo[]> {
    const { rows } = await this.db.query<InfoRow>(
      `SELECT ${INFO_COLUMNS} FROM credential_sources WHERE team_id = $1 ORDER BY name`,
      [teamId],
    )
    return rows.map(toInfo)
  }

  async get(teamId: TeamId, name: string): Promise<CredentialSourceInfo> {
    const { rows } = await this.db.query<InfoRow>(
      `SELECT ${INFO_COLUMNS} FROM credential_sources WHERE team_id = $1 AND name = $2`,
      [teamId, name],
    )
    const row = rows[0]
    if (!row) throw notFound(name)
    return toInfo(row)
  }

  /** A new source at version 1; `conflict` when the team has one of that name. */
  async create(teamId: TeamId, write: CredentialSourceWrite): Promise<CredentialSourceInfo> {
    return this.db.tx(async (c) => {
      // Serialises the team's creates, so that the count below is a real bound.
      await c.query('SELECT 1 FROM teams WHERE id = $1 FOR UPDATE', [teamId])
      const count = await c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM credential_sources WHERE team_id = $1',
        [teamId],
      )
      if ((count.rows[0]?.n ?? 0) >= limits.credentialSourcesPerTeamMax)
        throw new S0Error(
          'quota_exceeded',
          `a team may have at most ${limits.credentialSourcesPerTeamMax} credential sources`,
        )
      const { rows } = await c.query<InfoRow>(
        `INSERT INTO credential_sources (team_id, name, resolver_kind, current_version)
         VALUES ($1, $2, $3, 1) ON CONFLICT DO NOTHING RETURNING ${INFO_COLUMNS}`,
        [teamId, write.name, write.resolverKind],
      )
      const row = rows[0]
      if (!row) throw new S0Error('conflict', `credential source ${write.name} already exists`)
      await this.insertVersion(c, teamId, write, 1)
      return toInfo(row)
    })
  }

  /**
   * The next version of an existing source. `check(current)` runs under the row lock before
   * anything is written (the kind is immutable).
   */
  async update(
    teamId: TeamId,
    write: CredentialSourceWrite,
    check: (current: CredentialSourceInfo) => void,
  ): Promise<CredentialSourceInfo> {
    return this.db.tx(async (c) => {
      const cur = await c.query<InfoRow>(
        `SELECT ${INFO_COLUMNS} FROM credential_sources WHERE team_id = $1 AND name = $2 FOR UPDATE`,
        [teamId, write.name],
      )
      const current = cur.rows[0]
      if (!current) throw notFound(write.name)
      check(toInfo(current))
      const version = current.current_version + 1
      await this.insertVersion(c, teamId, write, version)
      const { rows } = await c.query<InfoRow>(
        `UPDATE credential_sources SET current_version = $3, updated_at = now()
         WHERE team_id = $1 AND name = $2 RETURNING ${INFO_COLUMNS}`,
        [teamId, write.name, version],
      )
      await c.query(
        'DELETE FROM credential_source_versions WHERE team_id = $1 AND name = $2 AND version <= $3',
        [teamId, write.name, version - limits.credentialVersionsKept],
      )
      return toInfo(rows[0] as InfoRow)
    })
  }

  /** Deletes the source and every sealed version of it. */
  async delete(teamId: TeamId, name: string): Promise<void> {
    const { rowCount } = await this.db.query(
      'DELETE FROM credential_sources WHERE team_id = $1 AND name = $2',
      [teamId, name],
    )
    if (!rowCount) throw notFound(name)
  }

  /** The current version, decrypted; `credential_source_not_found` when there is none. */
  async open(teamId: TeamId, name: string): Promise<OpenedSource> {
    const { rows } = await this.db.query<{
      resolver_kind: ResolverKind
      version: number
      key_id: string
      nonce: Buffer
      ciphertext: Buffer
      tag: Buffer
    }>(
      `SELECT s.resolver_kind, v.version, v.key_id, v.nonce, v.ciphertext, v.tag
       FROM credential_sources s
       JOIN credential_source_versions v
         ON v.team_id = s.team_id AND v.name = s.name AND v.version = s.current_version
       WHERE s.team_id = $1 AND s.name = $2`,
      [teamId, name],
    )
    const r = rows[0]
    if (!r) throw notFound(name)
    const row = { teamId, name, version: r.version, resolverKind: r.resolver_kind }
    const plain = open(
      this.key,
      { keyId: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag },
      row,
    )
    const spec = JSON.parse(plain.toString('utf8')) as CredentialSourceSpec
    plain.fill(0)
    return { name, resolverKind: r.resolver_kind, version: r.version, spec }
  }

  private async insertVersion(
    c: pg.PoolClient,
    teamId: TeamId,
    write: CredentialSourceWrite,
    version: number,
  ): Promise<void> {
    const plain = Buffer.from(JSON.stringify(write.spec), 'utf8')
    const sealed = seal(this.key, plain, {
      teamId,
      name: write.name,
      version,
      resolverKind: write.resolverKind,
    })
    plain.fill(0)
    await c.query(
      `INSERT INTO credential_source_versions (team_id, name, version, key_id, nonce, ciphertext, tag)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [teamId, write.name, version, sealed.keyId, sealed.nonce, sealed.ciphertext, sealed.tag],
    )
  }
}
