// Scale-out (issue 17, docs/DEPLOY.md) on one machine: 2 API replicas and 3 agents, each agent in
// network, PID and mount namespaces of its own, over one Postgres and one s3rver. The official SDK goes
// through either replica; claims spread over the agents; a node lost with kill -9 of its
// namespace's PID 1 is declared dead, its paused sandbox resumes on another node with every file,
// its volume writer is fenced, and it adopts nothing when it comes back; a replica killed under
// load costs a retrying client nothing. Then SSH through the replicas (ssh-cases.ts), last.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import path from 'node:path'
import { promisify } from 'node:util'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openDb, type Db } from '../../src/core/db.js'
import { isS0Error } from '../../src/core/errors.js'
import { PgMetadataStore } from '../../src/snapshots/metadata-store-pg.js'
import { startCluster, type Cluster } from '../support/cluster.js'
import { hostOf, ingress, until } from '../services/support.js'
import { missingPrerequisite, TEMPLATE_CACHE_DIR } from '../runtime/template-cache.js'
import { lifecycleSdkCases } from '../api/sandboxes-lifecycle-cases.js'
import { quickstartSdkCases } from '../api/sandboxes-quickstart-cases.js'
import { sessionsSdkCases } from '../api/sessions-cases.js'
import { volumesSdkCases } from '../api/volumes-cases.js'
import { sshCases } from './ssh-cases.js'

let cluster: Cluster
let db: Db
let skip = false
/** Where the SDK's cases go (test/api/sandboxes-*-cases.ts): replica 0, replica 1. */
let replicaTargets: { url: string; token: string }[] | undefined
const DEAD_AFTER_S = 5
const S0_MAIN = path.join(import.meta.dirname, '..', 'support', 's0-main.ts')

beforeAll(async () => {
  if (missingPrerequisite(process.getuid?.() === 0 ? undefined : 'agents need root (namespaces, runc)')) {
    skip = true
    return
  }
  cluster = await startCluster({
    apis: 2,
    agents: 3,
    ssh: true,
    deadAfterS: DEAD_AFTER_S,
    // Agent 0 alone carries gpu=yes: a template's pod.nodeSelector can ask for it.
    agentLabels: (i) => (i === 0 ? 'zone=a,gpu=yes' : 'zone=a'),
    env: { S0_RUNTIMES: 'runc', S0_TEMPLATE_DIR: TEMPLATE_CACHE_DIR },
  })
  db = openDb(cluster.databaseUrl, { poolSize: 2 })
  const token = await cluster.token()
  replicaTargets = cluster.apis.map((a) => ({ url: a.url, token }))
}, 300_000)

afterAll(async () => {
  await db?.close()
  await cluster?.close()
}, 120_000)

const client = async (replica: number): Promise<Client> =>
  new Client({
    token: await cluster.token(),
    baseUrl: (cluster.apis[replica] as Cluster['apis'][number]).url,
  })

async function nodeOf(id: string): Promise<string> {
  const { rows } = await db.query<{ host: string }>('SELECT host FROM sandboxes WHERE id = $1', [id])
  return (rows[0] as { host: string }).host
}

const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }
const sortKeys = (o: Record<string, number>): Record<string, number> =>
  Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)))
const sha = (s: string): string => createHash('sha256').update(s).digest('hex')

describe('a cluster of 2 API replicas and 3 agents', () => {
  it('registers every agent as a live node', async ({ skip: skipTest }) => {
    if (skip) skipTest()
    // An agent answers /readyz as soon as it listens, and registers right after.
    const ids = cluster.agents.map((a) => a.id).sort()
    await until(async () => {
      const { rows } = await db.query<{ id: string }>(`SELECT id FROM nodes WHERE state = 'live' ORDER BY id`)
      return JSON.stringify(rows.map((r) => r.id)) === JSON.stringify(ids) ? true : undefined
    }, 'every agent registered live')
    const { rows } = await db.query<{ id: string; state: string }>('SELECT id, state FROM nodes ORDER BY id')
    expect(rows.map((r) => r.id)).toEqual(ids)
    expect(rows.every((r) => r.state === 'live')).toBe(true)
  })

  it('serves the SDK through either replica: claim, commands, files, a WebSocket context, watches', async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    const a = await client(0)
    const b = await client(1)
    const sb = await a.sandboxes.claim('busybox')
    expect(cluster.agents.map((x) => x.id)).toContain(await nodeOf(sb.id))
    expect((await sb.cmd('echo hello')).stdout).toBe('hello\n')
    const via = b.sandbox(sb.id)
    await via.writeFile('/root/f.txt', 'through replica b')
    expect(new TextDecoder().decode(await sb.readFile('/root/f.txt'))).toBe('through replica b')
    // A cmd context's WebSocket, forwarded as bytes by the replica.
    const cat = await via.createContext({ type: 'cmd', cmd: { command: ['cat'] }, waitUntilDone: false })
    const ws = await via.connectWsContext(cat.id)
    ws.sendInput('through-ws\n', 'req-1')
    let seen = ''
    for await (const o of ws.outputs()) {
      if (o.source === 'stdout') seen += o.data
      if (seen.includes('through-ws\n')) break
    }
    ws.close()
    expect(seen).toBe('through-ws\n')
    // A watch (NDJSON, a long response) through the other replica.
    const watch = await sb.watchObservabilityEvents()
    const actions: string[] = []
    for await (const l of watch) {
      if (l.type === 'event') actions.push((l.data as { action: string }).action)
      if (actions.includes('sandbox.claim')) break
    }
    watch.body.cancel().catch(() => undefined)
    expect(actions).toContain('sandbox.claim')
    await b.sandboxes.delete(sb.id)
  }, 120_000)

  it("routes an app service's public URL through either replica to the sandbox's agent", async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    const sandbox = await (await client(1)).sandboxes.claim('busybox')
    await sandbox.writeFile('/srv/index.html', 'served by its agent')
    await sandbox.updateServices([
      {
        id: 'web',
        port: 8000,
        runtime: { type: 'cmd', command: ['httpd', '-f', '-p', '8000', '-h', '/srv'] },
        ingress: { _public: true, routes: [{ id: 'all', pathPrefix: '/', resume: true }] },
      },
    ])
    const web = await until(async () => {
      const v = await sandbox.getServices()
      return v.services[0]?.publishable ? v.services[0] : undefined
    }, 'the service to be publishable')
    // The public domain is replica 0's listener (S0_EXPOSURE_DOMAIN): both replicas route it.
    expect(web.publicUrl).toBe(`http://web--${sandbox.id}.localhost:${cluster.apis[0]?.port}`)
    for (const replica of cluster.apis) {
      const page = await ingress(replica.url, hostOf(web.publicUrl as string), '/index.html')
      expect(page.status, replica.name).toBe(200)
      expect(page.text).toBe('served by its agent')
    }
    await (await client(0)).sandboxes.delete(sandbox.id)
  }, 120_000)

  it('lists the nodes to an operator (GET /api/v1/nodes, s0 node ls), served by a replica itself', async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    const token = await cluster.token()
    const res = await fetch(`${cluster.apis[0]?.url}/api/v1/nodes`, {
      headers: { authorization: `Bearer ${token}` },
    })
    const { nodes } = (
      (await res.json()) as { data: { nodes: { id: string; state: string; epoch: number }[] } }
    ).data
    expect(nodes.map((n) => n.id).sort()).toEqual(cluster.agents.map((a) => a.id).sort())
    expect(nodes.every((n) => n.state === 'live')).toBe(true)
    const cli = await promisify(execFile)(process.execPath, ['--import', 'tsx', S0_MAIN, 'node', 'ls'], {
      env: { ...process.env, S0_API_URL: cluster.apis[1]?.url, S0_TOKEN: token, NODE_NO_WARNINGS: '1' },
    })
    for (const a of cluster.agents) expect(cli.stdout).toContain(a.name)
    expect(cli.stdout).toMatch(/NAME\s+STATE\s+EPOCH/)
  }, 60_000)

  it('places concurrent claims on every agent, evenly, with no failure and no double claim', async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    // 300 as issue 17 asks (about 30 s here); `npm run test:long` places 600.
    const n = Number(process.env['S0_TEST_CLUSTER_CLAIMS'] ?? 300)
    // More than the default team's 100 active sandboxes (quotas are a replica's own routes).
    const lifted = await fetch(`${cluster.apis[1]?.url}/api/v1/quotas/active_sandboxes`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${await cluster.token()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ limit_value: 1000 }),
    })
    expect(lifted.status).toBe(200)
    const clients = [await client(0), await client(1)]
    const results = await Promise.allSettled(
      Array.from({ length: n }, (_, i) => (clients[i % 2] as Client).sandboxes.claim('busybox')),
    )
    const failed = results.filter((r) => r.status === 'rejected')
    expect(failed.map((f) => String((f as PromiseRejectedResult).reason))).toEqual([])
    const ids = results.map((r) => (r as PromiseFulfilledResult<{ id: string }>).value.id)
    expect(new Set(ids).size).toBe(n)
    const { rows } = await db.query<{ host: string; n: string }>(
      `SELECT host, count(*) AS n FROM sandboxes WHERE id = ANY($1) GROUP BY host`,
      [ids],
    )
    const per = cluster.agents.map((x) => Number(rows.find((r) => r.host === x.id)?.n ?? 0))
    for (const c of per) {
      expect(c).toBeGreaterThanOrEqual(Math.floor((n / 3) * 0.8))
      expect(c).toBeLessThanOrEqual(Math.ceil((n / 3) * 1.2))
    }
    // Cleanup, ten at a time: a burst of deletes is not what this test measures.
    for (let i = 0; i < ids.length; i += 10)
      await Promise.all(ids.slice(i, i + 10).map((id, k) => (clients[k % 2] as Client).sandboxes.delete(id)))
  }, 1_200_000)

  it("shares a template's warm pool among the nodes its nodeSelector allows, and places its claims there", async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    const token = await cluster.token()
    const api = async (method: string, p: string, body?: unknown): Promise<number> => {
      const r = await fetch(`${cluster.apis[0]?.url}/api/v1${p}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
      await r.arrayBuffer()
      return r.status
    }
    const spec = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      mainContainer: { image: 's0/busybox', resources: { memory: '128Mi' } },
      pool: { minIdle: 3, maxIdle: 3 },
      ...extra,
    })
    const gpu = (cluster.agents[0] as Cluster['agents'][number]).id
    const slots = async (): Promise<Record<string, number>> => {
      const { rows } = await db.query<{ host: string; n: number }>(
        `SELECT host, count(*)::int AS n FROM sandboxes
          WHERE template_id = 'pooled' AND status = 'idle' GROUP BY host`,
      )
      return Object.fromEntries(rows.map((r) => [r.host, r.n]))
    }
    const each = (n: Record<string, number>): Record<string, number> =>
      sortKeys(Object.fromEntries(Object.entries(n).filter(([, v]) => v > 0)))
    // A pool of 3 over 3 agents is one warm sandbox on each, not 3 on each.
    expect(await api('POST', '/templates', { template_id: 'pooled', spec: spec() })).toBe(201)
    const spread = Object.fromEntries(cluster.agents.map((a) => [a.id, 1]))
    await until(
      async () =>
        JSON.stringify(each(await slots())) === JSON.stringify(sortKeys(spread)) ? true : undefined,
      'one warm sandbox of the pool on each agent',
      60_000,
    )
    // Only agent 0 carries gpu=yes: the whole pool moves there, and so do the claims.
    expect(
      await api('PUT', '/templates/pooled', { spec: spec({ pod: { nodeSelector: { gpu: 'yes' } } }) }),
    ).toBeLessThan(300)
    await until(
      async () => (JSON.stringify(each(await slots())) === JSON.stringify({ [gpu]: 3 }) ? true : undefined),
      'the pool on the labelled agent alone',
      60_000,
    )
    const b = await client(1)
    const claimed = await b.sandboxes.claim('pooled')
    expect(await nodeOf(claimed.id)).toBe(gpu)
    await b.sandboxes.delete(claimed.id)
    // No node carries what it asks: a claim is refused, saying why.
    expect(
      await api('PUT', '/templates/pooled', {
        spec: spec({ pool: { minIdle: 0, maxIdle: 0 }, pod: { nodeSelector: { gpu: 'h100' } } }),
      }),
    ).toBeLessThan(300)
    await expect(b.sandboxes.claim('pooled')).rejects.toThrow(/no live node carries the labels gpu=h100/)
    expect(await api('DELETE', '/templates/pooled')).toBeLessThan(300)
    await until(
      async () => (Object.keys(each(await slots())).length === 0 ? true : undefined),
      'the pool drained',
      60_000,
    )
  }, 240_000)

  it('node loss: declared dead, its paused sandbox resumes elsewhere with every file, its writer fenced, and it adopts nothing', async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    const a = await client(0)
    const sb = await a.sandboxes.claim('busybox')
    const files: Record<string, string> = {}
    for (let i = 0; i < 5; i++) {
      files[`/root/file-${i}.txt`] = `content ${i} `.repeat(1000 * (i + 1))
      await sb.writeFile(`/root/file-${i}.txt`, files[`/root/file-${i}.txt`] as string)
    }
    await a.sandboxes.pause(sb.id)
    const victimId = await nodeOf(sb.id)
    const victim = cluster.agents.find((x) => x.id === victimId) as Cluster['agents'][number]
    const { rows: before } = await db.query<{ rootfs_volume_id: string }>(
      'SELECT rootfs_volume_id FROM sandboxes WHERE id = $1',
      [sb.id],
    )
    const checkpoint = (before[0] as { rootfs_volume_id: string }).rootfs_volume_id
    const { rows: lastWrite } = await db.query<{ writer_epoch: string }>(
      'SELECT writer_epoch FROM volumes WHERE id = $1',
      [checkpoint],
    )
    const deadEpoch = Number((lastWrite[0] as { writer_epoch: string }).writer_epoch)

    // A sandbox that runs on the same node when it dies: checkpointed once (pause, resume), then
    // written to again; the second write is the work lost with the host.
    let running: Awaited<ReturnType<Client['sandboxes']['claim']>> | undefined
    const others: string[] = []
    for (let i = 0; i < 6 && !running; i++) {
      const c = await a.sandboxes.claim('busybox')
      if ((await nodeOf(c.id)) === victimId) running = c
      else others.push(c.id)
    }
    expect(running, 'a sandbox placed on the node that dies').toBeDefined()
    const r = running as NonNullable<typeof running>
    await r.writeFile('/root/kept.txt', 'in the checkpoint')
    await a.sandboxes.pauseAndWait(r.id, quick)
    await a.sandboxes.resumeAndWait(r.id, quick)
    await r.writeFile('/root/lost.txt', 'after the checkpoint')

    await victim.kill()
    const killedAt = Date.now()
    let state = 'live'
    for (let i = 0; i < 200 && state !== 'dead'; i++) {
      await new Promise((r) => setTimeout(r, 100))
      const { rows } = await db.query<{ state: string }>('SELECT state FROM nodes WHERE id = $1', [victimId])
      state = (rows[0] as { state: string }).state
    }
    expect(state).toBe('dead')
    // Documented: dead after S0_NODE_DEAD_AFTER_S without heartbeat, seen within a reaper interval.
    expect(Date.now() - killedAt).toBeLessThan((DEAD_AFTER_S + 2 + 2) * 1000)

    // First call: auto-resume on a live node, every file as checkpointed.
    const b = await client(1)
    for (const [p, content] of Object.entries(files)) {
      const got = new TextDecoder().decode(await b.sandbox(sb.id).readFile(p))
      expect(sha(got), p).toBe(sha(content))
    }
    const newHost = await nodeOf(sb.id)
    expect(newHost).not.toBe(victimId)
    expect(cluster.agents.map((x) => x.id)).toContain(newHost)

    // Fencing: the checkpoint's writer lease moved on from the dead node's epoch, so a late commit
    // of the dead node (under the epoch it last wrote with) is refused and writes nothing.
    const store = new PgMetadataStore(db)
    const vol = async (): Promise<{ epoch: number; head: number; owner: string | null }> => {
      const { rows } = await db.query<{ writer_epoch: string; head_layer_id: number; owner: string | null }>(
        'SELECT writer_epoch, head_layer_id, owner FROM volumes WHERE id = $1',
        [checkpoint],
      )
      const r = rows[0] as { writer_epoch: string; head_layer_id: number; owner: string | null }
      return { epoch: Number(r.writer_epoch), head: r.head_layer_id, owner: r.owner }
    }
    const now = await vol()
    expect(now.epoch).toBeGreaterThan(deadEpoch)
    expect(now.owner).toBe(newHost)
    const late = await store
      .commit(
        store.newBatch(),
        now.head as never,
        { id: checkpoint as never, usedBytes: 0, usedInodes: 0 },
        { epoch: deadEpoch },
      )
      .then(
        () => 'committed',
        (err: unknown) => (isS0Error(err) ? err.code : String(err)),
      )
    expect(late).toBe('volume_lease_lost')

    // The running one: paused on its last checkpoint, saying why; resumable elsewhere.
    const got = (
      (await (
        await fetch(`${cluster.apis[1]?.url}/api/v1/sandboxes/${r.id}`, {
          headers: { authorization: `Bearer ${await cluster.token()}` },
        })
      ).json()) as { data: { status: string; status_reason?: string } }
    ).data
    expect(got.status).toBe('paused')
    expect(got.status_reason ?? '').toMatch(/stopped answering.*work since then is lost/)
    await b.sandboxes.resumeAndWait(r.id, quick)
    expect(await nodeOf(r.id)).not.toBe(victimId)
    expect((await r.cmd('cat /root/kept.txt')).stdout).toBe('in the checkpoint')
    expect((await r.cmd('ls /root')).stdout).not.toContain('lost.txt')

    // The dead node comes back: a new epoch, and nothing of its previous life.
    await victim.start()
    // It registers right after its listener is up (readyz): wait for the row, bounded.
    let n: { state: string; epoch: string }[] = []
    for (let i = 0; i < 100; i++) {
      ;({ rows: n } = await db.query<{ state: string; epoch: string }>(
        'SELECT state, epoch FROM nodes WHERE id = $1',
        [victimId],
      ))
      if (n[0]?.state === 'live') break
      await new Promise((r) => setTimeout(r, 100))
    }
    expect(n[0]?.state).toBe('live')
    expect(await nodeOf(sb.id)).toBe(newHost)
    expect(Number(n[0]?.epoch)).toBeGreaterThan(1)
    // Warm slots it makes for its pool are new; no sandbox of its previous life is its own again.
    const { rows: mine } = await db.query(`SELECT id FROM sandboxes WHERE host = $1 AND status <> 'idle'`, [
      victimId,
    ])
    expect(mine).toEqual([])
    expect((await sb.cmd('cat /root/file-0.txt')).stdout).toBe(files['/root/file-0.txt'])
    for (const id of [sb.id, r.id, ...others]) await b.sandboxes.delete(id)
  }, 300_000)

  it('a node cut off past the dead time is fenced when it comes back: it kills its sandboxes, deletes nothing, exits 75', async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    const a = await client(0)
    const sb = await a.sandboxes.claim('busybox')
    await sb.writeFile('/root/before.txt', 'checkpointed')
    await a.sandboxes.pauseAndWait(sb.id, quick)
    await a.sandboxes.resumeAndWait(sb.id, quick)
    const cutId = await nodeOf(sb.id)
    const cut = cluster.agents.find((x) => x.id === cutId) as Cluster['agents'][number]
    await cut.signal('SIGSTOP')
    let state = 'live'
    for (let i = 0; i < 200 && state !== 'dead'; i++) {
      await new Promise((r) => setTimeout(r, 100))
      const { rows } = await db.query<{ state: string }>('SELECT state FROM nodes WHERE id = $1', [cutId])
      state = (rows[0] as { state: string }).state
    }
    expect(state).toBe('dead')
    // Meanwhile a process started again with the node's name (the same host id, a new epoch)
    // holds a warm slot; its heartbeat is set ahead so that no reaper touches it here. The old
    // process, fenced, must leave that row alone: it is no longer its own.
    const slot = `${sb.id}-next-life`
    await db.query(
      `UPDATE nodes SET state = 'live', epoch = epoch + 1, heartbeat_at = now() + interval '1 hour'
        WHERE id = $1`,
      [cutId],
    )
    await db.query(
      `INSERT INTO sandboxes
       SELECT (jsonb_populate_record(NULL::sandboxes,
                 to_jsonb(s) || jsonb_build_object('id', $2::text, 'status', 'idle'))).*
         FROM sandboxes s WHERE s.id = $1`,
      [sb.id, slot],
    )
    await db.query('UPDATE sandboxes SET host = $2 WHERE id = $1', [slot, cutId])
    await cut.signal('SIGCONT')
    expect(await cut.exited()).toBe(75)
    const { rows: kept } = await db.query('SELECT id FROM sandboxes WHERE id = $1', [slot])
    expect(kept).toHaveLength(1)
    await db.query('DELETE FROM sandboxes WHERE id = $1', [slot])
    await db.query(
      `UPDATE nodes SET state = 'dead', heartbeat_at = now() - interval '1 hour' WHERE id = $1`,
      [cutId],
    )
    // Nothing deleted: the sandbox is paused on its checkpoint, and resumes on another node.
    const b = await client(1)
    expect((await b.sandboxes.get(sb.id)).status).toBe('paused')
    await b.sandboxes.resumeAndWait(sb.id, quick)
    expect(await nodeOf(sb.id)).not.toBe(cutId)
    expect((await sb.cmd('cat /root/before.txt')).stdout).toBe('checkpointed')
    await b.sandboxes.delete(sb.id)
    await cut.start()
  }, 300_000)

  it('a replica killed under load costs a client that retries idempotent calls nothing', async ({
    skip: skipTest,
  }) => {
    if (skip) skipTest()
    const token = await cluster.token()
    const sb = await (await client(0)).sandboxes.claim('busybox')
    const urls = cluster.apis.map((x) => x.url)
    let failures = 0
    let done = 0
    const call = async (i: number): Promise<void> => {
      // Up to 3 attempts, each on the next replica (what a load balancer's retry does).
      for (let attempt = 0; attempt < 3; attempt++) {
        const url = urls[(i + attempt) % urls.length] as string
        const ok = await fetch(`${url}/api/v1/sandboxes/${sb.id}`, {
          headers: { authorization: `Bearer ${token}` },
        }).then(
          (r) => r.ok,
          () => false,
        )
        if (ok) {
          done++
          return
        }
      }
      failures++
    }
    const load = (async () => {
      for (let i = 0; i < 300; i++) await Promise.all([call(i), call(i + 1)])
    })()
    await new Promise((r) => setTimeout(r, 300))
    await (cluster.apis[1] as Cluster['apis'][number]).kill()
    await load
    expect(failures).toBe(0)
    expect(done).toBe(600)
    await (await client(0)).sandboxes.delete(sb.id)
    await (cluster.apis[1] as Cluster['apis'][number]).start()
  }, 300_000)
})

// The SDK's e2e cases through the replicas: the quickstart through replica 0; the lifecycle
// suite through replica 1 (volumes mounted at claim, pause and resume, snapshots, restore, forks
// and claims from a snapshot, wherever placement puts each of them).
quickstartSdkCases(() => replicaTargets?.[0])
lifecycleSdkCases(() => replicaTargets?.[1])
// The volume methods through replica 0: each call goes to the agent that holds the volume's
// writer lease (the first to write it), watches included.
volumesSdkCases(() => replicaTargets?.[0] && { ...replicaTargets[0], db })
// Execution sessions through replica 1: SSE and WebSocket replays relayed by the replica.
sessionsSdkCases(() => replicaTargets?.[1] && { ...replicaTargets[1], db })

sshCases(() => ({ cluster, db, skip, deadAfterS: DEAD_AFTER_S }))
