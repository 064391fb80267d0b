// `GET /api/v1/nodes`: the cluster's agents (docs/DEPLOY.md) for operators, `s0 node ls`. The
// hosts are the operator's, not a tenant's: an admin key of a top-level team only. A single
// `s0 server` has no nodes (the list is empty).
import type { FastifyPluginAsync } from 'fastify'
import { S0Error } from '../../core/errors.js'
import { listNodes } from '../../sandboxes/cluster/index.js'
import { ok } from '../reply.js'
import { requireAdmin } from '../roles.js'
import type { PluginOptions } from '../services.js'

export const nodeRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const { db } = services
  app.get('/nodes', async (request) => {
    const auth = requireAdmin(request, 'listing the cluster nodes')
    const { rows } = await db.query<{ parent_team_id: string | null }>(
      'SELECT parent_team_id FROM teams WHERE id = $1',
      [auth.teamId],
    )
    if (rows[0]?.parent_team_id != null)
      throw new S0Error('forbidden', 'listing the cluster nodes needs an admin key of a top-level team')
    const now = Date.now()
    return ok({
      nodes: (await listNodes(db)).map((n) => ({
        id: n.id,
        name: n.name,
        advertise_url: n.advertiseUrl,
        state: n.state,
        epoch: n.epoch,
        labels: n.labels,
        capacity: {
          max_sandboxes: n.capacity.maxSandboxes,
          cpu_millis: n.capacity.cpuMillis,
          memory_bytes: n.capacity.memoryBytes,
        },
        // Leased by its sandboxes (warm slots included) and pending placements.
        used: { cpu_millis: n.cpuMillisUsed, memory_bytes: n.memoryBytesUsed },
        sandboxes: n.sandboxes,
        warm_slots: n.warm,
        started_at: n.startedAt.toISOString(),
        heartbeat_at: n.heartbeatAt.toISOString(),
        heartbeat_age_ms: Math.max(0, now - n.heartbeatAt.getTime()),
      })),
    })
  })
}
