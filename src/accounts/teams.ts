// Teams: the tenants every object belongs to (another team's objects are not found). A team made
// through the API has a parent, the team of the admin key that made it: the parent's admins
// manage it (keys, quotas, rename, delete); a team sees itself and the teams it made, nothing else.
import type { Db, Queryable } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { newTeamId, randomHexId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { forgetKeys } from './api-keys.js'

export interface TeamInfo {
  id: TeamId
  name: string
  /** null for teams made before slugs (the wire shows the id). */
  slug: string | null
  /** The team whose admins manage this one; null for a root team (bootstrap, `s0 apikey`). */
  parentTeamId: TeamId | null
  createdAt: Date
  updatedAt: Date
}

interface TeamRow {
  id: string
  name: string
  slug: string | null
  parent_team_id: string | null
  created_at: Date
  updated_at: Date
}

const COLUMNS = 'id, name, slug, parent_team_id, created_at, updated_at'
const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/

function toInfo(r: TeamRow): TeamInfo {
  return {
    id: r.id as TeamId,
    name: r.name,
    slug: r.slug,
    parentTeamId: r.parent_team_id as TeamId | null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

/** All teams, oldest first (the CLI resolves `--team` against these). */
export async function listTeams(db: Db): Promise<TeamInfo[]> {
  const { rows } = await db.query<TeamRow>(`SELECT ${COLUMNS} FROM teams ORDER BY created_at, id`)
  return rows.map(toInfo)
}

/** What a key of `teamId` sees: its own team first, then the teams it made, oldest first. */
export async function listVisibleTeams(db: Db, teamId: TeamId): Promise<TeamInfo[]> {
  const { rows } = await db.query<TeamRow>(
    `SELECT ${COLUMNS} FROM teams WHERE id = $1 OR parent_team_id = $1
      ORDER BY (id = $1) DESC, created_at, id`,
    [teamId],
  )
  return rows.map(toInfo)
}

/**
 * A team a key of `callerTeam` may see: its own, or one its team made. With `manage`, only a team
 * it made — or its own when `ownToo` — may be changed. Anything else is `not_found`.
 */
export async function visibleTeam(db: Queryable, callerTeam: TeamId, id: string): Promise<TeamInfo> {
  const { rows } = await db.query<TeamRow>(
    `SELECT ${COLUMNS} FROM teams WHERE id = $1 AND (id = $2 OR parent_team_id = $2)`,
    [id, callerTeam],
  )
  const row = rows[0]
  if (!row) throw new S0Error('not_found', `team ${id} not found`)
  return toInfo(row)
}

function checkName(name: string): string {
  const n = name.trim()
  if (n.length === 0 || n.length > 200)
    throw new S0Error('invalid_request', 'team name must be 1 to 200 characters')
  return n
}

function checkSlug(slug: string): string {
  if (!SLUG.test(slug))
    throw new S0Error(
      'invalid_request',
      'slug must be 1 to 64 lowercase letters, digits and dashes, starting and ending with a letter or digit',
    )
  return slug
}

/** A slug made of the name, made unique with a random suffix when taken. */
function slugOf(name: string): string {
  const base = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 50)
    .replace(/-+$/, '')
  return base === '' ? `team-${randomHexId(3)}` : base
}

function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown }).code === '23505'
}

/** Creates a team; `parentTeamId` (the creator's team) manages it. */
export async function createTeam(
  db: Db,
  opts: { name: string; slug?: string; parentTeamId: TeamId | null },
): Promise<TeamInfo> {
  const name = checkName(opts.name)
  const explicit = opts.slug !== undefined ? checkSlug(opts.slug) : undefined
  return db.tx(async (c) => {
    if (opts.parentTeamId !== null) {
      // The parent's row lock serialises its creates, so the per-parent bound holds.
      await c.query('SELECT id FROM teams WHERE id = $1 FOR UPDATE', [opts.parentTeamId])
      const { rows } = await c.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM teams WHERE parent_team_id = $1',
        [opts.parentTeamId],
      )
      if ((rows[0]?.n ?? 0) >= limits.teamsPerParentMax)
        throw new S0Error('quota_exceeded', `a team may create at most ${limits.teamsPerParentMax} teams`)
    }
    const candidates = explicit
      ? [explicit]
      : [slugOf(name), `${slugOf(name).slice(0, 50)}-${randomHexId(3)}`]
    for (const slug of candidates) {
      try {
        await c.query('SAVEPOINT slug')
        const { rows } = await c.query<TeamRow>(
          `INSERT INTO teams (id, name, slug, parent_team_id) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
          [newTeamId(), name, slug, opts.parentTeamId],
        )
        return toInfo(rows[0] as TeamRow)
      } catch (err) {
        if (!isUniqueViolation(err)) throw err
        await c.query('ROLLBACK TO SAVEPOINT slug')
      }
    }
    throw new S0Error('conflict', `team slug ${JSON.stringify(candidates[0])} is taken`)
  })
}

/** Renames a team the caller's team may manage (its own or one it made). */
export async function updateTeam(
  db: Db,
  callerTeam: TeamId,
  id: string,
  patch: { name?: string; slug?: string },
): Promise<TeamInfo> {
  const team = await visibleTeam(db, callerTeam, id)
  const name = patch.name !== undefined ? checkName(patch.name) : team.name
  const slug = patch.slug !== undefined ? checkSlug(patch.slug) : team.slug
  try {
    const { rows } = await db.query<TeamRow>(
      `UPDATE teams SET name = $2, slug = $3, updated_at = now() WHERE id = $1 RETURNING ${COLUMNS}`,
      [team.id, name, slug],
    )
    const row = rows[0]
    if (!row) throw new S0Error('not_found', `team ${id} not found`)
    return toInfo(row)
  } catch (err) {
    if (isUniqueViolation(err)) throw new S0Error('conflict', `team slug ${JSON.stringify(slug)} is taken`)
    throw err
  }
}

export interface ResourceCount {
  category: string
  count: number
}

/** What must go before a team can be deleted (counted in the delete's transaction). */
const BLOCKING: ReadonlyArray<{ category: string; sql: string }> = [
  { category: 'teams', sql: 'SELECT count(*)::int AS n FROM teams WHERE parent_team_id = $1' },
  {
    category: 'sandboxes',
    sql: "SELECT count(*)::int AS n FROM sandboxes WHERE team_id = $1 AND status <> 'idle'",
  },
  {
    category: 'volumes',
    sql: "SELECT count(*)::int AS n FROM volumes WHERE team_id = $1 AND kind = 'volume'",
  },
  { category: 'rootfs_snapshots', sql: 'SELECT count(*)::int AS n FROM rootfs_snapshots WHERE team_id = $1' },
  { category: 'templates', sql: 'SELECT count(*)::int AS n FROM sandbox_templates WHERE team_id = $1' },
  {
    category: 'credential_sources',
    sql: 'SELECT count(*)::int AS n FROM credential_sources WHERE team_id = $1',
  },
]

export const TEAM_DELETE_RETENTION =
  'usage windows and sandbox events of the team stay until their retention ends; API keys, SSH keys and quotas go with the team'

/**
 * Deletes a team the caller's team made. Refused (`team_not_empty`, with the counts) while it has
 * teams, sandboxes, volumes, snapshots, templates or credential sources; its API keys, SSH keys,
 * quotas, registry credentials and template idempotency records go with it. A key cannot delete its own team.
 */
export async function deleteTeam(db: Db, callerTeam: TeamId, id: string): Promise<void> {
  if (id === callerTeam)
    throw new S0Error(
      'conflict',
      'a key cannot delete its own team; use an admin key of the team that created it',
    )
  await db.tx(async (c) => {
    const team = await visibleTeam(c, callerTeam, id)
    // Locks the row: a concurrent create in the team waits for the delete (insertApiKey locks it too).
    await c.query('SELECT id FROM teams WHERE id = $1 FOR UPDATE', [team.id])
    const blocking: ResourceCount[] = []
    for (const b of BLOCKING) {
      const { rows } = await c.query<{ n: number }>(b.sql, [team.id])
      const n = rows[0]?.n ?? 0
      if (n > 0) blocking.push({ category: b.category, count: n })
    }
    if (blocking.length > 0)
      throw new S0Error(
        'team_not_empty',
        `team ${team.id} still has ${blocking.map((b) => `${b.count} ${b.category}`).join(', ')}; delete them first`,
        {
          details: {
            team_id: team.id,
            blocking_resources: blocking,
            retention_policy: TEAM_DELETE_RETENTION,
          },
        },
      )
    for (const table of [
      'api_keys',
      'ssh_keys',
      'team_quotas',
      'registry_credentials',
      'template_idempotency',
      'quota_counters',
      'quota_claim_slots',
    ])
      await c.query(`DELETE FROM ${table} WHERE team_id = $1`, [team.id])
    await c.query('DELETE FROM teams WHERE id = $1', [team.id])
  })
  forgetKeys(db, (ctx) => ctx.teamId === id)
}
