// Warm pools: per template, `spec.pool.minIdle` sandboxes started ahead of claims (status `idle`,
// with the template's warm processes running and ready), so a claim costs one row update instead
// of a container start. A claim takes one with `FOR UPDATE SKIP LOCKED` (no two claimers can get
// the same sandbox, and they do not wait on each other); the pool refills in the background.
// A pool sandbox is started from one version of its template: when the template changes, the
// idle ones from the old version are never handed out and are replaced.
// In a cluster a template's pool is the cluster's, not each node's: the live nodes that carry the
// labels of its `pod.nodeSelector` share it (poolShare), so a pool of 3 over 3 agents is one warm
// sandbox each, and the survivors make up a dead node's share at their next pass. A node fills
// its part only while it has room (cluster/placement.ts reserveOn): warm slots and claims count
// against the same capacity, so a pool never takes a node past what it advertises.
import { createHash } from 'node:crypto'
import type { Db } from '../core/db.js'
import { crashOnBug } from '../core/assert.js'
import type { SandboxId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import { liveNodes } from './cluster/nodes.js'
import { releasePlacement, reserveOn } from './cluster/placement.js'
import { templateNodeSelector, templateResources, type TemplateRow } from './templates.js'

/** Which pool a template's warm sandboxes belong to: `<template team>/<template id>`. */
export function poolKey(t: Pick<TemplateRow, 'teamId' | 'id'>): string {
  return `${t.teamId}/${t.id}`
}

/** A version of the template: a changed spec, root file system or driver is a new one. */
export function poolSpec(t: Pick<TemplateRow, 'spec' | 'rootfs' | 'driver'>): string {
  return createHash('sha256')
    .update(JSON.stringify({ spec: t.spec, rootfs: t.rootfs, driver: t.driver }))
    .digest('hex')
    .slice(0, 16)
}

/** How many warm sandboxes a template asks for (0: no pool). */
export function poolTarget(t: Pick<TemplateRow, 'spec'>): number {
  const pool = t.spec['pool'] as { minIdle?: number; maxIdle?: number } | undefined
  const min = pool?.minIdle ?? 0
  const max = pool?.maxIdle ?? 0
  return Math.min(max > 0 ? Math.min(min, max) : min, limits.poolIdlePerTemplateMax)
}

/**
 * This node's part of a pool of `target` warm sandboxes shared by `peers` (the eligible live
 * nodes' ids): an equal part each, the remainder one each to the first ones in id order, so
 * every node computes the same split. 0 when this node is not one of them.
 */
export function poolShare(target: number, self: string, peers: readonly string[]): number {
  const sorted = [...peers].sort()
  const at = sorted.indexOf(self)
  if (at < 0) return 0
  return Math.floor(target / sorted.length) + (at < target % sorted.length ? 1 : 0)
}

function carries(labels: Record<string, string>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([k, v]) => labels[k] === v)
}

/** What the pool needs from the sandbox service. */
export interface PoolHost {
  /** Starts one warm sandbox of the template (row status `idle` once its warm processes are ready). */
  startWarm(t: TemplateRow, key: string, spec: string): Promise<void>
  /** Removes a sandbox and everything it has. */
  remove(id: SandboxId): Promise<void>
}

export class WarmPool {
  private readonly inFlight = new Map<string, number>()
  private readonly backoffUntil = new Map<string, number>()
  private ticking = false
  private tickAgain = false
  /** Pools this node had no room to fill (reported once, until the pool is whole again). */
  private readonly noRoom = new Set<string>()
  /** Fills finished so far, per pool key (tests and the bench wait on them). */
  readonly started = new Map<string, number>()

  constructor(
    private readonly opts: {
      db: Db
      hostId: string
      log: Logger
      host: PoolHost
      /** The cluster's dead-node time (S0_NODE_DEAD_AFTER_S): which nodes share a pool. */
      nodeDeadAfterS?: number
    },
  ) {}

  /**
   * The live nodes, when this host is one of them (an agent); undefined for a single server,
   * which is not a node and keeps whole pools.
   */
  private async peers(): Promise<Array<{ id: string; labels: Record<string, string> }> | undefined> {
    const nodes = await liveNodes(this.opts.db, this.opts.nodeDeadAfterS ?? limits.nodeDeadAfterSDefault)
    return nodes.some((n) => n.id === this.opts.hostId) ? nodes : undefined
  }

  /**
   * One pass: removes idle sandboxes of templates that changed, went away or shrank, and starts
   * what each pool lacks (in the background, at most startsInFlightMax at once).
   */
  async tick(): Promise<void> {
    // A fill that ends during a pass asks for another: a pass that stopped short (no room while
    // the fill's lease and row were both counted) then goes on at once, not at the next sweep.
    if (this.ticking) {
      this.tickAgain = true
      return
    }
    this.ticking = true
    try {
      do {
        this.tickAgain = false
        await this.pass()
      } while (this.tickAgain)
    } finally {
      this.ticking = false
    }
  }

  private async pass(): Promise<void> {
    const { rows: templates } = await this.opts.db.query<{
      team_id: string
      id: string
      spec: TemplateRow['spec']
      rootfs: TemplateRow['rootfs']
      driver: TemplateRow['driver']
    }>(`SELECT team_id, id, spec, rootfs, driver FROM sandbox_templates`)
    // Nodes are read only when some template has a pool (this runs every sweep).
    const peers = templates.some((t) => poolTarget(t) > 0) ? await this.peers() : undefined
    const wanted = new Map<string, { t: (typeof templates)[number]; spec: string; target: number }>()
    for (const t of templates) {
      let target = poolTarget(t)
      if (target > 0 && peers) {
        const selector = templateNodeSelector(t.spec)
        const eligible = peers.filter((p) => carries(p.labels, selector)).map((p) => p.id)
        target = poolShare(target, this.opts.hostId, eligible)
      }
      if (target > 0) wanted.set(poolKey({ teamId: t.team_id, id: t.id }), { t, spec: poolSpec(t), target })
    }
    const { rows: idle } = await this.opts.db.query<{
      id: SandboxId
      pool_key: string
      pool_spec: string
      status: string
    }>(
      `SELECT id, pool_key, pool_spec, status FROM sandboxes
        WHERE host = $1 AND pool_key IS NOT NULL AND status IN ('idle', 'starting')
        ORDER BY created_at DESC`,
      [this.opts.hostId],
    )
    // Idle ones count; starting ones are this process's fills in flight (counted in inFlight).
    const have = new Map<string, number>()
    for (const s of idle) {
      if (s.status !== 'idle') continue
      const w = wanted.get(s.pool_key)
      const n = have.get(s.pool_key) ?? 0
      if (!w || w.spec !== s.pool_spec || n >= w.target) {
        await this.opts.host
          .remove(s.id)
          .catch((err: unknown) => this.opts.log.warn('stale warm sandbox not removed', { id: s.id, err }))
        continue
      }
      have.set(s.pool_key, n + 1)
    }
    let total = idle.length
    for (const [key, w] of wanted) {
      if ((this.backoffUntil.get(key) ?? 0) > Date.now()) continue
      const missing = w.target - (have.get(key) ?? 0) - (this.inFlight.get(key) ?? 0)
      if ((have.get(key) ?? 0) >= w.target) this.noRoom.delete(key)
      for (let i = 0; i < missing; i++) {
        if (this.startsInFlight() >= limits.poolStartsInFlightMax) return
        if (total >= limits.poolIdlePerServerMax) return
        // A node's slot is leased like a claim until its row holds what it takes.
        const lease = peers ? await this.reserve(key, w.t.spec, missing - i) : undefined
        if (lease === null) break
        total++
        this.fill(key, w.spec, lease, {
          teamId: w.t.team_id,
          id: w.t.id,
          spec: w.t.spec,
          rootfs: w.t.rootfs,
          driver: w.t.driver,
          builtin: false,
          createdAt: new Date(0),
          updatedAt: new Date(0),
        })
      }
    }
  }

  private startsInFlight(): number {
    let n = 0
    for (const v of this.inFlight.values()) n += v
    return n
  }

  /** A lease on this node for one slot of the pool; null (reported once) when it has no room. */
  private async reserve(key: string, spec: TemplateRow['spec'], short: number): Promise<string | null> {
    const deadAfterS = this.opts.nodeDeadAfterS ?? limits.nodeDeadAfterSDefault
    const lease = await reserveOn(this.opts.db, this.opts.hostId, templateResources(spec), deadAfterS)
    if (lease === null && !this.noRoom.has(key)) {
      this.noRoom.add(key)
      this.opts.log.warn('warm pool short: this node has no room for another slot', { pool: key, short })
    }
    return lease
  }

  private fill(key: string, spec: string, lease: string | undefined, t: TemplateRow): void {
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1)
    void this.opts.host
      .startWarm(t, key, spec)
      .then(
        () => this.started.set(key, (this.started.get(key) ?? 0) + 1),
        (err: unknown) => {
          crashOnBug(err, this.opts.log, { pool: key })
          this.backoffUntil.set(key, Date.now() + limits.poolFailureBackoffMs)
          this.opts.log.warn('warm sandbox failed to start', { pool: key, err })
        },
      )
      .finally(async () => {
        // The slot's row counts from here (idle), or the start failed: either way the lease goes.
        if (lease)
          await releasePlacement(this.opts.db, lease).catch((err: unknown) =>
            this.opts.log.warn('warm slot lease not released (it expires)', { pool: key, err }),
          )
        this.inFlight.set(key, (this.inFlight.get(key) ?? 1) - 1)
        // Refill at once rather than at the next sweep: claims may be waiting for it.
        void this.tick()
      })
  }

  /** Resolves when no pool start is in flight. */
  async idle(): Promise<void> {
    while (this.startsInFlight() > 0 || this.ticking) await new Promise((r) => setTimeout(r, 20))
  }
}
