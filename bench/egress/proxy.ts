// Plain-HTTP figures of the egress suite, through the real proxy (src/egress/proxy/server.ts) on a
// real sandbox network (src/runtime/network.ts): a bare network namespace stands in for the
// sandbox (as in test/runtime/network.test.ts), attached by SandboxNetwork, whose nftables table
// sends its TCP to the EgressProxy listening in this process; the destination is an http-echo
// server in an "upstream" namespace (test/support/upstream.ts, 198.18.n.0/24, names from a hosts
// file). The peer is the same client program run on the host, straight to the same server over the
// same upstream veth, in the same run. Nothing leaves the machine: the resolver's upstream is a
// loopback port where nothing listens, and every name the bench uses is in the hosts file.
//
//   egress_http_rps, egress_http_p99_ms: keep-alive GETs, `concurrency` connections, closed loop.
//   egress_connect_p50_ms: a new TCP connection + one GET/answer (Connection: close), one at a time.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { createInterface } from 'node:readline'
import type { EventLog } from '../../src/core/events.js'
import { asTeamId, randomHexId } from '../../src/core/ids.js'
import type { Logger } from '../../src/core/log.js'
import { CredentialResolver } from '../../src/egress/credentials/resolve.js'
import { EgressResolver } from '../../src/egress/dns/resolver.js'
import { compilePolicy } from '../../src/egress/policy/compile.js'
import type { SandboxNetworkPolicy } from '../../src/egress/policy/types.js'
import { EgressDirectory } from '../../src/egress/proxy/directory.js'
import { EgressProxy } from '../../src/egress/proxy/server.js'
import { loadSshHostKey } from '../../src/egress/ssh-proxy.js'
import { S0Error } from '../../src/core/errors.js'
import { createNetns, deleteNetns } from '../../src/runtime/netns.js'
import { SandboxNetwork } from '../../src/runtime/network.js'
import { createUpstream, testSandboxCidr } from '../../test/support/upstream.js'
import { figure, freePort, median, note, REPO_DIR, round, spread, type Figure } from '../lib.js'
import type { ClientJob, ClientResult, ConnectResult, HttpTarget, KeepAliveResult } from './http-client.js'

/** The one name the upstream answers for; the policy allows only it. */
const UPSTREAM_NAME = 'api.bench.test'

export interface ProxyBenchOptions {
  work: string
  events: EventLog
  team: string
  log: Logger
  /** Registers a cleanup step (run in reverse order by the suite, also on SIGINT/SIGTERM). */
  defer(step: () => Promise<void>): void
  durationMs?: number
  rounds?: number
  concurrency?: number
  connects?: number
}

/** The load client (http-client.ts) as a child process: on the host, or inside `netns`. */
export class LoadClient {
  private readonly waiters: Array<(line: string) => void> = []
  private stderr = ''

  private constructor(
    readonly where: string,
    private readonly child: ChildProcess,
  ) {
    child.on('error', (err) => (this.stderr += `${err.message}\n`)) // then 'close' fails the job
    child.stdin?.on('error', () => undefined) // EPIPE from a client that died: 'close' reports it
    child.stderr?.on('data', (b: Buffer) => {
      if (this.stderr.length < 8192) this.stderr += b.toString()
    })
    createInterface({ input: child.stdout! }).on('line', (line) => this.waiters.shift()?.(line))
  }

  static start(netns: string | undefined): LoadClient {
    const script = path.join(REPO_DIR, 'bench', 'egress', 'http-client.ts')
    const node = [process.execPath, '--import', 'tsx', script]
    // nsenter --net only (as test/support/upstream.ts does): the client sees the sandbox's network.
    const [cmd, ...args] = netns ? ['nsenter', `--net=/run/netns/${netns}`, '--', ...node] : node
    const child = spawn(cmd as string, args, { cwd: REPO_DIR, stdio: ['pipe', 'pipe', 'pipe'] })
    return new LoadClient(netns ? `netns ${netns}` : 'host', child)
  }

  run<T extends ClientResult>(job: ClientJob): Promise<T> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null): void =>
        reject(new Error(`load client (${this.where}) exited ${code}: ${this.stderr}`))
      this.child.once('close', onExit)
      this.waiters.push((line) => {
        this.child.off('close', onExit)
        resolve(JSON.parse(line) as T)
      })
      this.child.stdin!.write(JSON.stringify(job) + '\n')
    })
  }

  async stop(): Promise<void> {
    if (this.child.pid === undefined || this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.stdin!.end(JSON.stringify({ type: 'exit' }) + '\n')
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3_000)
    await exited
    clearTimeout(timer)
  }
}

interface World {
  proxy: EgressProxy
  network: SandboxNetwork
  tag: string
  target: HttpTarget
  sandboxed: LoadClient
  host: LoadClient
  detail: Record<string, unknown>
}

/** The upstream, the sandbox namespace on a SandboxNetwork, the proxy and resolver, two clients. */
async function buildWorld(o: ProxyBenchOptions): Promise<World> {
  const tag = `b${randomBytes(3).toString('hex').slice(0, 5)}`
  const up = await createUpstream({ names: [UPSTREAM_NAME] })
  o.defer(() => up.cleanup())
  const echo = await up.start('http-echo')
  const pool = await testSandboxCidr()
  o.defer(() => pool.release())

  // Made after the proxy, as in src/sandboxes/egress-stack.ts: the proxy's port comes first.
  const later: { network?: SandboxNetwork; resolver?: EgressResolver } = {}
  const directory = new EgressDirectory((ip) => later.network?.sandboxOf(ip))
  const proxy = new EgressProxy({
    directory,
    events: o.events,
    // No policy here binds a credential: a load would be a bug, and says so.
    credentials: new CredentialResolver({
      load: (_team, name) =>
        Promise.reject(
          new S0Error('credential_source_not_found', `no credential source ${JSON.stringify(name)}`),
        ),
    }),
    sshHostKey: await loadSshHostKey(path.join(o.work, 'egress-state')),
    upstreamCa: undefined,
    lookup: (name) => (later.resolver ? later.resolver.lookupAddresses(name) : Promise.resolve([])),
    sandboxCidr: pool.cidr,
    log: o.log,
  })
  const proxyPort = await proxy.listen(0, '0.0.0.0')
  o.defer(() => proxy.close())
  const resolver = await EgressResolver.start({
    host: '0.0.0.0',
    port: 0,
    directory: proxy.resolverDirectory(),
    hostsFile: up.hostsFile,
    // Loopback where nothing listens: a name missing from the hosts file fails here, never leaves.
    upstream: `127.0.0.1:${await freePort()}`,
    log: o.log,
  })
  later.resolver = resolver
  o.defer(() => resolver.close())
  // Read the hosts file once before any load: concurrent lookups during its first read find an
  // empty table (src/egress/dns/hosts.ts HostsFile.lookup) and fail the Host check.
  const known = await resolver.lookupAddresses(UPSTREAM_NAME)
  if (known.join() !== up.address(UPSTREAM_NAME))
    throw new Error(
      `the resolver gives ${UPSTREAM_NAME} as [${known.join()}], not ${up.address(UPSTREAM_NAME)}`,
    )
  const net = await SandboxNetwork.open({
    tag,
    cidr: pool.cidr,
    proxyPort,
    dnsPort: resolver.address.port,
    tableCheckIntervalMs: 0,
    log: o.log,
  })
  later.network = net
  o.defer(() => net.close({ removeAll: true }))

  const sandboxId = `sb-${randomHexId(6)}`
  const netns = `s0bench-eg-${tag}`
  await createNetns(netns)
  o.defer(() => deleteNetns(netns))
  const att = await net.attach(sandboxId, netns)
  // A domain rule, so the Host header is checked against the address and matched by name.
  const policy: SandboxNetworkPolicy = {
    mode: 'block-all',
    egress: { trafficRules: [{ name: 'bench upstream', action: 'allow', domains: [UPSTREAM_NAME] }] },
  }
  directory.set({ sandboxId, teamId: asTeamId(o.team), policy: compilePolicy(policy), ca: undefined })

  const sandboxed = LoadClient.start(netns)
  o.defer(() => sandboxed.stop())
  const host = LoadClient.start(undefined)
  o.defer(() => host.stop())
  return {
    proxy,
    network: net,
    tag,
    target: {
      address: up.address(UPSTREAM_NAME),
      port: echo.port,
      hostHeader: UPSTREAM_NAME,
      path: '/bench',
    },
    sandboxed,
    host,
    detail: {
      sandboxAddress: att.address,
      upstream: `${up.address(UPSTREAM_NAME)}:${echo.port} (http-echo, test/support/upstream-server.ts, own namespace)`,
      policy,
      nameCheck: 'the Host header resolved through the egress resolver (hosts file) on each new connection',
      proxiedPath:
        'client in a bare namespace attached by SandboxNetwork; nftables redirect to EgressProxy (this process)',
      directPath:
        'the same client program on the host, connecting to the same address over the upstream veth',
    },
  }
}

/** The proxy's counters moved as they should: `allowed` by exactly `allowed`, nothing else. */
function checkCounters(
  proxy: EgressProxy,
  before: EgressProxy['counters'],
  allowed: number,
  what: string,
): void {
  const c = proxy.counters
  const moved = c.allowed - before.allowed
  if (moved !== allowed || c.denied !== before.denied || c.errors !== before.errors)
    throw new Error(
      `${what}: the proxy saw ${moved} allowed connections (expected ${allowed}), ` +
        `${c.denied - before.denied} denied, ${c.errors - before.errors} errors`,
    )
}

function failIfErrors(r: { errors: number; firstError?: string }, what: string): void {
  if (r.errors > 0) throw new Error(`${what}: ${r.errors} failed requests, first: ${r.firstError}`)
}

export async function egressProxyFigures(o: ProxyBenchOptions): Promise<Figure[]> {
  const durationMs = o.durationMs ?? Number(process.env['S0_BENCH_EGRESS_MS'] ?? 3_000)
  const rounds = o.rounds ?? 3
  const concurrency = o.concurrency ?? 8
  const connects = o.connects ?? Number(process.env['S0_BENCH_EGRESS_CONNECTS'] ?? 300)
  const w = await buildWorld(o)

  const keepAlive = async (client: LoadClient, ms: number): Promise<KeepAliveResult> => {
    const before = { ...w.proxy.counters }
    const r = await client.run<KeepAliveResult>({
      type: 'keepalive',
      target: w.target,
      durationMs: ms,
      concurrency,
    })
    failIfErrors(r, `keep-alive GETs from the ${client.where}`)
    if (client === w.sandboxed) checkCounters(w.proxy, before, concurrency, 'proxied keep-alive')
    else checkCounters(w.proxy, before, 0, 'direct keep-alive')
    return r
  }
  const connect = async (client: LoadClient, count: number): Promise<ConnectResult> => {
    const before = { ...w.proxy.counters }
    const r = await client.run<ConnectResult>({ type: 'connect', target: w.target, count })
    failIfErrors(r, `new connections from the ${client.where}`)
    if (client === w.sandboxed) checkCounters(w.proxy, before, count, 'proxied connects')
    else checkCounters(w.proxy, before, 0, 'direct connects')
    return r
  }

  // Warm-up: JIT in all three processes, ARP, the hosts file read.
  note('egress http: warm-up')
  await keepAlive(w.sandboxed, 500)
  await keepAlive(w.host, 500)
  await connect(w.sandboxed, 30)
  await connect(w.host, 30)

  note(
    `egress http: keep-alive, ${concurrency} connections, ${rounds} x ${durationMs} ms per side, interleaved`,
  )
  const rps = { proxied: [] as number[], direct: [] as number[] }
  const p99 = { proxied: [] as number[], direct: [] as number[] }
  const p50 = { proxied: [] as number[], direct: [] as number[] }
  let requests = 0
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 === 0 ? (['direct', 'proxied'] as const) : (['proxied', 'direct'] as const)) {
      const res = await keepAlive(side === 'proxied' ? w.sandboxed : w.host, durationMs)
      rps[side].push(res.requests / res.seconds)
      p99[side].push(res.p99Ms)
      p50[side].push(res.p50Ms)
      requests += res.requests
    }
  }

  note(`egress http: ${rounds} x ${connects} new connections per side, one at a time, interleaved`)
  const conn = { proxied: [] as number[], direct: [] as number[] }
  const connRoundP50 = { proxied: [] as number[], direct: [] as number[] }
  for (let r = 0; r < rounds; r++) {
    for (const side of r % 2 === 0 ? (['direct', 'proxied'] as const) : (['proxied', 'direct'] as const)) {
      const res = await connect(side === 'proxied' ? w.sandboxed : w.host, connects)
      conn[side].push(...res.latenciesMs)
      connRoundP50[side].push(median(res.latenciesMs))
    }
  }

  await o.events.flush()
  const common = {
    ...w.detail,
    rounds,
    counters: { ...w.proxy.counters },
    // Every connection is a network_audit event, through the EventLog into Postgres.
    auditEvents: { written: o.events.written, dropped: o.events.dropped },
  }
  const directRps = round(median(rps.direct))
  const directP99 = round(median(p99.direct), 3)
  return [
    figure({
      name: 'egress_http_rps',
      value: median(rps.proxied),
      unit: 'req/s',
      baseline: {
        name: `the same client on the host, straight to the same http-echo (no proxy), ${concurrency} keep-alive connections`,
        value: directRps,
        unit: 'req/s',
      },
      higherIsBetter: true,
      // shared/notes/anchors.md (the team notes beside this repository), "Proxy overhead": HTTP through our proxy ≥ 0.7 × direct.
      target: { ratio: 0.7 },
      detail: {
        ...common,
        concurrency,
        durationMs,
        requestsTotal: requests,
        proxied: spread(rps.proxied),
        direct: spread(rps.direct),
      },
    }),
    figure({
      name: 'egress_http_p99_ms',
      value: median(p99.proxied),
      unit: 'ms',
      baseline: {
        name: 'p99 of the same keep-alive GETs from the host, no proxy',
        value: directP99,
        unit: 'ms',
      },
      higherIsBetter: false,
      // anchors.md names only the throughput bound (≥ 0.7 × direct); in a closed loop at fixed
      // concurrency latency goes as 1 / throughput, so the same bound on latency is ≤ 1 / 0.7.
      target: { ratio: round(1 / 0.7, 2) },
      detail: {
        ...common,
        concurrency,
        durationMs,
        p99PerRound: { proxied: spread(p99.proxied, 3), direct: spread(p99.direct, 3) },
        p50: {
          proxied: round(median(p50.proxied), 3),
          direct: round(median(p50.direct), 3),
          ratio: round(median(p50.proxied) / median(p50.direct), 3),
        },
      },
    }),
    figure({
      name: 'egress_connect_p50_ms',
      value: median(conn.proxied),
      unit: 'ms',
      baseline: {
        name: 'the same new connection + GET from the host, no proxy',
        value: round(median(conn.direct), 3),
        unit: 'ms',
      },
      higherIsBetter: false,
      // anchors.md names no bound for a new connection. Ours: through the proxy a connection
      // costs a second TCP handshake (proxy → destination), the classification of its first
      // bytes, the Host check and the policy decision; at most twice the direct connection.
      target: { ratio: 2 },
      detail: {
        ...common,
        connectionsPerSide: conn.proxied.length,
        request: 'GET /bench, connection: close; timed from connect() to the last byte of the answer',
        p50PerRound: { proxied: spread(connRoundP50.proxied, 3), direct: spread(connRoundP50.direct, 3) },
        p99: {
          proxied: round(pctOf(conn.proxied, 0.99), 3),
          direct: round(pctOf(conn.direct, 0.99), 3),
        },
      },
    }),
    await attachFigure(w, Number(process.env['S0_BENCH_EGRESS_ATTACHES'] ?? 20)),
  ]
}

/**
 * What the sandbox network adds to a sandbox's start and delete: a veth, an address and its
 * routes (attach + detach), against what every sandbox pays without it, its namespace
 * (`ip netns add` + delete). Interleaved, one at a time.
 */
async function attachFigure(w: World, runs: number): Promise<Figure> {
  note(`egress attach: ${runs} sandbox namespaces with and without a veth, interleaved`)
  const withVeth: number[] = []
  const bare: number[] = []
  for (let i = 0; i < runs; i++) {
    const ns = `s0bench-at-${w.tag}`
    let t = performance.now()
    await createNetns(ns)
    await deleteNetns(ns)
    bare.push(performance.now() - t)
    const id = `sb-attach-${i}`
    t = performance.now()
    await createNetns(ns)
    await w.network.attach(id, ns)
    await w.network.detach(id)
    await deleteNetns(ns)
    withVeth.push(performance.now() - t)
  }
  return figure({
    name: 'egress_sandbox_attach_ms',
    value: median(withVeth),
    unit: 'ms',
    baseline: {
      name: 'the same namespace made and deleted without a veth (what a sandbox pays either way)',
      value: round(median(bare), 3),
      unit: 'ms',
    },
    higherIsBetter: false,
    // No anchor names one: reported beside the namespace cost, which the cold-start bench tracks.
    target: {},
    detail: { runs, withVeth: spread(withVeth, 3), bare: spread(bare, 3) },
  })
}

function pctOf(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number
}
