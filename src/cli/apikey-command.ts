// `s0 apikey create | list | revoke`: manages API keys directly in the database (works whether or
// not a server is running; a running server refuses a revoked key within limits.authCacheTtlMs).
import { parseArgs } from 'node:util'
import {
  DEFAULT_TEAM_NAME,
  createApiKey,
  isApiKeyRole,
  listApiKeys,
  listTeams,
  revokeApiKey,
  type ApiKeyInfo,
  type ApiKeyRole,
  type TeamInfo,
} from '../accounts/index.js'
import type { Db } from '../core/db.js'
import { limits } from '../core/limits.js'
import { isoSeconds, table } from './format.js'
import { withDatabase } from './offline.js'

const USAGE = `usage:
  s0 apikey create [--name NAME] [--team TEAM] [--role admin|member]
      Creates a key and prints it once. TEAM is a team id or name (default: the only team,
      or the team named "${DEFAULT_TEAM_NAME}").
  s0 apikey list [--team TEAM]
  s0 apikey revoke <key-id>
`

/** A mistake in the command line: reported with the usage text, exit status 2. */
class UsageError extends Error {}

type Action = (db: Db) => Promise<void>

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(USAGE)
    return sub ? 0 : 2
  }
  let action: Action
  try {
    action = parseAction(sub, rest)
  } catch (err) {
    if (!(err instanceof UsageError) && !isParseArgsError(err)) throw err
    process.stderr.write(`s0 apikey: ${(err as Error).message}\n\n${USAGE}`)
    return 2
  }
  return runAction(action)
}

function parseAction(sub: string, rest: string[]): Action {
  switch (sub) {
    case 'create': {
      const { values } = parseArgs({
        args: rest,
        options: { name: { type: 'string' }, team: { type: 'string' }, role: { type: 'string' } },
        strict: true,
      })
      const role = values.role ?? 'admin'
      if (!isApiKeyRole(role))
        throw new UsageError(`--role must be admin or member, got ${JSON.stringify(role)}`)
      return (db) => create(db, { name: values.name ?? 'cli', team: values.team, role })
    }
    case 'list': {
      const { values } = parseArgs({ args: rest, options: { team: { type: 'string' } }, strict: true })
      return (db) => list(db, values.team)
    }
    case 'revoke': {
      const { positionals } = parseArgs({ args: rest, options: {}, strict: true, allowPositionals: true })
      const [id, extra] = positionals
      if (!id || extra !== undefined) throw new UsageError('revoke takes exactly one key id')
      return (db) => revoke(db, id)
    }
    default:
      throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}`)
  }
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')
}

async function runAction(action: Action): Promise<number> {
  try {
    await withDatabase(({ db }) => action(db))
    return 0
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`s0 apikey: ${err.message}\n`)
      return 2
    }
    throw err
  }
}

async function resolveTeam(db: Db, team: string | undefined): Promise<TeamInfo> {
  const teams = await listTeams(db)
  if (teams.length === 0)
    throw new UsageError('there are no teams yet; start `s0 server` once to create the default team')
  if (team !== undefined) {
    const matches = teams.filter((t) => t.id === team || t.slug === team || t.name === team)
    if (matches.length === 1 && matches[0]) return matches[0]
    if (matches.length > 1)
      throw new UsageError(`several teams are named ${JSON.stringify(team)}; pass the team id`)
    throw new UsageError(`no team ${JSON.stringify(team)}`)
  }
  if (teams.length === 1 && teams[0]) return teams[0]
  const named = teams.filter((t) => t.name === DEFAULT_TEAM_NAME)
  if (named.length === 1 && named[0]) return named[0]
  throw new UsageError('there are several teams; pass --team')
}

async function create(
  db: Db,
  opts: { name: string; team: string | undefined; role: ApiKeyRole },
): Promise<void> {
  const team = await resolveTeam(db, opts.team)
  const { id, key } = await createApiKey(db, { teamId: team.id, name: opts.name, role: opts.role })
  process.stderr.write(
    `created ${opts.role} key ${id} for team ${team.id} (${team.name}); it is not shown again:\n`,
  )
  process.stdout.write(`${key}\n`)
}

async function list(db: Db, team: string | undefined): Promise<void> {
  const teamId = team === undefined ? undefined : (await resolveTeam(db, team)).id
  const keys = await listApiKeys(db, teamId)
  process.stdout.write(formatTable(keys))
}

async function revoke(db: Db, id: string): Promise<void> {
  const info = await revokeApiKey(db, id)
  const seconds = limits.authCacheTtlMs / 1000
  process.stdout.write(
    `revoked ${info.id} (${info.keyPrefix}...); running servers refuse it within ${seconds} s\n`,
  )
}

function formatTable(keys: ApiKeyInfo[]): string {
  const header = ['ID', 'TEAM', 'PREFIX', 'NAME', 'ROLE', 'CREATED', 'REVOKED']
  const rows = keys.map((k) => [
    k.id,
    k.teamId,
    k.keyPrefix,
    k.name,
    k.role,
    isoSeconds(k.createdAt),
    k.revokedAt ? isoSeconds(k.revokedAt) : '-',
  ])
  return table(header, rows)
}
