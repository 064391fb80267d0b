// `s0 quota ls | get | set`: a team's quotas over the API. `set` needs an admin key of the team
// that made the target team (or of a root team for its own quotas); `none` removes a limit.
import { UsageError, print, resolveTeamId, runApiCommand, type Parsed, type Sub } from './api-command.js'
import type { ApiClient } from './api-client.js'
import { table } from './format.js'
import { QUOTA_DIMENSIONS } from '../core/quota-dimensions.js'

const DIMENSIONS: readonly string[] = QUOTA_DIMENSIONS

const USAGE = `usage:
  s0 quota ls [--team T] [--json]
  s0 quota get <dimension> [--team T] [--json]
  s0 quota set <dimension> <value|none> [--interval SECONDS] [--team T] [--json]
Dimensions: ${DIMENSIONS.join(', ')}.
A value of "none" removes the team's limit. --interval sets the window of a rate dimension
(sandbox_claims, api_requests, network_*). T is a team id, slug or name (default: this key's team).
`

interface QuotaJson {
  dimension: string
  kind: string
  limit_value: number | null
  interval_ms: number | null
  current: number
  remaining: number | null
  unit: string
  source: string
  enforced: boolean
}

async function teamQuery(api: ApiClient, p: Parsed): Promise<Record<string, string>> {
  const t = p.str('team')
  return t === undefined ? {} : { team_id: await resolveTeamId(api, t) }
}

function checkDimension(d: string): string {
  if (!DIMENSIONS.includes(d)) throw new UsageError(`unknown dimension ${JSON.stringify(d)}`)
  return d
}

function rows(qs: QuotaJson[]): string {
  return table(
    ['DIMENSION', 'KIND', 'LIMIT', 'WINDOW', 'CURRENT', 'REMAINING', 'UNIT', 'SOURCE', 'ENFORCED'],
    qs.map((q) => [
      q.dimension,
      q.kind,
      q.limit_value === null ? 'unlimited' : String(q.limit_value),
      q.interval_ms === null ? '-' : `${q.interval_ms / 1000}s`,
      String(q.current),
      q.remaining === null ? '-' : String(q.remaining),
      q.unit,
      q.source,
      q.enforced ? 'yes' : 'reported',
    ]),
  )
}

const SUBS: Record<string, Sub> = {
  ls: {
    arity: [0, 0],
    strings: ['team'],
    action: async (api, p) => {
      const qs = await api.json<QuotaJson[]>('GET', '/api/v1/quotas', { query: await teamQuery(api, p) })
      print(p, qs, () => rows(qs))
    },
  },
  get: {
    arity: [1, 1],
    strings: ['team'],
    action: async (api, p) => {
      const d = checkDimension(p.pos[0] as string)
      const q = await api.json<QuotaJson>('GET', `/api/v1/quotas/${d}`, { query: await teamQuery(api, p) })
      print(p, q, () => rows([q]))
    },
  },
  set: {
    arity: [2, 2],
    strings: ['team', 'interval'],
    action: async (api, p) => {
      const d = checkDimension(p.pos[0] as string)
      const raw = p.pos[1] as string
      const value = raw === 'none' ? null : Number(raw)
      if (value !== null && (!/^\d+(\.\d+)?$/.test(raw) || !Number.isFinite(value)))
        throw new UsageError(`value must be a number >= 0 or "none", got ${JSON.stringify(raw)}`)
      const interval = p.str('interval')
      if (interval !== undefined && !/^\d+$/.test(interval))
        throw new UsageError(`--interval must be whole seconds, got ${JSON.stringify(interval)}`)
      const team = await teamQuery(api, p)
      const q = await api.json<QuotaJson>('PUT', `/api/v1/quotas/${d}`, {
        json: {
          limit_value: value,
          ...(interval !== undefined ? { interval_ms: Number(interval) * 1000 } : {}),
          ...team,
        },
      })
      print(p, q, () => rows([q]))
    },
  },
}
SUBS['list'] = SUBS['ls'] as Sub

export function run(args: string[]): Promise<number> {
  return runApiCommand('quota', USAGE, SUBS, args)
}
