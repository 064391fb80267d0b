// Services bench (`npm run bench -- services`): the ingress proxy against the same client
// talking to the sandbox's address directly, in the same run: keep-alive HTTP requests/s and
// p99 to a node server in a sandbox, a WebSocket echo round trip, and the first byte of a request
// that wakes a paused sandbox against resuming it through the API.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import WebSocket from 'ws'
import type { KeepAliveResult } from './egress/http-client.js'
import { LoadClient } from './egress/proxy.js'
import { openBenchServer } from './bench-server.js'
import { pauseOnce, resumeOnce } from './sandboxes-lifecycle.js'
import { api, claim, cmd, ms, stats, type Env } from './sandbox-api.js'
import {
  figure,
  gitCommit,
  machineInfo,
  median,
  note,
  REPO_DIR,
  round,
  type Figure,
  type SuiteResult,
} from './lib.js'

const DURATION_MS = Number(process.env['S0_BENCH_INGRESS_MS'] ?? 3_000)
const ROUNDS = 3
const CONCURRENCY = 8
const WS_ECHOES = Number(process.env['S0_BENCH_WS_ECHOES'] ?? 500)
const WAKE_RUNS = Number(process.env['S0_BENCH_WAKE_RUNS'] ?? 5)
/** Which parts run (all by default), e.g. S0_BENCH_SERVICES_PARTS=http for a quick look. */
const PARTS = new Set(
  (process.env['S0_BENCH_SERVICES_PARTS'] ?? 'http,ws,wake,templates').split(',').map((p) => p.trim()),
)
const CAPTURE_RUNS = Number(process.env['S0_BENCH_CAPTURE_RUNS'] ?? 3)
const LARGE_DELTA_MIB = Number(process.env['S0_BENCH_DELTA_LARGE_MIB'] ?? 1024)

/** A minimal, fast HTTP server (node 18 of the Debian template): the proxy is what differs. */
// It answers as the load client expects of an echo server: the method and path it saw.
const NODE_SERVER =
  "require('http').createServer((q, s) => s.end(JSON.stringify({ method: q.method, path: q.url }))).listen(8080, '0.0.0.0')"

export async function runServicesSuite(): Promise<SuiteResult> {
  const startedAt = new Date().toISOString()
  const server = await openBenchServer('s0-bench-services-')
  const { env } = server
  const figures: Figure[] = []
  try {
    if (!server.withNetwork)
      throw new Error('the services bench needs the sandbox network (S0_BENCH_NETWORK)')
    const sb = await claim(env, 'default')
    const appServer = await readFile(path.join(REPO_DIR, 'test', 'services', 'app-server.py'), 'utf8')
    await putFile(env, sb.id, '/opt/app-server.py', appServer)
    await api(env, 'PUT', `/api/v1/sandboxes/${sb.id}/services`, {
      services: [
        {
          id: 'node',
          port: 8080,
          runtime: { type: 'cmd', command: ['node', '-e', NODE_SERVER] },
          ingress: { public: true, routes: [{ id: 'all', resume: true }] },
        },
        {
          id: 'ws',
          port: 9000,
          runtime: { type: 'cmd', command: ['python3', '/opt/app-server.py', '9000'] },
          ingress: { public: true, routes: [{ id: 'all', resume: true }] },
        },
      ],
    })
    const address = env.svc.services.deps.address(sb.id as never)
    if (!address) throw new Error('the sandbox has no address')
    const port = new URL(env.url).port
    const hostOf = (service: string): string => `${service}--${sb.id}.localhost:${port}`
    await waitHttp(env.url, hostOf('node'))
    await waitHttp(env.url, hostOf('ws'))

    if (PARTS.has('http')) {
      figures.push(...(await httpFigures(env, { address, port: 8080, host: hostOf('node'), suffix: '' })))
      figures.push(
        ...(await httpFigures(env, { address, port: 9000, host: hostOf('ws'), suffix: '_python' })),
      )
    }
    if (PARTS.has('ws')) figures.push(await wsFigure(env, address, hostOf('ws')))
    if (PARTS.has('wake')) figures.push(await wakeFigure(env, sb.id, hostOf('node')))
    if (PARTS.has('templates')) figures.push(...(await templateFromSandboxFigures(env)))
  } finally {
    await server.close()
  }
  return { suite: 'services', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}

async function putFile(env: Env, id: string, file: string, content: string): Promise<void> {
  const res = await fetch(`${env.url}/api/v1/sandboxes/${id}/files?path=${encodeURIComponent(file)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.token}`, 'content-type': 'application/octet-stream' },
    body: content,
  })
  if (!res.ok) throw new Error(`writing ${file}: ${res.status} ${await res.text()}`)
}

/** Bounded wait for a 200 through the ingress. */
async function waitHttp(url: string, host: string): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    const status = await firstByte(url, host).then(
      (r) => r.status,
      () => 0,
    )
    if (status === 200) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`${host} did not answer 200 within 60 s`)
}

/** A GET through the listener with this Host: status and ms to the response head. */
function firstByte(url: string, host: string): Promise<{ status: number; ms: number }> {
  const u = new URL(url)
  const t0 = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: '/', headers: { host }, agent: false },
      (res) => {
        const took = ms(t0)
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: took }))
      },
    )
    req.setTimeout(120_000, () => req.destroy(new Error('timed out')))
    req.on('error', reject)
    req.end()
  })
}

/**
 * Keep-alive GETs through the ingress and straight to the sandbox. Two servers: a trivial node
 * one (the proxy's own cost dominates: the worst case) and python's http.server, what a user
 * typically runs (the `cmd` example of the docs).
 */
async function httpFigures(
  env: Env,
  s: { address: string; port: number; host: string; suffix: string },
): Promise<Figure[]> {
  const client = LoadClient.start(undefined)
  const port = Number(new URL(env.url).port)
  const host = s.host
  // The floor of any proxy written on Node's http: a bare pass-through (no routing, no checks,
  // no events) in this same process, to the same server: what is ours and what is Node's.
  const agent = new http.Agent({ keepAlive: true })
  const bare = http.createServer((req, res) => {
    const out = http.request(
      { host: s.address, port: s.port, method: req.method, path: req.url, headers: req.headers, agent },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers)
        up.pipe(res)
      },
    )
    out.on('error', () => res.destroy())
    req.pipe(out)
  })
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve))
  const barePort = (bare.address() as AddressInfo).port
  const targets = {
    direct: { address: s.address, port: s.port, hostHeader: host, path: '/' },
    ingress: { address: '127.0.0.1', port, hostHeader: host, path: '/' },
    bare: { address: '127.0.0.1', port: barePort, hostHeader: host, path: '/' },
  }
  const run = async (side: 'direct' | 'ingress' | 'bare', durationMs: number): Promise<KeepAliveResult> => {
    const r = await client.run<KeepAliveResult>({
      type: 'keepalive',
      target: targets[side],
      durationMs,
      concurrency: CONCURRENCY,
    })
    if (r.errors > 0) throw new Error(`${side} keep-alive GETs: ${r.errors} errors, first: ${r.firstError}`)
    return r
  }
  try {
    note(`ingress http${s.suffix}: warm-up`)
    await run('direct', 500)
    await run('ingress', 500)
    note(
      `ingress http${s.suffix}: keep-alive, ${CONCURRENCY} connections, ${ROUNDS} x ${DURATION_MS} ms per side, interleaved`,
    )
    const rps = { direct: [] as number[], ingress: [] as number[], bare: [] as number[] }
    const p99 = { direct: [] as number[], ingress: [] as number[], bare: [] as number[] }
    const p50 = { direct: [] as number[], ingress: [] as number[], bare: [] as number[] }
    for (let r = 0; r < ROUNDS; r++) {
      const order = ['direct', 'ingress', 'bare'] as const
      for (const side of r % 2 === 0 ? order : [...order].reverse()) {
        const res = await run(side, DURATION_MS)
        rps[side].push(res.requests / res.seconds)
        p99[side].push(res.p99Ms)
        p50[side].push(res.p50Ms)
      }
    }
    const common = {
      rounds: ROUNDS,
      concurrency: CONCURRENCY,
      durationMs: DURATION_MS,
      server:
        s.suffix === ''
          ? 'node 18 http server answering a few bytes, in a runc sandbox (Debian template), on its veth address'
          : 'python3 http.server (ThreadingHTTPServer, TCP_NODELAY; test/services/app-server.py) in the same sandbox',
      rpsPerRound: {
        direct: rps.direct.map((x) => round(x)),
        ingress: rps.ingress.map((x) => round(x)),
        bareNodeProxy: rps.bare.map((x) => round(x)),
      },
      bareNodeProxy: {
        what: 'http.createServer + http.request pipe in the same process, no routing/checks/events',
        rps: round(median(rps.bare)),
        p99Ms: round(median(p99.bare), 3),
        ingressVsBare: round(median(rps.ingress) / median(rps.bare), 3),
      },
    }
    return [
      figure({
        name: `ingress_http_rps${s.suffix}`,
        value: median(rps.ingress),
        unit: 'req/s',
        baseline: {
          name: 'same client to the sandbox address directly (this run)',
          value: round(median(rps.direct)),
          unit: 'req/s',
        },
        higherIsBetter: true,
        target: { ratio: 0.7 },
        detail: common,
      }),
      figure({
        name: `ingress_http_p99${s.suffix}`,
        value: median(p99.ingress),
        unit: 'ms',
        baseline: { name: 'direct p99 (this run)', value: round(median(p99.direct), 3), unit: 'ms' },
        higherIsBetter: false,
        target: {},
        detail: {
          ...common,
          p50Ms: { direct: round(median(p50.direct), 3), ingress: round(median(p50.ingress), 3) },
        },
      }),
    ]
  } finally {
    await client.stop()
    bare.close()
    agent.destroy()
  }
}

async function wsEchoes(url: string, headers: Record<string, string>, n: number): Promise<number[]> {
  const ws = new WebSocket(url, { headers })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  const out: number[] = []
  try {
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint()
      await new Promise<void>((resolve, reject) => {
        ws.once('message', () => resolve())
        ws.once('error', reject)
        ws.send(`echo ${i}`)
      })
      out.push(ms(t0))
    }
  } finally {
    ws.close()
  }
  return out
}

async function wsFigure(env: Env, address: string, host: string): Promise<Figure> {
  const u = new URL(env.url)
  note(`ingress websocket: ${WS_ECHOES} echoes per side, 3 rounds, interleaved`)
  const all = { direct: [] as number[], ingress: [] as number[] }
  await wsEchoes(`ws://${address}:9000/ws`, {}, 20)
  await wsEchoes(`ws://${u.host}/ws`, { host }, 20)
  for (let r = 0; r < 3; r++) {
    all.direct.push(...(await wsEchoes(`ws://${address}:9000/ws`, {}, WS_ECHOES)))
    all.ingress.push(...(await wsEchoes(`ws://${u.host}/ws`, { host }, WS_ECHOES)))
  }
  return figure({
    name: 'ingress_ws_echo_p50',
    value: median(all.ingress),
    unit: 'ms',
    baseline: {
      name: 'the same echo to the sandbox address directly (this run)',
      value: round(median(all.direct), 3),
      unit: 'ms',
    },
    higherIsBetter: false,
    target: {},
    detail: {
      ingress: stats(all.ingress),
      direct: stats(all.direct),
      server: 'python echo (test/services/app-server.py)',
    },
  })
}

async function wakeFigure(env: Env, id: string, host: string): Promise<Figure> {
  note(`wake on request: ${WAKE_RUNS} runs, interleaved with pause + resume through the API`)
  const wake: number[] = []
  const resume: number[] = []
  const resumeToOutput: number[] = []
  for (let i = 0; i < WAKE_RUNS; i++) {
    await pauseOnce(env, id)
    const r = await firstByte(env.url, host)
    if (r.status !== 200) throw new Error(`wake on request answered ${r.status}`)
    wake.push(r.ms)
    await pauseOnce(env, id)
    const rr = await resumeOnce(env, id)
    resume.push(rr.resumeMs)
    resumeToOutput.push(rr.firstOutputMs)
    await waitHttp(env.url, host)
  }
  return figure({
    name: 'wake_on_request_first_byte',
    value: median(wake),
    unit: 'ms',
    baseline: {
      name: 'resume_latency (POST /resume of the same sandbox, this run)',
      value: round(median(resume)),
      unit: 'ms',
    },
    higherIsBetter: false,
    target: {},
    detail: {
      wake: stats(wake),
      resume: stats(resume),
      resumeToFirstOutput: stats(resumeToOutput),
      includes: 'the resume, the node server starting again in the new generation, and its first answer',
    },
  })
}

/** POST /templates/from-sandbox, then GET until ready: ms. The template is deleted after. */
async function captureTemplate(env: Env, sandboxId: string, templateId: string): Promise<number> {
  const t0 = process.hrtime.bigint()
  const res = await fetch(`${env.url}/api/v1/templates/from-sandbox`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${env.token}`,
      'content-type': 'application/json',
      'idempotency-key': templateId,
    },
    body: JSON.stringify({ template_id: templateId, sandbox_id: sandboxId }),
  })
  if (res.status !== 202) throw new Error(`from-sandbox: ${res.status} ${await res.text()}`)
  const deadline = Date.now() + 600_000
  for (;;) {
    const t = await api<{ status?: { creation?: { state: string; message?: string } } }>(
      env,
      'GET',
      `/api/v1/templates/${templateId}`,
    )
    const state = t.status?.creation?.state ?? 'ready'
    if (state === 'ready') break
    if (state === 'failed') throw new Error(`template ${templateId} failed: ${t.status?.creation?.message}`)
    if (Date.now() > deadline) throw new Error(`template ${templateId} not ready after 600 s`)
    await new Promise((r) => setTimeout(r, 20))
  }
  const took = ms(t0)
  await api(env, 'DELETE', `/api/v1/templates/${templateId}`)
  return took
}

/** A rootfs snapshot of the same sandbox (the capture's first step, without publishing): ms. */
async function snapshotOnce(env: Env, sandboxId: string): Promise<number> {
  const t0 = process.hrtime.bigint()
  const s = await api<{ id: string }>(env, 'POST', `/api/v1/sandboxes/${sandboxId}/snapshots`, {
    name: 'bench',
  })
  const took = ms(t0)
  await api(env, 'DELETE', `/api/v1/sandbox-rootfs-snapshots/${s.id}`)
  return took
}

async function templateFromSandboxFigures(env: Env): Promise<Figure[]> {
  const out: Figure[] = []
  let small: number[] = []
  for (const d of [
    { name: '1mib', mib: 1 },
    { name: '1gib', mib: LARGE_DELTA_MIB },
  ]) {
    note(`template from a sandbox with a ${d.mib} MiB root-filesystem delta (${CAPTURE_RUNS} runs)`)
    const sb = await claim(env, 'default')
    await cmd(env, sb.id, ['dd', 'if=/dev/urandom', 'of=/root/delta', 'bs=1M', `count=${d.mib}`])
    const capture: number[] = []
    const snapshot: number[] = []
    for (let i = 0; i < CAPTURE_RUNS; i++) {
      // A small change each run: the capture is of what changed since the last checkpoint.
      await cmd(env, sb.id, ['sh', '-c', `echo ${i} > /root/run`])
      capture.push(await captureTemplate(env, sb.id, `bench-${d.name}-${env.tag}-${i}`))
      snapshot.push(await snapshotOnce(env, sb.id))
    }
    await api(env, 'DELETE', `/api/v1/sandboxes/${sb.id}`)
    const isSmall = d.name === '1mib'
    if (isSmall) small = capture
    out.push(
      figure({
        name: `template_from_sandbox_latency_${d.name}`,
        value: median(capture),
        unit: 'ms',
        baseline: isSmall
          ? {
              name: 'rootfs snapshot of the same sandbox (median, this run)',
              value: round(median(snapshot)),
              unit: 'ms',
            }
          : {
              name: 'template_from_sandbox_latency_1mib (median, this run)',
              value: round(median(small)),
              unit: 'ms',
            },
        higherIsBetter: false,
        target: isSmall ? {} : { ratio: 2 },
        detail: { deltaMiB: d.mib, capture: stats(capture), snapshot: stats(snapshot) },
      }),
    )
  }
  return out
}
