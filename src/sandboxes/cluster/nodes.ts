// The agents of a cluster (docs/DEPLOY.md): one row per host in `nodes`. An agent registers at
// start, which moves its epoch on, and heartbeats while it runs. The heartbeat is also its
// fence: once its row is dead (the reaper gave its sandboxes to other nodes) or its epoch is not
// the one it registered under (another process started with its name), it must stop serving.
import type { Db } from '../../core/db.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'

export interface NodeCapacity {
  /** Sandboxes it accepts (claims, resumes, warm slots); 0 = unbounded. */
  maxSandboxes: number
  /** CPU (millicores) and memory (bytes) placement may lease to its sandboxes; 0 = unbounded. */
  cpuMillis: number
  memoryBytes: number
}

export interface NodeSpec {
  /** The host id: `sandboxes.host` and volume leases name it. */
  id: string
  name: string
  /** Where API replicas reach this agent's listener. */
  advertiseUrl: string
  capacity: NodeCapacity
  labels: Record<string, string>
}

export type NodeState = 'live' | 'dead' | 'draining'

export interface NodeRow {
  id: string
  name: string
  advertiseUrl: string
  state: NodeState
  epoch: number
  capacity: NodeCapacity
  labels: Record<string, string>
  heartbeatAt: Date
  startedAt: Date
}

interface Raw {
  id: string
  name: string
  advertise_url: string
  state: NodeState
  epoch: string
  max_sandboxes: number
  cpu_millis: string
  memory_bytes: string
  labels: Record<string, string>
  heartbeat_at: Date
  started_at: Date
}

export function toNodeRow(r: Raw): NodeRow {
  return {
    id: r.id,
    name: r.name,
    advertiseUrl: r.advertise_url,
    state: r.state,
    epoch: Number(r.epoch),
    capacity: {
      maxSandboxes: r.max_sandboxes,
      cpuMillis: Number(r.cpu_millis),
      memoryBytes: Number(r.memory_bytes),
    },
    labels: r.labels,
    heartbeatAt: r.heartbeat_at,
    startedAt: r.started_at,
  }
}

/** What is placed on a node: its sandboxes (warm slots apart) and warm slots, and the CPU and memory leased. */
export interface NodeUsage {
  sandboxes: number
  warm: number
  /** Held by its idle, starting and running sandboxes and its pending placement leases (placement.ts). */
  cpuMillisUsed: number
  memoryBytesUsed: number
}

/** Every node, live ones first, with what runs there, for operators (`s0 node ls`). */
export async function listNodes(db: Db): Promise<Array<NodeRow & NodeUsage>> {
  const { rows } = await db.query<
    Raw & { sandboxes: number; warm: number; cpu_used: string; mem_used: string }
  >(
    `SELECT n.*, coalesce(s.sandboxes, 0)::int AS sandboxes, coalesce(s.warm, 0)::int AS warm,
            coalesce(s.cpu, 0) + coalesce(l.cpu, 0) AS cpu_used, coalesce(s.mem, 0) + coalesce(l.mem, 0) AS mem_used
       FROM nodes n
       LEFT JOIN (SELECT host, count(*) FILTER (WHERE status <> 'idle') AS sandboxes,
                         count(*) FILTER (WHERE status = 'idle') AS warm,
                         sum(coalesce((config->>'cpu_millis')::numeric, 0)) AS cpu,
                         sum(coalesce((config->>'memory_bytes')::numeric, 0)) AS mem
                    FROM sandboxes WHERE status IN ('idle', 'starting', 'running') GROUP BY host) s ON s.host = n.id
       LEFT JOIN (SELECT node_id, sum(cpu_millis) AS cpu, sum(memory_bytes) AS mem FROM node_reservations
                   WHERE expires_at > now() GROUP BY node_id) l ON l.node_id = n.id
      ORDER BY n.state = 'live' DESC, n.name`,
  )
  return rows.map((r) => ({
    ...toNodeRow(r),
    sandboxes: r.sandboxes,
    warm: r.warm,
    cpuMillisUsed: Number(r.cpu_used),
    memoryBytesUsed: Number(r.mem_used),
  }))
}

/**
 * The nodes that serve: live, with a heartbeat newer than `deadAfterS` (a node the reaper has not
 * looked at yet but which stopped beating is not offered work).
 */
export async function liveNodes(db: Db, deadAfterS: number): Promise<NodeRow[]> {
  const { rows } = await db.query<Raw>(
    `SELECT * FROM nodes WHERE state = 'live' AND heartbeat_at > now() - make_interval(secs => $1) ORDER BY name`,
    [deadAfterS],
  )
  return rows.map(toNodeRow)
}

/** Heartbeat period: limits.nodeHeartbeatMs, or shorter so that 5 fit in the dead-node time. */
export function heartbeatMs(deadAfterS: number): number {
  return Math.min(limits.nodeHeartbeatMs, Math.floor((deadAfterS * 1000) / 5))
}

/**
 * One agent's membership: registration, heartbeats, and the fence. Its `db` should be a pool of
 * its own: a heartbeat waiting behind a busy agent's queries would get it declared dead.
 */
export class NodeMembership {
  private timer: NodeJS.Timeout | undefined
  private epochValue = 0
  private fenced = false

  constructor(
    private readonly o: {
      db: Db
      spec: NodeSpec
      log: Logger
      /** Called once when the heartbeat finds this agent fenced: it must stop serving. */
      onFenced: (why: string) => void
      /** The cluster's dead-node time: at least 5 heartbeats fit in it. */
      deadAfterS: number
      heartbeatMs?: number
    },
  ) {}

  get epoch(): number {
    return this.epochValue
  }

  /**
   * Joins the cluster under a new epoch: a row of a previous life of this node (dead or not) is
   * taken over, and whatever that life owned was already handed over by the reaper or is this
   * life's to reconcile (the same host id).
   */
  async register(): Promise<number> {
    const s = this.o.spec
    const { rows } = await this.o.db.query<{ epoch: string }>(
      `INSERT INTO nodes (id, name, advertise_url, state, epoch, max_sandboxes, cpu_millis, memory_bytes, labels)
       VALUES ($1, $2, $3, 'live', 1, $4, $5, $6, $7)
       ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, advertise_url = EXCLUDED.advertise_url, state = 'live',
         epoch = nodes.epoch + 1, max_sandboxes = EXCLUDED.max_sandboxes, cpu_millis = EXCLUDED.cpu_millis,
         memory_bytes = EXCLUDED.memory_bytes, labels = EXCLUDED.labels, started_at = now(), heartbeat_at = now(),
         dead_at = NULL
       RETURNING epoch`,
      [
        s.id,
        s.name,
        s.advertiseUrl,
        s.capacity.maxSandboxes,
        s.capacity.cpuMillis,
        s.capacity.memoryBytes,
        JSON.stringify(s.labels),
      ],
    )
    this.epochValue = Number((rows[0] as { epoch: string }).epoch)
    this.o.log.info('node registered', {
      node: s.name,
      id: s.id,
      epoch: this.epochValue,
      url: s.advertiseUrl,
    })
    return this.epochValue
  }

  start(): void {
    this.timer = setInterval(() => void this.beat(), this.o.heartbeatMs ?? heartbeatMs(this.o.deadAfterS))
    this.timer.unref()
  }

  /** One heartbeat; false (and onFenced, once) when this agent no longer owns its row. */
  async beat(): Promise<boolean> {
    if (this.fenced) return false
    let rowCount: number | null
    try {
      ;({ rowCount } = await this.o.db.query(
        `UPDATE nodes SET heartbeat_at = now() WHERE id = $1 AND epoch = $2 AND state <> 'dead'`,
        [this.o.spec.id, this.epochValue],
      ))
    } catch (err) {
      // The database is away: nothing can be handed over without it either. Try again next beat.
      this.o.log.warn('node heartbeat failed', { err })
      return true
    }
    if (rowCount !== 0) return true
    this.fenced = true
    const why = `node ${this.o.spec.name} was declared dead or restarted elsewhere (epoch ${this.epochValue})`
    this.o.log.error('fenced: this agent no longer owns its node row; stopping', { why })
    this.o.onFenced(why)
    return false
  }

  /** A clean stop: the row goes to `draining`, so placement stops choosing it at once. */
  async leave(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    if (this.fenced) return
    await this.o.db
      .query(`UPDATE nodes SET state = 'draining' WHERE id = $1 AND epoch = $2 AND state = 'live'`, [
        this.o.spec.id,
        this.epochValue,
      ])
      .catch((err: unknown) => this.o.log.warn('could not mark the node draining', { err }))
  }
}
