// `s0 node ls`: the cluster's agents as the API sees them (docs/DEPLOY.md): state, epoch, last
// heartbeat, capacity and what runs there. Against a single `s0 server` the list is empty.
import type { ApiClient } from './api-client.js'
import { print, runApiCommand, type Sub } from './api-command.js'
import { table } from './format.js'

const USAGE = `usage:
  s0 node ls [--json]    the cluster's nodes (agents): state, heartbeat, sandboxes, CPU and memory
                         (used/capacity; used alone when unbounded)
Needs an admin key of a top-level team. The server is S0_API_URL with S0_TOKEN, or the state
directory's token file.
`

interface NodeJson {
  id: string
  name: string
  advertise_url: string
  state: string
  epoch: number
  capacity: { max_sandboxes: number; cpu_millis: number; memory_bytes: number }
  /** Absent from servers before placement leased CPU and memory. */
  used?: { cpu_millis: number; memory_bytes: number }
  sandboxes: number
  warm_slots: number
  heartbeat_age_ms: number
}

const SUBS: Record<string, Sub> = {
  ls: {
    arity: [0, 0],
    action: async (api: ApiClient, p) => {
      const { nodes } = await api.json<{ nodes: NodeJson[] }>('GET', '/api/v1/nodes')
      print(p, nodes, () =>
        nodes.length === 0
          ? 'no nodes: this is a single s0 server (s0 agent registers nodes, docs/DEPLOY.md)\n'
          : table(
              ['NAME', 'STATE', 'EPOCH', 'HEARTBEAT', 'SANDBOXES', 'WARM', 'CPU', 'MEMORY', 'URL'],
              nodes.map((n) => [
                n.name,
                n.state,
                String(n.epoch),
                `${(n.heartbeat_age_ms / 1000).toFixed(1)}s ago`,
                n.capacity.max_sandboxes > 0
                  ? `${n.sandboxes}/${n.capacity.max_sandboxes}`
                  : String(n.sandboxes),
                String(n.warm_slots),
                usedOf(n.used?.cpu_millis ?? 0, n.capacity.cpu_millis, (m) => (m / 1000).toFixed(1)),
                usedOf(
                  n.used?.memory_bytes ?? 0,
                  n.capacity.memory_bytes,
                  (b) => `${(b / 2 ** 30).toFixed(1)}Gi`,
                ),
                n.advertise_url,
              ]),
            ),
      )
    },
  },
}
SUBS['list'] = SUBS['ls'] as Sub

/** `used/capacity`, or what is used alone when the node sets no bound (0). */
function usedOf(used: number, capacity: number, fmt: (n: number) => string): string {
  return capacity > 0 ? `${fmt(used)}/${fmt(capacity)}` : fmt(used)
}

export function run(args: string[]): Promise<number> {
  return runApiCommand('node', USAGE, SUBS, args, 'ls')
}
