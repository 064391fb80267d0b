// Observability bench (`npm run bench -- observability`): what recording costs and how live the
// tail is, each beside a peer measured in the same run:
// - event_ingest_rate: signed events/s through the event log into Postgres, against a bare
//   unnest INSERT of the same rows with no signing and no ordering lock;
// - the overhead of recording (events + output logs) on a sandbox's REPL round trip and on small
//   file writes through the files API: one server recording, one not, measured alternately;
// - logs_tail_latency_p50: a line printed in a REPL until it arrives on `watch=true` of the logs,
//   against the REPL round trip that printed it.
import { randomUUID } from 'node:crypto'
import { EventLog, type SandboxEvent } from '../src/core/events.js'
import { silentLogger } from '../src/core/log.js'
import { openBenchServer, type BenchServer } from './bench-server.js'
import { api, claim, ms, stats, type Env } from './sandbox-api.js'
import { figure, gitCommit, machineInfo, median, note, round, type Figure, type SuiteResult } from './lib.js'

const EVENTS = Number(process.env['S0_BENCH_EVENTS'] ?? 50_000)
const REPL_RUNS = Number(process.env['S0_BENCH_REPL_RUNS'] ?? 200)
const FILE_WRITES = Number(process.env['S0_BENCH_FILE_WRITES'] ?? 300)
const TAIL_RUNS = Number(process.env['S0_BENCH_TAIL_RUNS'] ?? 40)
const ROUNDS = 3
/** Which parts run (all by default), e.g. S0_BENCH_OBS_PARTS=overhead. */
const PARTS = new Set(
  (process.env['S0_BENCH_OBS_PARTS'] ?? 'ingest,overhead,tail').split(',').map((p) => p.trim()),
)

function event(i: number): SandboxEvent {
  return {
    teamId: 'team-bench',
    sandboxId: 'sb-bench',
    occurredAt: new Date(),
    source: 'netd',
    eventType: 'network_audit',
    phase: 'result',
    outcome: 'succeeded',
    actor: { kind: 'sandbox_workload', id: 'sb-bench' },
    action: 'connect',
    resource: { type: 'network_destination', id: `10.0.0.${i % 250}:443` },
    attributes: { bytes_up: i, bytes_down: i * 3, host: 'example.internal' },
  }
}

async function ingest(env: Env): Promise<Figure> {
  const log = new EventLog(env.db, silentLogger, 'bench-ingest')
  const ours: number[] = []
  const bare: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < EVENTS; i++) log.append(event(i))
    await log.flush()
    ours.push(EVENTS / (ms(t0) / 1000))
    // The peer: the same rows, one unnest INSERT per 1,000, no signature, no lock.
    const t1 = process.hrtime.bigint()
    for (let i = 0; i < EVENTS; i += 1000) {
      const n = Math.min(1000, EVENTS - i)
      const ids = Array.from({ length: n }, () => randomUUID())
      const e = event(i)
      await env.db.query(
        `INSERT INTO sandbox_events (event_id, team_id, sandbox_id, occurred_at, source, event_type, phase, outcome,
                                     actor, action, resource, operation_id, producer, attributes)
         SELECT id, $2, $3, now(), $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb, id, '{"service":"s0"}'::jsonb, $11::jsonb
           FROM unnest($1::text[]) AS id`,
        [
          ids,
          'team-bare',
          e.sandboxId,
          e.source,
          e.eventType,
          e.phase,
          e.outcome,
          JSON.stringify(e.actor),
          e.action,
          JSON.stringify(e.resource),
          JSON.stringify(e.attributes),
        ],
      )
    }
    bare.push(EVENTS / (ms(t1) / 1000))
  }
  await log.close()
  return figure({
    name: 'event_ingest_rate',
    value: median(ours),
    unit: 'events/s',
    baseline: {
      name: 'bare unnest INSERT of the same rows (no signing, no ordering lock)',
      value: round(median(bare)),
      unit: 'events/s',
    },
    higherIsBetter: true,
    target: {},
    detail: {
      events: EVENTS,
      rounds: ROUNDS,
      ours: ours.map((x) => round(x)),
      bare: bare.map((x) => round(x)),
    },
  })
}

async function replContext(env: Env): Promise<{ sandbox: string; exec: string }> {
  const sb = await claim(env, 'default')
  const ctx = await api<{ id: string }>(env, 'POST', `/api/v1/sandboxes/${sb.id}/contexts`, {
    type: 'repl',
    repl: { alias: 'python' },
  })
  return { sandbox: sb.id, exec: `/api/v1/sandboxes/${sb.id}/contexts/${ctx.id}/exec` }
}

/** One REPL round trip that prints a line (so the output is logged when recording). */
async function replOnce(env: Env, exec: string, i: number): Promise<number> {
  const t0 = process.hrtime.bigint()
  const r = await api<{ stdout: string }>(env, 'POST', exec, { data: `print(${i}+1)` })
  const t = ms(t0)
  if (r.stdout !== `${i + 1}\n`) throw new Error(`REPL printed ${JSON.stringify(r.stdout)}`)
  return t
}

async function writeOnce(env: Env, sandbox: string, i: number, body: Buffer): Promise<number> {
  const t0 = process.hrtime.bigint()
  const res = await fetch(`${env.url}/api/v1/sandboxes/${sandbox}/files?path=/tmp/bench/f${i % 100}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${env.token}`, 'content-type': 'application/octet-stream' },
    body,
  })
  await res.arrayBuffer()
  if (!res.ok) throw new Error(`file write: ${res.status}`)
  return ms(t0)
}

/**
 * Recording on (`on`) against off (`off`), request by request in turn so drift hits both alike;
 * `aa`, a second server recording nothing, measured the same way, calibrates the harness (two
 * identical servers differ by this much: the detail's `aa_ratio`).
 */
async function overhead(on: BenchServer, off: BenchServer, aa: BenchServer): Promise<Figure[]> {
  const sides = [
    { name: 'on', env: on.env, ctx: await replContext(on.env) },
    { name: 'off', env: off.env, ctx: await replContext(off.env) },
    { name: 'aa', env: aa.env, ctx: await replContext(aa.env) },
  ]
  const repl: Record<string, number[]> = { on: [], off: [], aa: [] }
  const files: Record<string, number[]> = { on: [], off: [], aa: [] }
  const body = Buffer.alloc(4096, 7)
  for (const s of sides) {
    for (let i = 0; i < 5; i++) await replOnce(s.env, s.ctx.exec, i) // warm up
    await writeOnce(s.env, s.ctx.sandbox, 0, body)
  }
  for (let i = 0; i < REPL_RUNS; i++)
    for (let k = 0; k < sides.length; k++) {
      const s = sides[(i + k) % sides.length]!
      repl[s.name]?.push(await replOnce(s.env, s.ctx.exec, i))
    }
  for (let i = 0; i < FILE_WRITES; i++)
    for (let k = 0; k < sides.length; k++) {
      const s = sides[(i + k) % sides.length]!
      files[s.name]?.push(await writeOnce(s.env, s.ctx.sandbox, i, body))
    }
  const opsPerSec = (xs: number[]): number => xs.length / (xs.reduce((a, b) => a + b, 0) / 1000)
  const replOn = median(repl['on'] ?? [])
  const replOff = median(repl['off'] ?? [])
  const filesOn = opsPerSec(files['on'] ?? [])
  const filesOff = opsPerSec(files['off'] ?? [])
  return [
    figure({
      name: 'repl_round_trip_recording_on',
      value: replOn,
      unit: 'ms',
      baseline: {
        name: 'the same REPL round trip on a server that records nothing (same run, in turn)',
        value: round(replOff, 3),
        unit: 'ms',
      },
      higherIsBetter: false,
      target: { ratio: 1.05 },
      detail: {
        aa_ratio: round(median(repl['aa'] ?? []) / replOff, 3),
        on: stats(repl['on'] ?? []),
        off: stats(repl['off'] ?? []),
        aa: stats(repl['aa'] ?? []),
      },
    }),
    figure({
      name: 'api_small_files_ops_recording_on',
      value: filesOn,
      unit: 'ops/s',
      baseline: {
        name: '4 KiB writes through the files API on a server that records nothing (same run, in turn)',
        value: round(filesOff),
        unit: 'ops/s',
      },
      higherIsBetter: true,
      target: { ratio: 0.95 },
      detail: {
        writes: FILE_WRITES,
        aa_ratio: round(opsPerSec(files['aa'] ?? []) / filesOff, 3),
        on: stats(files['on'] ?? []),
        off: stats(files['off'] ?? []),
      },
    }),
  ]
}

async function tail(env: Env): Promise<Figure> {
  const { sandbox, exec } = await replContext(env)
  const controller = new AbortController()
  const res = await fetch(`${env.url}/api/v1/sandboxes/${sandbox}/observability/logs?watch=true`, {
    headers: { authorization: `Bearer ${env.token}`, accept: 'application/x-ndjson' },
    signal: controller.signal,
  })
  if (!res.ok || !res.body) throw new Error(`logs watch: ${res.status}`)
  const arrived = new Map<string, bigint>()
  const waiters = new Map<string, () => void>()
  const reading = (async () => {
    const decoder = new TextDecoder()
    let buf = ''
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true })
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = JSON.parse(buf.slice(0, nl)) as { type: string; data?: { message: string } }
        buf = buf.slice(nl + 1)
        for (const m of line.data?.message.match(/tail-\d+/g) ?? []) {
          arrived.set(m, process.hrtime.bigint())
          waiters.get(m)?.()
        }
      }
    }
  })().catch(() => undefined)
  const latency: number[] = []
  const rtt: number[] = []
  for (let i = 0; i < TAIL_RUNS; i++) {
    const mark = `tail-${i}`
    const seen = new Promise<void>((resolve) => waiters.set(mark, resolve))
    const t0 = process.hrtime.bigint()
    await api(env, 'POST', exec, { data: `print('${mark}')` })
    rtt.push(ms(t0))
    await Promise.race([
      seen,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`${mark} never arrived`)), 10_000)),
    ])
    latency.push(Number((arrived.get(mark) as bigint) - t0) / 1e6)
  }
  controller.abort()
  await reading
  return figure({
    name: 'logs_tail_latency_p50',
    value: median(latency),
    unit: 'ms',
    baseline: {
      name: 'the REPL round trip that printed the line (its output in the HTTP answer)',
      value: round(median(rtt), 3),
      unit: 'ms',
    },
    higherIsBetter: false,
    target: {},
    detail: { latency: stats(latency), rtt: stats(rtt) },
  })
}

export async function runObservabilitySuite(): Promise<SuiteResult> {
  const startedAt = new Date().toISOString()
  const on = await openBenchServer('s0-bench-obs-on-')
  let off: BenchServer | undefined
  let aa: BenchServer | undefined
  const figures: Figure[] = []
  try {
    off = await openBenchServer('s0-bench-obs-off-', { record: false })
    aa = await openBenchServer('s0-bench-obs-aa-', { record: false })
    if (PARTS.has('ingest')) {
      note('event ingest')
      figures.push(await ingest(on.env))
    }
    if (PARTS.has('overhead')) {
      note('recording overhead (REPL, files API)')
      figures.push(...(await overhead(on, off, aa)))
    }
    if (PARTS.has('tail')) {
      note('logs tail latency')
      figures.push(await tail(on.env))
    }
  } finally {
    await aa?.close()
    await off?.close()
    await on.close()
  }
  return { suite: 'observability', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
