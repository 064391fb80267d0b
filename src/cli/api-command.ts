// The frame of a small CLI command over the API (`s0 team`, `s0 quota`, `s0 usage`): subcommands
// with an arity and flags, `--json` on each, usage errors (exit 2) and server errors (exit 1).
import { parseArgs } from 'node:util'
import { ApiClient, ApiError, resolveConnection } from './api-client.js'

export class UsageError extends Error {}

export interface Parsed {
  pos: string[]
  json: boolean
  str(name: string): string | undefined
  bool(name: string): boolean
}

export interface Sub {
  /** [min, max] positional arguments. */
  arity: [number, number]
  strings?: string[]
  booleans?: string[]
  /** One-letter aliases: `{ p: 'parents' }` makes `-p` mean `--parents`. */
  short?: Record<string, string>
  action(api: ApiClient, p: Parsed): Promise<void>
}

/** Runs `s0 <command> <sub> ...` with the subcommands `subs`. */
export async function runApiCommand(
  command: string,
  usage: string,
  subs: Record<string, Sub>,
  args: string[],
  defaultSub?: string,
): Promise<number> {
  let [name, ...rest] = args
  if (name === '--help' || name === '-h' || name === 'help' || (!name && !defaultSub)) {
    process.stdout.write(usage)
    return name ? 0 : 2
  }
  if ((!name || name.startsWith('-')) && defaultSub) {
    rest = name ? [name, ...rest] : rest
    name = defaultSub
  }
  let sub: Sub
  let parsed: Parsed
  try {
    const found = subs[name as string]
    if (!found) throw new UsageError(`unknown subcommand ${JSON.stringify(name)}`)
    sub = found
    parsed = parse(name as string, sub, rest)
  } catch (err) {
    if (!(err instanceof UsageError) && !isParseArgsError(err)) throw err
    process.stderr.write(`s0 ${command}: ${(err as Error).message}\n\n${usage}`)
    return 2
  }
  try {
    await sub.action(new ApiClient(await resolveConnection()), parsed)
    return 0
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`s0 ${command}: ${err.message}\n\n${usage}`)
      return 2
    }
    if (err instanceof ApiError) {
      process.stderr.write(`s0 ${command}: ${err.message} [${err.code}]\n`)
      return 1
    }
    // Local I/O (EACCES, ENOSPC, EPIPE) or a transfer cut short: expected, reported, not a crash.
    const code = (err as NodeJS.ErrnoException).code
    if (err instanceof Error && typeof code === 'string') {
      process.stderr.write(`s0 ${command}: ${err.message} [${code}]\n`)
      return 1
    }
    throw err
  }
}

function parse(name: string, sub: Sub, rest: string[]): Parsed {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    json: { type: 'boolean' },
  }
  for (const s of sub.strings ?? []) options[s] = { type: 'string' }
  for (const b of sub.booleans ?? []) options[b] = { type: 'boolean' }
  for (const [short, long] of Object.entries(sub.short ?? {})) {
    const o = options[long]
    if (o) o.short = short
  }
  const { values, positionals } = parseArgs({ args: rest, options, strict: true, allowPositionals: true })
  const [min, max] = sub.arity
  if (positionals.length < min || positionals.length > max) {
    const want = min === max ? `${min}` : `${min} to ${max}`
    throw new UsageError(`${name} takes ${want} argument(s), got ${positionals.length}`)
  }
  const v = values as Record<string, string | boolean | undefined>
  return {
    pos: positionals,
    json: v['json'] === true,
    str: (n) => (typeof v[n] === 'string' ? v[n] : undefined),
    bool: (n) => v[n] === true,
  }
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')
}

/** --json prints the data as the server sent it; otherwise the human text. */
export function print(p: Parsed, data: unknown, human: () => string): void {
  process.stdout.write(p.json ? JSON.stringify(data, null, 2) + '\n' : human())
}

/** A team id, or a name/slug resolved against the teams the key sees. */
export async function resolveTeamId(api: ApiClient, team: string): Promise<string> {
  const { teams } = await api.json<{ teams: Array<{ id: string; name: string; slug: string }> }>(
    'GET',
    '/teams',
  )
  const matches = teams.filter((t) => t.id === team || t.slug === team || t.name === team)
  if (matches.length === 1 && matches[0]) return matches[0].id
  if (matches.length > 1)
    throw new UsageError(`several teams are named ${JSON.stringify(team)}; pass the team id`)
  throw new ApiError('not_found', `no team ${JSON.stringify(team)} visible to this key`)
}
