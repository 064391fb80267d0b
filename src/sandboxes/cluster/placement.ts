// Where a sandbox runs (docs/DEPLOY.md, "Placement"). An API replica places each claim, and each
// resume of a sandbox whose node died, before forwarding it to that node's agent:
// 1. a live node that holds an idle warm slot of the template (its claim is then a warm hit);
// 2. else the least-loaded live node with room, load being its sandboxes (warm slots included)
//    plus the placement leases not yet turned into sandboxes, over its capacity.
// Placements are serialized under one transaction lock: two replicas placing at once see each
// other's leases, so 300 concurrent claims spread evenly and a full node is never chosen twice.
import { ADVISORY_LOCK_KEYS } from '../../core/advisory-locks.js'
import type { Db } from '../../core/db.js'
import { S0Error } from '../../core/errors.js'
import { randomHexId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import { inTurn } from '../../core/turns.js'
import { toNodeRow, type NodeRow } from './nodes.js'

export interface Placement {
  node: NodeRow
  /** The placement lease: the agent drops it when the claim ends (or it expires). */
  reservationId: string
  /** Whether a warm slot of the template was what chose the node. */
  warm: boolean
}

export interface PlacementRequest {
  teamId: string
  /** The template's name or id as the claim names it (warm slots are per template). */
  template?: string
  /** Labels a node must carry (all of them). */
  labels?: Record<string, string>
}

export function place(db: Db, req: PlacementRequest, deadAfterS: number): Promise<Placement> {
  // One placement at a time in this process (core/turns.ts), so a burst waits off the pool.
  return inTurn(db, 'placement', () => placeNow(db, req, deadAfterS))
}

async function placeNow(db: Db, req: PlacementRequest, deadAfterS: number): Promise<Placement> {
  return db.tx(async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.placement])
    const { rows } = await c.query<Parameters<typeof toNodeRow>[0] & { load: string; warm: boolean }>(
      `WITH live AS (
         SELECT * FROM nodes WHERE state = 'live' AND heartbeat_at > now() - make_interval(secs => $1)
           AND labels @> $2::jsonb),
       used AS (
         SELECT host, count(*) AS n FROM sandboxes
          WHERE host IN (SELECT id FROM live) AND status IN ('idle', 'starting', 'running') GROUP BY host),
       leased AS (
         SELECT node_id, count(*) AS n FROM node_reservations
          WHERE node_id IN (SELECT id FROM live) AND expires_at > now() GROUP BY node_id)
       SELECT live.*, coalesce(used.n, 0) + coalesce(leased.n, 0) AS load,
              EXISTS (SELECT 1 FROM sandboxes s WHERE s.host = live.id AND s.status = 'idle'
                        AND s.template_id = $3 AND s.team_id IN ($4, '')) AS warm
         FROM live LEFT JOIN used ON used.host = live.id LEFT JOIN leased ON leased.node_id = live.id`,
      [deadAfterS, JSON.stringify(req.labels ?? {}), req.template ?? null, req.teamId],
    )
    const room = rows.filter((r) => r.max_sandboxes === 0 || Number(r.load) < r.max_sandboxes)
    if (room.length === 0)
      throw new S0Error(
        'unavailable',
        rows.length === 0 ? 'no live node can run sandboxes' : 'every live node is at its sandbox capacity',
        { retryAfterS: 2 },
      )
    // Fraction of capacity used (unbounded nodes by their count), ties by name for stable tests.
    const score = (r: (typeof rows)[number]): number =>
      r.max_sandboxes > 0 ? Number(r.load) / r.max_sandboxes : Number(r.load)
    const ranked = room.sort(
      (a, b) => Number(b.warm) - Number(a.warm) || score(a) - score(b) || a.name.localeCompare(b.name),
    )
    const best = ranked[0] as (typeof rows)[number]
    const reservationId = `pl-${randomHexId(8)}`
    await c.query(
      `INSERT INTO node_reservations (id, node_id, expires_at)
       VALUES ($1, $2, now() + make_interval(secs => $3::double precision / 1000))`,
      [reservationId, best.id, limits.placementLeaseMs],
    )
    return { node: toNodeRow(best), reservationId, warm: best.warm }
  })
}

/** The agent's side: the claim a lease was for has ended (either way). */
export async function releasePlacement(db: Db, reservationId: string): Promise<void> {
  await db.query('DELETE FROM node_reservations WHERE id = $1', [reservationId])
}

/**
 * The node that serves a sandbox now: its host while that is a live node; undefined when it has
 * none (never placed, or its node is dead or gone: the caller places it again, and the chosen
 * node takes it over on resume).
 */
export async function ownerNode(
  db: Db,
  sandboxId: string,
  deadAfterS: number,
): Promise<{ exists: boolean; node?: NodeRow }> {
  const { rows } = await db.query<Parameters<typeof toNodeRow>[0] & { sandbox_host: string }>(
    `SELECT s.host AS sandbox_host, n.* FROM sandboxes s
       LEFT JOIN nodes n ON n.id = s.host AND n.state IN ('live', 'draining')
                        AND n.heartbeat_at > now() - make_interval(secs => $2)
      WHERE s.id = $1`,
    [sandboxId, deadAfterS],
  )
  const r = rows[0]
  if (!r) return { exists: false }
  return r.id ? { exists: true, node: toNodeRow(r) } : { exists: true }
}

/** The node holding a volume's writer lease, if it is live (volume files go through it). */
export async function volumeWriterNode(
  db: Db,
  volumeId: string,
  deadAfterS: number,
): Promise<NodeRow | undefined> {
  const { rows } = await db.query<Parameters<typeof toNodeRow>[0]>(
    `SELECT n.* FROM volumes v JOIN nodes n ON n.id = v.owner
      WHERE v.id::text = $1 AND v.owner_expires_at > now() AND n.state IN ('live', 'draining')
        AND n.heartbeat_at > now() - make_interval(secs => $2)`,
    [volumeId, deadAfterS],
  )
  return rows[0] ? toNodeRow(rows[0]) : undefined
}
