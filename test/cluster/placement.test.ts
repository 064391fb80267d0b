// Placement (docs/DEPLOY.md, "Placement") against Postgres alone: node rows as agents register
// them, sandbox rows and leases as claims leave them, and place() as API replicas call it. Room
// is counted in sandboxes, CPU and memory; a template's pod.nodeSelector picks the nodes; replicas
// placing at once never overfill a node. No agent or container runs here.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { openDb, type Db } from '../../src/core/db.js'
import { isS0Error, type S0Error } from '../../src/core/errors.js'
import type { TeamId } from '../../src/core/ids.js'
import { silentLogger } from '../../src/core/log.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import {
  claimDemand,
  listNodes,
  NO_DEMAND,
  NodeMembership,
  place,
  reserveOn,
  sandboxDemand,
  type Demand,
} from '../../src/sandboxes/cluster/index.js'
import { poolKey, WarmPool } from '../../src/sandboxes/pool.js'
import { TemplateCatalog, type TemplateSpec } from '../../src/sandboxes/templates.js'
import { freshDb, type TestDb } from '../support/db.js'

const MiB = 2 ** 20
const GiB = 2 ** 30
const DEAD_AFTER_S = 60
const TEAM = 'team-place' as TeamId

let tdb: TestDb
let db: Db

beforeAll(async () => {
  tdb = await freshDb()
  db = tdb.db
}, 60_000)

afterAll(async () => {
  await tdb.drop()
})

beforeEach(async () => {
  await db.query('DELETE FROM node_reservations')
  await db.query('DELETE FROM sandboxes')
  await db.query('DELETE FROM nodes')
})

/** A node as its agent registers it. */
async function node(
  name: string,
  capacity: { maxSandboxes?: number; cpuMillis?: number; memoryBytes?: number } = {},
  labels: Record<string, string> = {},
): Promise<string> {
  const id = `node-${name}`
  await new NodeMembership({
    db,
    spec: {
      id,
      name,
      advertiseUrl: `http://${name}.invalid:8081`,
      capacity: {
        maxSandboxes: capacity.maxSandboxes ?? 0,
        cpuMillis: capacity.cpuMillis ?? 0,
        memoryBytes: capacity.memoryBytes ?? 0,
      },
      labels,
    },
    log: silentLogger,
    onFenced: () => undefined,
    deadAfterS: DEAD_AFTER_S,
  }).register()
  return id
}

let seq = 0
/** A sandbox row on a node, holding what its stored config says. */
async function sandbox(
  host: string,
  o: { memoryBytes: number; cpuMillis: number; status?: string; template?: string; team?: string },
): Promise<string> {
  const id = `sb-place${String(seq++).padStart(8, '0')}`
  await db.query(
    `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host)
     VALUES ($1, $2, $3, $4, $5, 'runc', $6)`,
    [
      id,
      o.team ?? TEAM,
      o.template ?? 'busybox',
      o.status ?? 'running',
      JSON.stringify({ memory_bytes: o.memoryBytes, cpu_millis: o.cpuMillis, pids_max: 128 }),
      host,
    ],
  )
  return id
}

function demand(memoryBytes: number, cpuMillis: number, extra: Partial<Demand> = {}): Demand {
  return { memoryBytes, cpuMillis, labels: {}, ...extra }
}

async function refusal(p: Promise<unknown>): Promise<S0Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!isS0Error(err)) throw new Error(`expected an S0Error, got ${String(err)}`)
  return err
}

describe('place: room in sandboxes, CPU and memory', () => {
  it('skips a node whose memory is leased out and leases the demand on the chosen one', async () => {
    const full = await node('a-full', { memoryBytes: 1 * GiB })
    const roomy = await node('b-roomy', { memoryBytes: 4 * GiB })
    await sandbox(full, { memoryBytes: 768 * MiB, cpuMillis: 750 })
    await sandbox(roomy, { memoryBytes: 2 * GiB, cpuMillis: 2000 })
    // a-full is the less loaded by count and first by name, but 512 MiB do not fit in its 256.
    const p = await place(db, { teamId: TEAM, demand: demand(512 * MiB, 500) }, DEAD_AFTER_S)
    expect(p.node.id).toBe(roomy)
    const { rows } = await db.query<{ node_id: string; cpu_millis: number; memory_bytes: number }>(
      'SELECT node_id, cpu_millis::float8, memory_bytes::float8 FROM node_reservations WHERE id = $1',
      [p.reservationId],
    )
    expect(rows[0]).toEqual({ node_id: roomy, cpu_millis: 500, memory_bytes: 512 * MiB })
  })

  it('skips a node whose CPU is leased out, counting warm slots and pending leases', async () => {
    const busy = await node('a-busy', { cpuMillis: 2000 })
    const free = await node('b-free', { cpuMillis: 8000 })
    await sandbox(busy, { memoryBytes: 256 * MiB, cpuMillis: 500, status: 'idle' })
    await sandbox(busy, { memoryBytes: 256 * MiB, cpuMillis: 500, status: 'starting' })
    // Paused and failed sandboxes hold nothing.
    await sandbox(busy, { memoryBytes: 256 * MiB, cpuMillis: 4000, status: 'paused' })
    await sandbox(free, { memoryBytes: 256 * MiB, cpuMillis: 4000, status: 'running' })
    // 1000m used on a-busy (50%), 4000m on b-free (50%): a-busy wins on the name, once.
    const first = await place(db, { teamId: TEAM, demand: demand(0, 1000) }, DEAD_AFTER_S)
    expect(first.node.id).toBe(busy)
    // Its lease holds a-busy's last 1000m: the next claim of 1000m goes to b-free.
    const second = await place(db, { teamId: TEAM, demand: demand(0, 1000) }, DEAD_AFTER_S)
    expect(second.node.id).toBe(free)
  })

  it('places anything on a node with no bounds, least loaded by count', async () => {
    const a = await node('a-open')
    const b = await node('b-open')
    await sandbox(a, { memoryBytes: 64 * GiB, cpuMillis: 64_000 })
    const p = await place(db, { teamId: TEAM, demand: demand(32 * GiB, 32_000) }, DEAD_AFTER_S)
    expect(p.node.id).toBe(b)
    const q = await place(db, { teamId: TEAM, demand: demand(32 * GiB, 32_000) }, DEAD_AFTER_S)
    // One sandbox and one lease each now; a (sandbox) and b (lease) tie: by name.
    expect(q.node.id).toBe(a)
  })

  it('scores a node by its fullest bounded dimension', async () => {
    // a: 1 of 10 sandboxes (10%) but 900 MiB of 1 GiB (88%); b: 5 of 10 (50%), memory unbounded.
    const a = await node('a-mem', { maxSandboxes: 10, memoryBytes: 1 * GiB })
    const b = await node('b-count', { maxSandboxes: 10 })
    await sandbox(a, { memoryBytes: 900 * MiB, cpuMillis: 900 })
    for (let i = 0; i < 5; i++) await sandbox(b, { memoryBytes: 256 * MiB, cpuMillis: 250 })
    const p = await place(db, { teamId: TEAM, demand: demand(64 * MiB, 250) }, DEAD_AFTER_S)
    expect(p.node.id).toBe(b)
  })

  it('keeps the sandbox count: a node at max_sandboxes is skipped', async () => {
    const a = await node('a-one', { maxSandboxes: 1 })
    await sandbox(a, { memoryBytes: 256 * MiB, cpuMillis: 250 })
    const err = await refusal(place(db, { teamId: TEAM }, DEAD_AFTER_S))
    expect(err.code).toBe('unavailable')
    expect(err.retryAfterS).toBe(2)
    expect(err.message).toBe('every live node is at its sandbox capacity')
  })

  it('names the full dimension, what was asked and the most any node has free', async () => {
    const a = await node('a-small', { memoryBytes: 1 * GiB, cpuMillis: 4000 })
    const b = await node('b-small', { memoryBytes: 2 * GiB, cpuMillis: 4000 })
    await sandbox(a, { memoryBytes: 512 * MiB, cpuMillis: 500 })
    await sandbox(b, { memoryBytes: 1536 * MiB, cpuMillis: 500 })
    const mem = await refusal(place(db, { teamId: TEAM, demand: demand(2 * GiB, 1000) }, DEAD_AFTER_S))
    expect(mem.code).toBe('unavailable')
    expect(mem.retryAfterS).toBe(2)
    expect(mem.message).toBe(
      'no live node has 2048 MiB of memory free for this sandbox (largest free: 512 MiB on a-small)',
    )
    const cpu = await refusal(place(db, { teamId: TEAM, demand: demand(64 * MiB, 4000) }, DEAD_AFTER_S))
    expect(cpu.message).toBe(
      'no live node has 4000m of CPU free for this sandbox (largest free: 3500m on a-small)',
    )
    // Different nodes full in different dimensions: each is said.
    await node('c-counted', { maxSandboxes: 1 })
    await sandbox('node-c-counted', { memoryBytes: 0, cpuMillis: 0 })
    const mixed = await refusal(place(db, { teamId: TEAM, demand: demand(2 * GiB, 1000) }, DEAD_AFTER_S))
    expect(mixed.message).toBe(
      'no live node has room for this sandbox: 1 node is at its sandbox capacity; ' +
        '2 nodes have less than 2048 MiB of memory free (largest free: 512 MiB on a-small)',
    )
  })

  it('offers no work to a node that is draining or stopped beating', async () => {
    const a = await node('a-draining', {})
    const b = await node('b-silent', {})
    await db.query(`UPDATE nodes SET state = 'draining' WHERE id = $1`, [a])
    await db.query(`UPDATE nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, [b])
    const err = await refusal(place(db, { teamId: TEAM }, DEAD_AFTER_S))
    expect(err.message).toBe('no live node can run sandboxes')
  })
})

describe('place: labels (a template pod.nodeSelector)', () => {
  it('places only on nodes with every label, and says so when none has them', async () => {
    await node('a-plain', {})
    const gpu = await node('b-gpu', {}, { gpu: 'a100', zone: 'eu-1' })
    await node('c-other-gpu', {}, { gpu: 't4', zone: 'eu-1' })
    const p = await place(
      db,
      { teamId: TEAM, demand: demand(0, 0, { labels: { gpu: 'a100', zone: 'eu-1' } }) },
      DEAD_AFTER_S,
    )
    expect(p.node.id).toBe(gpu)
    const err = await refusal(
      place(db, { teamId: TEAM, demand: demand(0, 0, { labels: { gpu: 'h100' } }) }, DEAD_AFTER_S),
    )
    expect(err.code).toBe('unavailable')
    expect(err.message).toBe(
      "no live node carries the labels gpu=h100 this sandbox's template asks for (pod.nodeSelector)",
    )
  })

  it('says which labelled nodes are full', async () => {
    const gpu = await node('a-gpu', { memoryBytes: 1 * GiB }, { gpu: 'a100' })
    await node('b-plain', { memoryBytes: 64 * GiB })
    await sandbox(gpu, { memoryBytes: 1 * GiB, cpuMillis: 1000 })
    const err = await refusal(
      place(db, { teamId: TEAM, demand: demand(256 * MiB, 250, { labels: { gpu: 'a100' } }) }, DEAD_AFTER_S),
    )
    expect(err.message).toBe(
      'no live node with the labels gpu=a100 has 256 MiB of memory free for this sandbox (largest free: 0 MiB on a-gpu)',
    )
  })
})

describe('place: warm slots', () => {
  it('takes a full node that holds a warm slot, which already holds the claim', async () => {
    const warm = await node('b-warm', { memoryBytes: 512 * MiB, maxSandboxes: 2 })
    await node('a-cold', { memoryBytes: 4 * GiB })
    await sandbox(warm, { memoryBytes: 256 * MiB, cpuMillis: 500, status: 'idle', team: '' })
    await sandbox(warm, { memoryBytes: 256 * MiB, cpuMillis: 500, status: 'running' })
    const busybox = demand(256 * MiB, 500, { warmTemplate: 'busybox' })
    const p = await place(db, { teamId: TEAM, demand: busybox }, DEAD_AFTER_S)
    expect(p).toMatchObject({ warm: true, node: { id: warm } })
    // It leased nothing beyond the slot.
    const { rows } = await db.query<{ memory_bytes: number }>(
      'SELECT memory_bytes::float8 FROM node_reservations WHERE id = $1',
      [p.reservationId],
    )
    expect(rows[0]?.memory_bytes).toBe(0)
    // The one slot may be taken by that pending claim: the next goes where there is room.
    const q = await place(db, { teamId: TEAM, demand: busybox }, DEAD_AFTER_S)
    expect(q).toMatchObject({ warm: false, node: { name: 'a-cold' } })
  })

  it('counts what a claim asks beyond its warm slot, and a cold claim all of it', async () => {
    const warm = await node('b-warm', { memoryBytes: 1 * GiB })
    await node('a-cold', { memoryBytes: 8 * GiB })
    await sandbox(warm, { memoryBytes: 256 * MiB, cpuMillis: 500, status: 'idle', team: '' })
    await sandbox(warm, { memoryBytes: 512 * MiB, cpuMillis: 500, status: 'running' })
    // 256 MiB free, and the slot's 256: a claim of 512 MiB fits by resizing the slot...
    const resized = await place(
      db,
      { teamId: TEAM, demand: demand(512 * MiB, 500, { warmTemplate: 'busybox' }) },
      DEAD_AFTER_S,
    )
    expect(resized).toMatchObject({ warm: true, node: { id: warm } })
    const { rows } = await db.query<{ memory_bytes: number }>(
      'SELECT memory_bytes::float8 FROM node_reservations WHERE id = $1',
      [resized.reservationId],
    )
    expect(rows[0]?.memory_bytes).toBe(256 * MiB)
    await db.query('DELETE FROM node_reservations')
    // ...one of 1 GiB does not.
    const big = await place(
      db,
      { teamId: TEAM, demand: demand(1 * GiB, 500, { warmTemplate: 'busybox' }) },
      DEAD_AFTER_S,
    )
    expect(big).toMatchObject({ warm: false, node: { name: 'a-cold' } })
    await db.query('DELETE FROM node_reservations')
    await db.query(`DELETE FROM nodes WHERE name = 'a-cold'`)
    // A claim that starts cold (no warmTemplate: mounts, a snapshot) needs all 512 MiB free.
    const cold = await refusal(place(db, { teamId: TEAM, demand: demand(512 * MiB, 500) }, DEAD_AFTER_S))
    expect(cold.message).toBe(
      'no live node has 512 MiB of memory free for this sandbox (largest free: 256 MiB on b-warm)',
    )
  })
})

describe('place: concurrent replicas', () => {
  it('never overfills a node: of 30 claims over 3 replicas, exactly the 12 that fit are placed', async () => {
    const ids = [await node('a', { memoryBytes: 1 * GiB }), await node('b', { memoryBytes: 1 * GiB })]
    ids.push(await node('c', { memoryBytes: 1 * GiB }))
    // Each replica has its own pool: only the advisory lock serializes them.
    const replicas = [db, openDb(tdb.url, { poolSize: 3 }), openDb(tdb.url, { poolSize: 3 })]
    try {
      const results = await Promise.allSettled(
        Array.from({ length: 30 }, (_, i) =>
          place(
            replicas[i % replicas.length] as Db,
            { teamId: TEAM, demand: demand(256 * MiB, 250) },
            DEAD_AFTER_S,
          ),
        ),
      )
      const placed = results.filter((r) => r.status === 'fulfilled')
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
      expect(placed).toHaveLength(12)
      for (const r of refused) {
        expect((r.reason as S0Error).code).toBe('unavailable')
        expect((r.reason as S0Error).message).toMatch(/^no live node has 256 MiB of memory free/)
      }
      const { rows } = await db.query<{ node_id: string; mem: string; n: string }>(
        `SELECT node_id, sum(memory_bytes) AS mem, count(*) AS n FROM node_reservations GROUP BY node_id ORDER BY node_id`,
      )
      expect(rows.map((r) => [r.node_id, Number(r.mem), Number(r.n)])).toEqual(
        ids.map((id) => [id, 1 * GiB, 4]),
      )
    } finally {
      await Promise.all(replicas.slice(1).map((r) => r.close()))
    }
  }, 60_000)
})

describe('listNodes', () => {
  it('reports the CPU and memory leased next to the capacity', async () => {
    const a = await node('a', { cpuMillis: 4000, memoryBytes: 4 * GiB })
    await sandbox(a, { memoryBytes: 256 * MiB, cpuMillis: 500, status: 'idle' })
    await sandbox(a, { memoryBytes: 1 * GiB, cpuMillis: 1000 })
    await place(db, { teamId: TEAM, demand: demand(512 * MiB, 250) }, DEAD_AFTER_S)
    const [n] = await listNodes(db)
    expect(n).toMatchObject({
      sandboxes: 1,
      warm: 1,
      cpuMillisUsed: 1750,
      memoryBytesUsed: 1792 * MiB,
      capacity: { cpuMillis: 4000, memoryBytes: 4 * GiB },
    })
  })
})

describe('a node fills its warm slots only as far as it has room', () => {
  it('reserveOn leases a sandbox the node starts itself while it fits, as place() counts', async () => {
    const n = await node('a-self', { memoryBytes: 1 * GiB })
    await sandbox(n, { memoryBytes: 768 * MiB, cpuMillis: 0 })
    expect(await reserveOn(db, n, { memoryBytes: 512 * MiB, cpuMillis: 0 }, DEAD_AFTER_S)).toBeNull()
    const lease = await reserveOn(db, n, { memoryBytes: 256 * MiB, cpuMillis: 0 }, DEAD_AFTER_S)
    expect(lease).toMatch(/^pl-/)
    // The lease counts for claims: the node is full now.
    expect((await refusal(place(db, { teamId: TEAM, demand: demand(1 * MiB, 0) }, DEAD_AFTER_S))).code).toBe(
      'unavailable',
    )
    // A node that is not live gets nothing.
    expect(await reserveOn(db, 'node-nowhere', { memoryBytes: 0, cpuMillis: 0 }, DEAD_AFTER_S)).toBeNull()
  })

  it("a warm pool stops at the node's memory, counting its other sandboxes, says so once, and fills when room returns", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 's0-placement-pool-'))
    try {
      const catalog = new TemplateCatalog(db, new TemplateStore({ dir }))
      await catalog.ensureBuiltins()
      const tpl = await catalog.create(
        TEAM,
        'pooled-512',
        { mainContainer: { image: 's0/busybox', resources: { memory: '512Mi' } }, pool: { minIdle: 4 } },
        { role: 'member' },
      )
      const n = await node('a-pool', { memoryBytes: 2 * GiB })
      const busy = await sandbox(n, { memoryBytes: 1 * GiB, cpuMillis: 0 })
      const warnings: string[] = []
      // The pool's host as the database sees it: each start leaves the idle row a real start
      // leaves (the container side of a start is covered by the warm pool tests of the API).
      const pool = new WarmPool({
        db,
        hostId: n,
        log: { ...silentLogger, warn: (msg: string) => void warnings.push(msg) },
        nodeDeadAfterS: DEAD_AFTER_S,
        host: {
          startWarm: async (t, key, spec) => {
            await db.query(
              `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host, pool_key, pool_spec)
               VALUES ($1, '', $2, 'idle', $3, 'runc', $4, $5, $6)`,
              [
                `sb-pool${String(seq++).padStart(9, '0')}`,
                t.id,
                JSON.stringify({ memory_bytes: 512 * MiB, cpu_millis: 0, pids_max: 128 }),
                n,
                key,
                spec,
              ],
            )
          },
          remove: async (id) => void (await db.query('DELETE FROM sandboxes WHERE id = $1', [id])),
        },
      })
      const slots = async (): Promise<number> =>
        Number(
          (
            await db.query<{ n: string }>(
              `SELECT count(*) AS n FROM sandboxes WHERE pool_key = $1 AND status = 'idle'`,
              [poolKey(tpl)],
            )
          ).rows[0]?.n,
        )
      await pool.tick()
      await pool.idle()
      expect(await slots()).toBe(2)
      expect(warnings.filter((w) => w.includes('no room'))).toHaveLength(1)
      expect((await db.query('SELECT id FROM node_reservations')).rows).toEqual([])
      // Room again: the pool takes it.
      await db.query('DELETE FROM sandboxes WHERE id = $1', [busy])
      await pool.tick()
      await pool.idle()
      expect(await slots()).toBe(4)
    } finally {
      await db.query(`DELETE FROM sandbox_templates WHERE id = 'pooled-512'`)
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('claimDemand / sandboxDemand', () => {
  let dir: string
  let catalog: TemplateCatalog

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 's0-placement-'))
    catalog = new TemplateCatalog(db, new TemplateStore({ dir }))
    await catalog.ensureBuiltins()
    const spec: TemplateSpec = {
      mainContainer: { image: 's0/busybox', resources: { memory: '1Gi', cpu: '3' } },
      pod: { nodeSelector: { gpu: 'a100' } },
    }
    await catalog.create(TEAM, 'gpu-box', spec, { role: 'member' })
  })

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it("is the template's resources and nodeSelector, as the claim will resolve them", async () => {
    expect(await claimDemand(db, TEAM, { template: 'gpu-box' })).toEqual({
      memoryBytes: 1 * GiB,
      cpuMillis: 3000,
      labels: { gpu: 'a100' },
      warmTemplate: 'gpu-box',
    })
    // The built-in, which every team sees.
    expect(await claimDemand(db, TEAM, { template: 'busybox' })).toEqual({
      memoryBytes: 256 * MiB,
      cpuMillis: 500,
      labels: {},
      warmTemplate: 'busybox',
    })
  })

  it('follows the claim: resources.memory (CPU follows it), and what makes it start cold', async () => {
    expect(
      await claimDemand(db, TEAM, { template: 'gpu-box', config: { resources: { memory: '2Gi' } } }),
    ).toEqual({ memoryBytes: 2 * GiB, cpuMillis: 2000, labels: { gpu: 'a100' }, warmTemplate: 'gpu-box' })
    const mounts = [{ sandboxvolume_id: 'v', mount_point: '/data' }]
    expect(await claimDemand(db, TEAM, { template: 'busybox', mounts })).not.toHaveProperty('warmTemplate')
    expect(await claimDemand(db, TEAM, { template: 'busybox', snapshot_id: 'snap' })).not.toHaveProperty(
      'warmTemplate',
    )
    expect(
      await claimDemand(db, TEAM, {
        template: 'busybox',
        config: { resources: { ephemeralStorage: '2Gi' } },
      }),
    ).not.toHaveProperty('warmTemplate')
  })

  it('asks for nothing when the claim will be refused, so its agent says why', async () => {
    expect(await claimDemand(db, TEAM, { template: 'nope' })).toEqual(NO_DEMAND)
    expect(await claimDemand(db, 'team-other', { template: 'gpu-box' })).toEqual(NO_DEMAND)
    expect(
      await claimDemand(db, TEAM, { template: 'gpu-box', config: { resources: { memory: 'lots' } } }),
    ).toEqual(NO_DEMAND)
    expect(await claimDemand(db, TEAM, undefined)).toEqual(NO_DEMAND)
    expect(await claimDemand(db, TEAM, { template: 7 })).toEqual(NO_DEMAND)
  })

  it("of a sandbox placed again: its row's resources, its template's labels", async () => {
    const host = await node('a-dead', {})
    const id = await sandbox(host, {
      memoryBytes: 2 * GiB,
      cpuMillis: 2000,
      status: 'paused',
      template: 'gpu-box',
    })
    expect(await sandboxDemand(db, id)).toEqual({
      memoryBytes: 2 * GiB,
      cpuMillis: 2000,
      labels: { gpu: 'a100' },
    })
    expect(await sandboxDemand(db, 'sb-missing0000000')).toEqual(NO_DEMAND)
  })
})
