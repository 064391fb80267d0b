// Where a sandbox runs (docs/DEPLOY.md, "Placement"). An API replica places each claim, and each
// resume of a sandbox whose node died, before forwarding it to that node's agent:
// 1. a live node that holds an idle warm slot of the template (its claim is then a warm hit);
// 2. else the least-loaded live node with room, among those that carry the labels the sandbox's
//    template asks for. Room is counted in sandboxes, CPU and memory: a node's sandboxes (warm
//    slots included) plus the placement leases not yet turned into sandboxes, against what it
//    advertises (0: unbounded). Load is the fullest of its bounded dimensions.
// Placements are serialized under one transaction lock: two replicas placing at once see each
// other's leases, so 300 concurrent claims spread evenly and a full node is never chosen twice.
import { ADVISORY_LOCK_KEYS } from '../../core/advisory-locks.js'
import type { Db, Queryable } from '../../core/db.js'
import { S0Error } from '../../core/errors.js'
import { randomHexId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import { inTurn } from '../../core/turns.js'
import { NO_DEMAND, type Demand } from './demand.js'
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
  /** What the sandbox asks of its node (demand.ts); absent: one sandbox, no CPU, memory or labels. */
  demand?: Demand
}

type Dimension = 'sandboxes' | 'memory' | 'cpu'

interface Load {
  sandboxes: number
  cpuMillis: number
  memoryBytes: number
}

type Raw = Parameters<typeof toNodeRow>[0] & {
  labelled: boolean
  n: string
  cpu_used: string
  mem_used: string
  warm_free: string
  warm_cpu: string | null
  warm_mem: string | null
}

interface Candidate {
  raw: Raw
  used: Load
  /** What placing the sandbox here adds to `used`. */
  need: Load
  warm: boolean
  /** The first dimension it has no room in. */
  full?: Dimension
}

export function place(db: Db, req: PlacementRequest, deadAfterS: number): Promise<Placement> {
  // One placement at a time in this process (core/turns.ts), so a burst waits off the pool.
  return inTurn(db, 'placement', () => placeNow(db, req, deadAfterS))
}

async function placeNow(db: Db, req: PlacementRequest, deadAfterS: number): Promise<Placement> {
  const demand = req.demand ?? NO_DEMAND
  return db.tx(async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.placement])
    const rows = await nodeLoads(c, deadAfterS, demand, req.teamId)
    if (rows.length === 0)
      throw new S0Error('unavailable', 'no live node can run sandboxes', { retryAfterS: 2 })
    const labelled = rows.filter((r) => r.labelled)
    if (labelled.length === 0)
      throw new S0Error(
        'unavailable',
        `no live node carries the labels ${formatLabels(demand.labels)} this sandbox's template asks for (pod.nodeSelector)`,
        { retryAfterS: 2 },
      )
    const candidates = labelled.map((r) => candidate(r, demand))
    const room = candidates.filter((cd) => cd.full === undefined)
    if (room.length === 0)
      throw new S0Error('unavailable', noRoomMessage(candidates, demand), { retryAfterS: 2 })
    const best = room.sort(
      (a, b) =>
        Number(b.warm) - Number(a.warm) || score(a) - score(b) || a.raw.name.localeCompare(b.raw.name),
    )[0] as Candidate
    const reservationId = await lease(c, best.raw.id, best.need)
    return { node: toNodeRow(best.raw), reservationId, warm: best.warm }
  })
}

/**
 * Every live node with what it holds: its sandboxes (idle, starting, running) and unexpired
 * leases, the warm slots of the demand's template it has free, and whether it carries the labels.
 */
async function nodeLoads(c: Queryable, deadAfterS: number, demand: Demand, teamId: string): Promise<Raw[]> {
  // A sandbox holds what its stored config says (memory_bytes, cpu_millis) while it is idle (a
  // warm slot), starting or running; a lease holds what it was placed with until it goes.
  const { rows } = await c.query<Raw>(
    `WITH live AS (
       SELECT * FROM nodes WHERE state = 'live' AND heartbeat_at > now() - make_interval(secs => $1)),
     used AS (
       SELECT host, count(*) AS n, sum(coalesce((config->>'cpu_millis')::numeric, 0)) AS cpu,
              sum(coalesce((config->>'memory_bytes')::numeric, 0)) AS mem
         FROM sandboxes
        WHERE host IN (SELECT id FROM live) AND status IN ('idle', 'starting', 'running') GROUP BY host),
     leased AS (
       SELECT node_id, count(*) AS n, sum(cpu_millis) AS cpu, sum(memory_bytes) AS mem FROM node_reservations
        WHERE node_id IN (SELECT id FROM live) AND expires_at > now() GROUP BY node_id),
     warm AS (
       SELECT host, count(*) AS n, min(coalesce((config->>'cpu_millis')::numeric, 0)) AS cpu,
              min(coalesce((config->>'memory_bytes')::numeric, 0)) AS mem
         FROM sandboxes
        WHERE host IN (SELECT id FROM live) AND status = 'idle' AND template_id = $3 AND team_id IN ($4, '')
        GROUP BY host)
     SELECT live.*, live.labels @> $2::jsonb AS labelled,
            coalesce(used.n, 0) + coalesce(leased.n, 0) AS n,
            coalesce(used.cpu, 0) + coalesce(leased.cpu, 0) AS cpu_used,
            coalesce(used.mem, 0) + coalesce(leased.mem, 0) AS mem_used,
            coalesce(warm.n, 0) - coalesce(leased.n, 0) AS warm_free, warm.cpu AS warm_cpu, warm.mem AS warm_mem
       FROM live LEFT JOIN used ON used.host = live.id LEFT JOIN leased ON leased.node_id = live.id
            LEFT JOIN warm ON warm.host = live.id
      ORDER BY live.name`,
    [deadAfterS, JSON.stringify(demand.labels), demand.warmTemplate ?? null, teamId],
  )
  return rows
}

/**
 * A lease on one node for a sandbox the node starts by itself (a warm slot its pool fills), when
 * the node has room for `demand`; null when it has not (or is not live). Counted as place()
 * counts, under the same lock, so a pool filling a node and claims placed on it never overfill it.
 */
export function reserveOn(
  db: Db,
  nodeId: string,
  demand: Pick<Demand, 'cpuMillis' | 'memoryBytes'>,
  deadAfterS: number,
): Promise<string | null> {
  const d: Demand = { cpuMillis: demand.cpuMillis, memoryBytes: demand.memoryBytes, labels: {} }
  return inTurn(db, 'placement', () =>
    db.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.placement])
      const r = (await nodeLoads(c, deadAfterS, d, '')).find((x) => x.id === nodeId)
      if (!r || candidate(r, d).full !== undefined) return null
      return lease(c, nodeId, d)
    }),
  )
}

async function lease(
  c: Queryable,
  nodeId: string,
  need: Pick<Demand, 'cpuMillis' | 'memoryBytes'>,
): Promise<string> {
  const reservationId = `pl-${randomHexId(8)}`
  await c.query(
    `INSERT INTO node_reservations (id, node_id, cpu_millis, memory_bytes, expires_at)
     VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::double precision / 1000))`,
    [reservationId, nodeId, need.cpuMillis, need.memoryBytes, limits.placementLeaseMs],
  )
  return reservationId
}

function candidate(r: Raw, demand: Demand): Candidate {
  const used: Load = {
    sandboxes: Number(r.n),
    cpuMillis: Number(r.cpu_used),
    memoryBytes: Number(r.mem_used),
  }
  // Warm slots hold their template's resources already (idle rows count as used), and a warm
  // claim turns one into its sandbox: it adds no sandbox, and only what it asks beyond the slot
  // (a claim with a larger resources.memory resizes it). A slot counts as free only while the
  // node has more of them than pending leases (any of which may be a claim taking one); else
  // the claim may start cold there and asks for all of its demand, as on any node.
  const warm = demand.warmTemplate !== undefined && Number(r.warm_free) > 0
  const need: Load = warm
    ? {
        sandboxes: 0,
        cpuMillis: Math.max(0, demand.cpuMillis - Number(r.warm_cpu)),
        memoryBytes: Math.max(0, demand.memoryBytes - Number(r.warm_mem)),
      }
    : { sandboxes: 1, cpuMillis: demand.cpuMillis, memoryBytes: demand.memoryBytes }
  const cap = capacityOf(r)
  const fits = (d: Dimension): boolean => cap[d] === 0 || used[dim(d)] + need[dim(d)] <= cap[d]
  const full = (['sandboxes', 'memory', 'cpu'] as const).find((d) => !fits(d))
  return { raw: r, used, need, warm, ...(full ? { full } : {}) }
}

function capacityOf(r: Raw): Record<Dimension, number> {
  return { sandboxes: r.max_sandboxes, cpu: Number(r.cpu_millis), memory: Number(r.memory_bytes) }
}

function dim(d: Dimension): keyof Load {
  return d === 'sandboxes' ? 'sandboxes' : d === 'cpu' ? 'cpuMillis' : 'memoryBytes'
}

/** The fraction used of its fullest bounded dimension (a node with no bounds: its sandbox count). */
function score(cd: Candidate): number {
  const cap = capacityOf(cd.raw)
  const bounded = (['sandboxes', 'memory', 'cpu'] as const).filter((d) => cap[d] > 0)
  if (bounded.length === 0) return cd.used.sandboxes
  return Math.max(...bounded.map((d) => cd.used[dim(d)] / cap[d]))
}

/** Why no node fits, per dimension, with what was asked and the most any node has free. */
function noRoomMessage(candidates: Candidate[], demand: Demand): string {
  const where = Object.keys(demand.labels).length > 0 ? ` with the labels ${formatLabels(demand.labels)}` : ''
  const clauses: Array<{ alone: string; some: string }> = []
  const nodes = (n: number, one: string, more: string): string =>
    n === 1 ? `1 node ${one}` : `${n} nodes ${more}`
  for (const d of ['sandboxes', 'memory', 'cpu'] as const) {
    const full = candidates.filter((cd) => cd.full === d)
    if (full.length === 0) continue
    if (d === 'sandboxes') {
      clauses.push({
        alone: `every live node${where} is at its sandbox capacity`,
        some: nodes(full.length, 'is at its sandbox capacity', 'are at their sandbox capacity'),
      })
      continue
    }
    const free = (cd: Candidate): number => Math.max(0, capacityOf(cd.raw)[d] - cd.used[dim(d)])
    const most = full.reduce((a, b) => (free(b) > free(a) ? b : a))
    const amount = d === 'memory' ? formatMiB : (n: number): string => `${n}m`
    const what = d === 'memory' ? 'memory' : 'CPU'
    const asked = amount(d === 'memory' ? demand.memoryBytes : demand.cpuMillis)
    const largest = `(largest free: ${amount(free(most))} on ${most.raw.name})`
    const less = `less than ${asked} of ${what} free ${largest}`
    clauses.push({
      alone: `no live node${where} has ${asked} of ${what} free for this sandbox ${largest}`,
      some: nodes(full.length, `has ${less}`, `have ${less}`),
    })
  }
  if (clauses.length === 1) return (clauses[0] as (typeof clauses)[number]).alone
  return `no live node${where} has room for this sandbox: ${clauses.map((c) => c.some).join('; ')}`
}

function formatMiB(bytes: number): string {
  return `${Math.round(bytes / 2 ** 20)} MiB`
}

function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
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
