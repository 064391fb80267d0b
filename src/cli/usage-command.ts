// `s0 usage [--type T] [--limit N] [--json]`: the team's hourly usage windows, newest first
// (sandbox seconds by size, storage GiB-hours after dedup, network bytes; docs/ACCOUNTS.md).
import { UsageError, print, runApiCommand, type Sub } from './api-command.js'
import { isoSeconds, table } from './format.js'

const USAGE = `usage:
  s0 usage [--type TYPE] [--limit N] [--json]
Types: sandbox_seconds, sandbox_memory_gib_seconds, sandbox_cpu_core_seconds, storage_gib_hours,
network_egress_bytes, network_ingress_bytes. Newest windows first; --limit caps the count (default 100).
`

interface WindowJson {
  window_type: string
  window_start: string
  window_end: string
  value: number
  unit: string
}

const SUBS: Record<string, Sub> = {
  ls: {
    arity: [0, 0],
    strings: ['type', 'limit'],
    action: async (api, p) => {
      const limit = p.str('limit') ?? '100'
      if (!/^[1-9]\d{0,3}$/.test(limit)) throw new UsageError(`--limit must be 1 to 1000, got ${limit}`)
      const type = p.str('type')
      const page = await api.json<{ windows: WindowJson[]; next_cursor: string }>(
        'GET',
        '/api/v1/usage/windows',
        {
          query: { limit, ...(type !== undefined ? { window_type: type } : {}) },
        },
      )
      print(p, page, () =>
        table(
          ['WINDOW START', 'TYPE', 'VALUE', 'UNIT'],
          page.windows.map((w) => [
            isoSeconds(w.window_start),
            w.window_type,
            String(Math.round(w.value * 1e6) / 1e6),
            w.unit,
          ]),
        ),
      )
    },
  },
}

export function run(args: string[]): Promise<number> {
  return runApiCommand('usage', USAGE, SUBS, args, 'ls')
}
