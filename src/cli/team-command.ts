// `s0 team create | list | rm`: teams over the API. A team made here is managed by the calling
// admin key's team; `s0 apikey create --team <name>` (offline) or POST /api-keys with team_id
// gives it a key.
import type { ApiClient } from './api-client.js'
import { print, resolveTeamId, runApiCommand, type Sub } from './api-command.js'
import { isoSeconds, table } from './format.js'

const USAGE = `usage:
  s0 team create <name> [--slug SLUG] [--json]   create a team (managed by this key's team)
  s0 team list [--json]                          this key's team and the teams it made
  s0 team rm <team>                              delete a team (refused while it holds sandboxes or volumes)
Every command takes --json. <team> is an id, slug or name. The server is S0_API_URL with S0_TOKEN
(an admin key to create or delete), or the state directory's token file.
`

interface TeamJson {
  id: string
  name: string
  slug: string
  parent_team_id: string | null
  created_at: string
}

const SUBS: Record<string, Sub> = {
  create: {
    arity: [1, 1],
    strings: ['slug'],
    action: async (api: ApiClient, p) => {
      const slug = p.str('slug')
      const t = await api.json<TeamJson>('POST', '/teams', {
        json: { name: p.pos[0], ...(slug !== undefined ? { slug } : {}) },
      })
      print(p, t, () => `${t.id}\n`)
      if (!p.json)
        process.stderr.write(
          `created team ${t.id} (${t.slug}); give it a key: s0 apikey create --team ${t.id} (or POST /api-keys with team_id)\n`,
        )
    },
  },
  list: {
    arity: [0, 0],
    action: async (api, p) => {
      const { teams } = await api.json<{ teams: TeamJson[] }>('GET', '/teams')
      print(p, teams, () =>
        table(
          ['ID', 'SLUG', 'NAME', 'PARENT', 'CREATED'],
          teams.map((t) => [t.id, t.slug, t.name, t.parent_team_id ?? '-', isoSeconds(t.created_at)]),
        ),
      )
    },
  },
  rm: {
    arity: [1, 1],
    action: async (api, p) => {
      const id = await resolveTeamId(api, p.pos[0] as string)
      const r = await api.json<{ message: string }>('DELETE', `/teams/${encodeURIComponent(id)}`)
      print(p, r, () => `${r.message}\n`)
    },
  },
}
SUBS['ls'] = SUBS['list'] as Sub

export function run(args: string[]): Promise<number> {
  return runApiCommand('team', USAGE, SUBS, args)
}
