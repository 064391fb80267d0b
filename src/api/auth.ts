// API keys: creation, listing, revocation, first-start bootstrap and bearer authentication.
// Only sha256(key) is stored; successful lookups are cached briefly so a request costs no query.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, rename, writeFile, chmod } from 'node:fs/promises'
import path from 'node:path'
import { LRUCache } from 'lru-cache'
import type { PoolClient } from 'pg'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { newApiKeyId, newTeamId, type ApiKeyId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'

export const API_KEY_PREFIX = 's0_'
const API_KEY_RANDOM_BYTES = 32
// 's0_' + base64url(32 bytes) = 3 + 43 characters; anything else is refused without a query.
const API_KEY_PATTERN = /^s0_[A-Za-z0-9_-]{43}$/
// Enough to tell keys apart in a listing, far too little to guess the rest.
const KEY_PREFIX_CHARS = 11
/** A revoked key keeps working on other processes for at most this long. */
export const AUTH_CACHE_TTL_MS = 10_000
const AUTH_CACHE_ENTRIES_MAX = 10_000
const BOOTSTRAP_LOCK_KEY = 0x5330_0002
export const TOKEN_FILE_NAME = 'token'
export const DEFAULT_TEAM_NAME = 'default'

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
}

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
    cache = new LRUCache<string, AuthContext>({ max: AUTH_CACHE_ENTRIES_MAX, ttl: AUTH_CACHE_TTL_MS })
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
  const { rows } = await db.query<{ id: string; team_id: string; role: string }>(
    `UPDATE api_keys SET last_used_at = now()
      WHERE key_hash = $1 AND revoked_at IS NULL
      RETURNING id, team_id, role`,
    [hash],
  )
  const row = rows[0]
  if (!row || !isApiKeyRole(row.role)) throw new S0Error('unauthorized', 'invalid or revoked API key')
  const ctx: AuthContext = { teamId: row.team_id as TeamId, keyId: row.id as ApiKeyId, role: row.role }
  cache.set(cacheKey, ctx)
  return ctx
}

export interface CreateApiKeyOptions {
  teamId: TeamId
  name: string
  role: ApiKeyRole
}

/** Creates a key; the returned `key` is the only copy of the secret. */
export async function createApiKey(
  db: Db,
  opts: CreateApiKeyOptions,
): Promise<{ id: ApiKeyId; key: string }> {
  return db.tx((c) => insertApiKey(c, opts))
}

async function insertApiKey(
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
    'INSERT INTO api_keys (id, team_id, name, role, key_hash, key_prefix) VALUES ($1, $2, $3, $4, $5, $6)',
    [id, opts.teamId, opts.name, opts.role, hashApiKey(key), key.slice(0, KEY_PREFIX_CHARS)],
  )
  return { id, key }
}

/** Keys (never their secrets), oldest first; all teams when `teamId` is omitted. */
export async function listApiKeys(db: Db, teamId?: TeamId): Promise<ApiKeyInfo[]> {
  const { rows } = await db.query<ApiKeyRow>(
    `SELECT id, team_id, name, role, key_prefix, created_at, last_used_at, revoked_at
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
  }
}

/**
 * Revokes a key (idempotent). This process refuses it at once; other processes sharing the
 * database refuse it within AUTH_CACHE_TTL_MS.
 */
export async function revokeApiKey(db: Db, id: string): Promise<ApiKeyInfo> {
  const { rows } = await db.query<ApiKeyRow>(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
      RETURNING id, team_id, name, role, key_prefix, created_at, last_used_at, revoked_at`,
    [id],
  )
  const row = rows[0]
  if (!row) throw new S0Error('not_found', `API key ${id} not found`)
  const cache = cacheFor(db)
  for (const [k, ctx] of cache.entries()) if (ctx.keyId === id) cache.delete(k)
  return toInfo(row)
}

export interface BootstrapResult {
  /** Set only on the start that created the default team; the admin key is shown once. */
  created?: { teamId: TeamId; keyId: ApiKeyId; key: string; tokenFile: string }
}

export interface BootstrapOptions {
  /** Where the one-time key line goes (default stdout). */
  print?: (line: string) => void
}

/**
 * On the first start (no teams yet): creates the default team and an admin key, writes the key
 * to `$stateDir/token` (mode 0600) and prints it once. Later starts do nothing.
 */
export async function ensureBootstrap(
  db: Db,
  stateDir: string,
  log: Logger,
  opts: BootstrapOptions = {},
): Promise<BootstrapResult> {
  const tokenFile = path.join(stateDir, TOKEN_FILE_NAME)
  const created = await db.tx(async (c) => {
    // Two servers starting together on one database must not both bootstrap.
    await c.query('SELECT pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK_KEY])
    const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM teams')
    if ((rows[0]?.n ?? 0) > 0) return undefined
    const teamId = newTeamId()
    await c.query('INSERT INTO teams (id, name) VALUES ($1, $2)', [teamId, DEFAULT_TEAM_NAME])
    const { id, key } = await insertApiKey(c, { teamId, name: 'bootstrap admin', role: 'admin' })
    // The file is written before COMMIT: if the write fails, no key exists that nobody can read.
    await writeTokenFile(tokenFile, key)
    return { teamId, keyId: id, key, tokenFile }
  })
  if (!created) return {}
  log.info('bootstrap: created default team and admin API key', {
    teamId: created.teamId,
    keyId: created.keyId,
    tokenFile,
  })
  const print = opts.print ?? ((line: string) => void process.stdout.write(line))
  print(`admin API key: ${created.key}\n(also saved to ${tokenFile}; it is not shown again)\n`)
  return { created }
}

async function writeTokenFile(file: string, key: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, key + '\n', { mode: 0o600 })
  // writeFile's mode applies only to new files; a leftover temp file may have other bits.
  await chmod(tmp, 0o600)
  await rename(tmp, file)
}

export interface TeamInfo {
  id: TeamId
  name: string
  createdAt: Date
}

/** All teams, oldest first (the CLI resolves `--team` against these). */
export async function listTeams(db: Db): Promise<TeamInfo[]> {
  const { rows } = await db.query<{ id: string; name: string; created_at: Date }>(
    'SELECT id, name, created_at FROM teams ORDER BY created_at, id',
  )
  return rows.map((r) => ({ id: r.id as TeamId, name: r.name, createdAt: r.created_at }))
}
