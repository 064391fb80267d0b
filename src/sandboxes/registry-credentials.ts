// A team's private registry credentials (one per registry host): the password sealed with the
// server secret key like credential sources (AES-256-GCM, the row's team and registry as
// associated data, so a sealed value moved to another row does not open). The API lists what was
// stored (registry, username, times), never the password; template pulls open it for skopeo.
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { SecretKey } from '../egress/credentials/key.js'
import { openBytes, sealBytes } from '../egress/credentials/seal.js'
import type { RegistryAuth } from '../runtime/image-pull.js'

export interface RegistryCredentialInfo {
  registry: string
  username: string
  createdAt: Date
  updatedAt: Date
}

interface Row {
  registry: string
  username: string
  key_id: string
  nonce: Buffer
  ciphertext: Buffer
  tag: Buffer
  created_at: Date
  updated_at: Date
}

/** host[:port], lowercase: what an image reference names as its registry. */
const REGISTRY = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?$/

function context(teamId: TeamId, registry: string): string[] {
  return ['s0-registry-credential', '1', teamId, registry]
}

function info(r: Row): RegistryCredentialInfo {
  return { registry: r.registry, username: r.username, createdAt: r.created_at, updatedAt: r.updated_at }
}

/** `docker.io` for Docker Hub's aliases; the host otherwise, lowercased. */
export function normaliseRegistry(text: string): string {
  let r = text
    .trim()
    .toLowerCase()
    .replace(/^https?:\/\//, '')
    .replace(/\/+$/, '')
  if (r === 'index.docker.io' || r === 'registry-1.docker.io' || r === 'docker.io/v1') r = 'docker.io'
  if (!REGISTRY.test(r))
    throw new S0Error('invalid_request', `registry ${JSON.stringify(text)} must be a host name[:port]`, {
      details: { field: 'registry' },
    })
  return r
}

export class RegistryCredentials {
  constructor(private readonly o: { db: Db; key: SecretKey }) {}

  /** Stores (or replaces) the team's credential for `registry`. */
  async put(
    teamId: TeamId,
    registryText: string,
    username: string,
    password: string,
  ): Promise<RegistryCredentialInfo> {
    const registry = normaliseRegistry(registryText)
    const sealed = sealBytes(this.o.key, Buffer.from(password, 'utf8'), context(teamId, registry))
    return this.o.db.tx(async (c) => {
      const n = await c.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM registry_credentials WHERE team_id = $1 AND registry <> $2`,
        [teamId, registry],
      )
      if ((n.rows[0]?.n ?? 0) >= limits.registryCredentialsPerTeamMax)
        throw new S0Error(
          'quota_exceeded',
          `a team may store credentials for at most ${limits.registryCredentialsPerTeamMax} registries`,
        )
      const { rows } = await c.query<Row>(
        `INSERT INTO registry_credentials (team_id, registry, username, key_id, nonce, ciphertext, tag)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (team_id, registry) DO UPDATE SET username = EXCLUDED.username,
           key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext,
           tag = EXCLUDED.tag, updated_at = now()
         RETURNING *`,
        [teamId, registry, username, sealed.keyId, sealed.nonce, sealed.ciphertext, sealed.tag],
      )
      return info(rows[0] as Row)
    })
  }

  async list(teamId: TeamId): Promise<RegistryCredentialInfo[]> {
    const { rows } = await this.o.db.query<Row>(
      `SELECT * FROM registry_credentials WHERE team_id = $1 ORDER BY registry`,
      [teamId],
    )
    return rows.map(info)
  }

  async delete(teamId: TeamId, registryText: string): Promise<void> {
    const registry = normaliseRegistry(registryText)
    const r = await this.o.db.query(`DELETE FROM registry_credentials WHERE team_id = $1 AND registry = $2`, [
      teamId,
      registry,
    ])
    if (!r.rowCount) throw new S0Error('not_found', `no registry credential for ${registry}`)
  }

  /** The team's credential for a pull from `registry`, opened; undefined when it stored none. */
  async forPull(teamId: TeamId, registry: string): Promise<RegistryAuth | undefined> {
    const { rows } = await this.o.db.query<Row>(
      `SELECT * FROM registry_credentials WHERE team_id = $1 AND registry = $2`,
      [teamId, registry],
    )
    const r = rows[0]
    if (!r) return undefined
    const password = openBytes(
      this.o.key,
      { keyId: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext, tag: r.tag },
      context(teamId, registry),
    ).toString('utf8')
    return { username: r.username, password }
  }
}
