// Scale-out bench (`npm run bench -- scale`, issue 17 §6), on one machine: API replicas and
// agents as real processes (`s0 api`, `s0 agent` in their own PID and mount namespaces) over one
// embedded Postgres and one s3rver, the same code paths as a cluster of hosts. Figures:
// - scale_claims_per_s_3_agents: cold claims/s (busybox, concurrency C) through a replica onto
//   3 agents, against the same through a replica onto 1 agent, in this run. On a 2-core machine
//   the agents share the cores, so this shows what placement and forwarding cost, not a speed-up.
// - api_proxy_hop_p50: a cmd context run through a replica against the same call sent straight
//   to the sandbox's agent (with the cluster token), interleaved.
// - node_loss_resume_p95: a paused sandbox's node is killed (SIGKILL of its namespace's PID 1);
//   once the node is declared dead, from the first call until that call answered from another node.
// - containerd_start_overhead_<runtime>: a sandbox start to its first exec through our containerd
//   against the runtime's CLI (bench/containerd-start.ts).
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { encodePrincipal } from '../src/api/cluster-auth.js'
import { authenticate } from '../src/accounts/index.js'
import { openDb, type Db } from '../src/core/db.js'
import { startEmbeddedPg } from '../src/core/embedded-pg.js'
import { createLogger } from '../src/core/log.js'
import { startClusterProcesses, type Cluster } from '../test/support/cluster-processes.js'
import { TEMPLATE_DIR } from './bench-server.js'
import { measureContainerdStartOverhead } from './containerd-start.js'
import {
  figure,
  freePort,
  gitCommit,
  machineInfo,
  median,
  note,
  round,
  type Figure,
  type SuiteResult,
} from './lib.js'
import { pct } from './sandbox-api.js'

const CLAIMS = Number(process.env['S0_BENCH_SCALE_CLAIMS'] ?? 60)
const CONCURRENCY = Number(process.env['S0_BENCH_SCALE_CONCURRENCY'] ?? 12)
const HOP_RUNS = Number(process.env['S0_BENCH_SCALE_HOP_RUNS'] ?? 200)
const LOSS_RUNS = Number(process.env['S0_BENCH_SCALE_LOSS_RUNS'] ?? 5)
const DEAD_AFTER_S = 3
const PARTS = new Set(
  (process.env['S0_BENCH_SCALE_PARTS'] ?? 'claims,hop,loss,containerd').split(',').map((p) => p.trim()),
)

interface Pg {
  url: string
  /** A fresh database for one cluster. */
  database(): Promise<{ url: string; drop(): Promise<void> }>
  stop(): Promise<void>
}

async function openPg(): Promise<Pg> {
  const work = await mkdtemp(path.join(os.tmpdir(), 's0-bench-scale-'))
  await chmod(work, 0o755)
  const pg = await startEmbeddedPg({
    dir: path.join(work, 'pg'),
    port: await freePort(),
    log: createLogger('warn'),
  })
  const admin = openDb(pg.url, { poolSize: 1 })
  let n = 0
  return {
    url: pg.url,
    database: async () => {
      const name = `scale_${process.pid}_${n++}`
      await admin.query(`CREATE DATABASE ${name}`)
      const u = new URL(pg.url)
      u.pathname = `/${name}`
      return {
        url: u.toString(),
        drop: () => admin.query(`DROP DATABASE ${name} WITH (FORCE)`).then(() => undefined),
      }
    },
    stop: async () => {
      await admin.close()
      await pg.stop()
      await rm(work, { recursive: true, force: true })
    },
  }
}

async function cluster(pg: Pg, agents: number): Promise<{ c: Cluster; db: Db; token: string }> {
  const database = await pg.database()
  const c = await startClusterProcesses({
    databaseUrl: database.url,
    dropDatabase: database.drop,
    apis: 1,
    agents,
    deadAfterS: DEAD_AFTER_S,
    env: {
      S0_RUNTIMES: 'runc',
      S0_TEMPLATE_DIR: TEMPLATE_DIR,
      ...(process.env['S0_BENCH_NETWORK'] === 'false' ? { S0_SANDBOX_NETWORK: 'false' } : {}),
    },
  })
  return { c, db: openDb(database.url, { poolSize: 2 }), token: await c.token() }
}

async function call<T>(url: string, token: string, method: string, p: string, body?: unknown): Promise<T> {
  const res = await fetch(url + p, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  })
  const text = await res.text()
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 300)}`)
  return (JSON.parse(text) as { data: T }).data
}

/** POST /api/v1/sandboxes (the wire names the id `sandbox_id`). */
async function claimVia(url: string, token: string): Promise<{ id: string }> {
  const r = await call<{ sandbox_id: string }>(url, token, 'POST', '/api/v1/sandboxes', {
    template: 'busybox',
  })
  return { id: r.sandbox_id }
}

/** Cold claims/s through the replica: CLAIMS claims, CONCURRENCY at a time; then deleted. */
async function claimRate(pg: Pg, agents: number): Promise<{ perS: number; failures: number }> {
  const { c, db, token } = await cluster(pg, agents)
  const api = (c.apis[0] as Cluster['apis'][number]).url
  try {
    // One claim per agent first: template caches and runtimes warm, as on a cluster in service.
    for (let i = 0; i < agents; i++) {
      const s = await claimVia(api, token)
      await call(api, token, 'DELETE', `/api/v1/sandboxes/${s.id}`)
    }
    const ids: string[] = []
    let failures = 0
    let next = 0
    const t0 = process.hrtime.bigint()
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < CLAIMS) {
          next++
          await claimVia(api, token).then(
            (s) => void ids.push(s.id),
            () => void failures++,
          )
        }
      }),
    )
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9
    for (const id of ids) await call(api, token, 'DELETE', `/api/v1/sandboxes/${id}`).catch(() => undefined)
    return { perS: ids.length / seconds, failures }
  } finally {
    await db.close()
    await c.close()
  }
}

async function claims(pg: Pg): Promise<Figure> {
  note(`claims: ${CLAIMS} cold busybox claims, ${CONCURRENCY} at a time, 1 agent then 3 agents`)
  const one = await claimRate(pg, 1)
  const three = await claimRate(pg, 3)
  return figure({
    name: 'scale_claims_per_s_3_agents',
    value: round(three.perS),
    unit: 'claims/s',
    baseline: {
      name: 'the same claims through one replica onto 1 agent (same run)',
      value: round(one.perS),
      unit: 'claims/s',
    },
    higherIsBetter: true,
    target: { ratio: 0.9 },
    detail: {
      claims: CLAIMS,
      concurrency: CONCURRENCY,
      failures_3: three.failures,
      failures_1: one.failures,
    },
  })
}

async function hopAndLoss(pg: Pg): Promise<Figure[]> {
  const { c, db, token } = await cluster(pg, 3)
  const api = (c.apis[0] as Cluster['apis'][number]).url
  const out: Figure[] = []
  try {
    if (PARTS.has('hop')) {
      note(`api_proxy_hop: ${HOP_RUNS} cmd context runs each way, interleaved`)
      const sb = await claimVia(api, token)
      const { rows } = await db.query<{ host: string }>('SELECT host FROM sandboxes WHERE id = $1', [sb.id])
      const owner = c.agents.find((a) => a.id === rows[0]?.host) as Cluster['apis'][number]
      const auth = await authenticate(db, token)
      const direct = async (p: string, body: unknown): Promise<{ id: string }> => {
        const res = await fetch(owner.url + p, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-s0-cluster-token': c.clusterToken,
            'x-s0-principal': encodePrincipal(auth),
          },
          body: JSON.stringify(body),
        })
        if (!res.ok) throw new Error(`direct ${p}: ${res.status} ${await res.text()}`)
        return ((await res.json()) as { data: { id: string } }).data
      }
      const body = { type: 'cmd', cmd: { command: ['true'] }, wait_until_done: true }
      const viaReplica: number[] = []
      const straight: number[] = []
      const p = `/api/v1/sandboxes/${sb.id}/contexts`
      // Each run is deleted after it is timed (a sandbox keeps at most 64 contexts), and the two
      // ways take turns going first: in a fixed order (replica, then direct) the direct call,
      // always second, came out 56 ms slower, an order effect rather than a hop.
      const timed = async (
        f: () => Promise<{ id: string }>,
        into: number[],
        warm: boolean,
      ): Promise<void> => {
        const t0 = process.hrtime.bigint()
        const c = await f()
        if (!warm) into.push(Number(process.hrtime.bigint() - t0) / 1e6)
        await call(api, token, 'DELETE', `${p}/${c.id}`)
      }
      const viaCall = (): Promise<{ id: string }> => call<{ id: string }>(api, token, 'POST', p, body)
      const directCall = (): Promise<{ id: string }> => direct(p, body)
      for (let i = 0; i < HOP_RUNS + 10; i++) {
        const warm = i < 10
        if (i % 2 === 0) {
          await timed(viaCall, viaReplica, warm)
          await timed(directCall, straight, warm)
        } else {
          await timed(directCall, straight, warm)
          await timed(viaCall, viaReplica, warm)
        }
      }
      const hop = median(viaReplica) - median(straight)
      out.push(
        figure({
          name: 'api_proxy_hop_p50',
          value: round(hop),
          unit: 'ms extra',
          baseline: {
            name: 'the same cmd context run sent straight to its agent (p50)',
            value: round(median(straight)),
            unit: 'ms',
          },
          higherIsBetter: false,
          target: { value: 3 },
          detail: {
            runs: HOP_RUNS,
            via_replica_p50_ms: round(median(viaReplica)),
            direct_p50_ms: round(median(straight)),
            via_replica_p95_ms: round(pct(viaReplica, 95)),
            direct_p95_ms: round(pct(straight, 95)),
          },
        }),
      )
      await call(api, token, 'DELETE', `/api/v1/sandboxes/${sb.id}`)
    }
    if (PARTS.has('loss')) out.push(await nodeLoss(c, db, token, api))
  } finally {
    await db.close()
    await c.close()
  }
  return out
}

async function nodeLoss(c: Cluster, db: Db, token: string, api: string): Promise<Figure> {
  note(`node_loss_resume: ${LOSS_RUNS} paused sandboxes whose node is killed`)
  const samples: number[] = []
  const deadWaits: number[] = []
  for (let i = 0; i < LOSS_RUNS; i++) {
    const sb = await claimVia(api, token)
    await call(api, token, 'POST', `/api/v1/sandboxes/${sb.id}/pause`)
    for (let k = 0; k < 600; k++) {
      const s = await call<{ status: string }>(api, token, 'GET', `/api/v1/sandboxes/${sb.id}`)
      if (s.status === 'paused') break
      await new Promise((r) => setTimeout(r, 50))
    }
    const { rows } = await db.query<{ host: string }>('SELECT host FROM sandboxes WHERE id = $1', [sb.id])
    const victim = c.agents.find((a) => a.id === rows[0]?.host) as Cluster['agents'][number]
    const killed = process.hrtime.bigint()
    await victim.kill()
    for (let k = 0; k < 400; k++) {
      const { rows: n } = await db.query<{ state: string }>('SELECT state FROM nodes WHERE id = $1', [
        victim.id,
      ])
      if (n[0]?.state === 'dead') break
      await new Promise((r) => setTimeout(r, 50))
    }
    deadWaits.push(Number(process.hrtime.bigint() - killed) / 1e6)
    // The first call: a command, which wakes the sandbox on a live node (auto-resume).
    const t0 = process.hrtime.bigint()
    for (let k = 0; k < 100; k++) {
      const ok = await call(api, token, 'POST', `/api/v1/sandboxes/${sb.id}/contexts`, {
        type: 'cmd',
        cmd: { command: ['true'] },
        wait_until_done: true,
      }).then(
        () => true,
        () => false,
      )
      if (ok) break
      await new Promise((r) => setTimeout(r, 100)) // 503 "waking up": retry as the SDK does
    }
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6)
    await call(api, token, 'DELETE', `/api/v1/sandboxes/${sb.id}`)
    await victim.start()
  }
  return figure({
    name: 'node_loss_resume_p95',
    value: round(pct(samples, 95)),
    unit: 'ms',
    baseline: {
      name: `time from the kill until the node was declared dead (S0_NODE_DEAD_AFTER_S=${DEAD_AFTER_S}), p50`,
      value: round(median(deadWaits)),
      unit: 'ms',
    },
    higherIsBetter: false,
    target: { value: 5000 },
    detail: { runs: LOSS_RUNS, samples_ms: samples.map((x) => round(x)), p50_ms: round(median(samples)) },
  })
}

async function containerd(): Promise<Figure[]> {
  note('containerd_start_overhead: runc and runsc, direct CLI vs our containerd, interleaved')
  const rows = await measureContainerdStartOverhead()
  return rows.map((r) =>
    figure({
      name: `containerd_start_overhead_${r.runtime}`,
      value: round(r.containerd_ms_p50),
      unit: 'ms (start to first exec, p50)',
      baseline: {
        name: `the ${r.runtime} CLI driver, same path (p50)`,
        value: round(r.direct_ms_p50),
        unit: 'ms',
      },
      higherIsBetter: false,
      target: {},
      detail: { overhead_ms: round(r.overhead_ms), runs: r.runs },
    }),
  )
}

export async function runScaleSuite(): Promise<SuiteResult> {
  const startedAt = new Date().toISOString()
  const figures: Figure[] = []
  const pg = await openPg()
  try {
    if (PARTS.has('claims')) figures.push(await claims(pg))
    if (PARTS.has('hop') || PARTS.has('loss')) figures.push(...(await hopAndLoss(pg)))
  } finally {
    await pg.stop()
  }
  if (PARTS.has('containerd')) figures.push(...(await containerd()))
  return { suite: 'scale', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
