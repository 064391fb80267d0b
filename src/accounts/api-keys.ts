// API keys: creation, listing, revocation and bearer authentication. Only sha256(key) is stored;
// successful lookups are cached briefly so a request costs no query.
import { createHash, randomBytes } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { PoolClient } from 'pg'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { newApiKeyId, type ApiKeyId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'

export const API_KEY_PREFIX = 's0_'
const API_KEY_RANDOM_BYTES = 32
// 's0_' + base64url(32 bytes) = 3 + 43 characters; anything else is refused without a query.
const API_KEY_PATTERN = /^s0_[A-Za-z0-9_-]{43}$/
// Enough to tell keys apart in a listing, far too little to guess the rest.
const KEY_PREFIX_CHARS = 11

export type ApiKeyRole = 'admin' | 'member'
export const API_KEY_ROLES: readonly ApiKeyRole[] = ['admin', 'member']

export function isApiKeyRole(value: string): value is ApiKeyRole {
  return (API_KEY_ROLES as readonly string[]).includes(value)
}

/** Who is calling: the result of a successful `authenticate`. */
export interface AuthContext {
  readonly teamId: TeamId
  readonly keyId: ApiKeyId
  readonly role: ApiKeyRole
}

export interface ApiKeyInfo {
  id: ApiKeyId
  teamId: TeamId
  name: string
  role: ApiKeyRole
  keyPrefix: string
  createdAt: Date
  lastUsedAt: Date | null
  revokedAt: Date | null
  /** null: never expires. */
  expiresAt: Date | null
  /** The key that created it, or `system` (bootstrap, the CLI). */
  createdBy: string
  updatedAt: Date
}

interface ApiKeyRow {
  id: string
  team_id: string
  name: string
  role: string
  key_prefix: string
  created_at: Date
  last_used_at: Date | null
  revoked_at: Date | null
  expires_at: Date | null
  created_by: string
  updated_at: Date
}

const KEY_COLUMNS =
  'id, team_id, name, role, key_prefix, created_at, last_used_at, revoked_at, expires_at, created_by, updated_at'

export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(API_KEY_RANDOM_BYTES).toString('base64url')
}

export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest()
}

// One cache per database handle, so tests (and any process with two databases) never share entries.
const caches = new WeakMap<Db, LRUCache<string, AuthContext>>()

function cacheFor(db: Db): LRUCache<string, AuthContext> {
  let cache = caches.get(db)
  if (!cache) {
    cache = new LRUCache<string, AuthContext>({ max: limits.authCacheEntriesMax, ttl: limits.authCacheTtlMs })
    caches.set(db, cache)
  }
  return cache
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function parseBearer(header: string | undefined): string | undefined {
  if (!header) return undefined
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  return match?.[1]
}

/** Resolves a bearer token to its team and key; throws `unauthorized` for anything else. */
export async function authenticate(db: Db, bearerToken: string | undefined): Promise<AuthContext> {
  if (!bearerToken)
    throw new S0Error('unauthorized', 'missing bearer token (Authorization: Bearer <API key>)')
  if (!API_KEY_PATTERN.test(bearerToken)) throw new S0Error('unauthorized', 'invalid API key')
  const hash = hashApiKey(bearerToken)
  const cacheKey = hash.toString('base64')
  const cache = cacheFor(db)
  const hit = cache.get(cacheKey)
  if (hit) return hit

  // The lookup also records last use; with the cache that is at most one write per key per TTL.
  const { rows } = await db.query<{ id: string; team_id: string; role: string; expires_at: Date | null }>(
    `UPDATE api_keys SET last_used_at = now()
      WHERE key_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
      RETURNING id, team_id, role, expires_at`,
    [hash],
  )
  const row = rows[0]
  if (!row || !isApiKeyRole(row.role)) throw new S0Error('unauthorized', 'invalid or revoked API key')
  const ctx: AuthContext = { teamId: row.team_id as TeamId, keyId: row.id as ApiKeyId, role: row.role }
  // An expiring key is cached no longer than it lives.
  const ttl = row.expires_at
    ? Math.min(limits.authCacheTtlMs, row.expires_at.getTime() - Date.now())
    : undefined
  if (ttl === undefined || ttl > 0) cache.set(cacheKey, ctx, ttl === undefined ? undefined : { ttl })
  return ctx
}

export interface CreateApiKeyOptions {
  teamId: TeamId
  name: string
  role: ApiKeyRole
  /** The key that creates it (default `system`). */
  createdBy?: string
  /** Unset: never expires. */
  expiresAt?: Date
}

/** Creates a key; the returned `key` is the only copy of the secret. */
export async function createApiKey(
  db: Db,
  opts: CreateApiKeyOptions,
): Promise<{ id: ApiKeyId; key: string }> {
  return db.tx((c) => insertApiKey(c, opts))
}

/** Inserts a key inside the caller's transaction (bootstrap creates the team and its key in one). */
export async function insertApiKey(
  c: PoolClient,
  opts: CreateApiKeyOptions,
): Promise<{ id: ApiKeyId; key: string }> {
  if (opts.name.length === 0 || opts.name.length > 200) {
    throw new S0Error('invalid_request', 'API key name must be 1 to 200 characters')
  }
  // Locking the team row serialises concurrent creates, so the per-team bound holds.
  const team = await c.query('SELECT id FROM teams WHERE id = $1 FOR UPDATE', [opts.teamId])
  if (team.rowCount === 0) throw new S0Error('not_found', `team ${opts.teamId} not found`)
  const { rows } = await c.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM api_keys WHERE team_id = $1 AND revoked_at IS NULL',
    [opts.teamId],
  )
  if ((rows[0]?.n ?? 0) >= limits.apiKeysPerTeamMax) {
    throw new S0Error(
      'quota_exceeded',
      `team ${opts.teamId} already has ${limits.apiKeysPerTeamMax} active API keys`,
    )
  }
  const id = newApiKeyId()
  const key = generateApiKey()
  await c.query(
    `INSERT INTO api_keys (id, team_id, name, role, key_hash, key_prefix, created_by, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      id,
      opts.teamId,
      opts.name,
      opts.role,
      hashApiKey(key),
      key.slice(0, KEY_PREFIX_CHARS),
      opts.createdBy ?? 'system',
      opts.expiresAt ?? null,
    ],
  )
  return { id, key }
}

/** Keys (never their secrets), oldest first; all teams when `teamId` is omitted. */
export async function listApiKeys(db: Db, teamId?: TeamId): Promise<ApiKeyInfo[]> {
  const { rows } = await db.query<ApiKeyRow>(
    `SELECT ${KEY_COLUMNS}
       FROM api_keys WHERE ($1::text IS NULL OR team_id = $1) ORDER BY created_at, id`,
    [teamId ?? null],
  )
  return rows.map(toInfo)
}

function toInfo(r: ApiKeyRow): ApiKeyInfo {
  return {
    id: r.id as ApiKeyId,
    teamId: r.team_id as TeamId,
    name: r.name,
    role: isApiKeyRole(r.role) ? r.role : 'member',
    keyPrefix: r.key_prefix,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at,
    expiresAt: r.expires_at,
    createdBy: r.created_by,
    updatedAt: r.updated_at,
  }
}

/**
 * Revokes a key (idempotent). This process refuses it at once; other processes sharing the
 * database refuse it within limits.authCacheTtlMs.
 */
export async function revokeApiKey(db: Db, id: string, teamId?: TeamId): Promise<ApiKeyInfo> {
  const { rows } = await db.query<ApiKeyRow>(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), updated_at = now()
      WHERE id = $1 AND ($2::text IS NULL OR team_id = $2)
      RETURNING ${KEY_COLUMNS}`,
    [id, teamId ?? null],
  )
  const row = rows[0]
  if (!row) throw new S0Error('not_found', `API key ${id} not found`)
  forgetKeys(db, (ctx) => ctx.keyId === id)
  return toInfo(row)
}

/** One key of the team (another team's key is `not_found`). */
export async function getApiKey(db: Db, teamId: TeamId, id: string): Promise<ApiKeyInfo> {
  const { rows } = await db.query<ApiKeyRow>(
    `SELECT ${KEY_COLUMNS} FROM api_keys WHERE id = $1 AND team_id = $2`,
    [id, teamId],
  )
  const row = rows[0]
  if (!row) throw new S0Error('not_found', `API key ${id} not found`)
  return toInfo(row)
}

/** Removes a key of the team for good (it stops working as a revoke does). */
export async function deleteApiKey(db: Db, teamId: TeamId, id: string): Promise<void> {
  const res = await db.query('DELETE FROM api_keys WHERE id = $1 AND team_id = $2', [id, teamId])
  if (res.rowCount === 0) throw new S0Error('not_found', `API key ${id} not found`)
  forgetKeys(db, (ctx) => ctx.keyId === id)
}

/** Drops cached authentications (this process) that match: they are looked up again. */
export function forgetKeys(db: Db, match: (ctx: AuthContext) => boolean): void {
  const cache = cacheFor(db)
  for (const [k, ctx] of cache.entries()) if (match(ctx)) cache.delete(k)
}
