// TLS interception figures for the egress suite (`egress_tls_mitm_rps`, and new connections per
// second): terminate-reoriginate with header injection vs a TLS passthrough (a plain TCP pipe that
// never decrypts), same client, destination and run. The proxy runs in this process; the client
// and destination in a child process (bench/egress/tls-world.ts), all over loopback.
import { fork, type ChildProcess } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { serveHttp, type HttpHooks } from '../../src/egress/http/proxy-http.js'
import { originate, terminateTls } from '../../src/egress/tls/intercept.js'
import { LeafCache, prewarmLeafKeys } from '../../src/egress/tls/leaf-cache.js'
import { createCa, issueLeaf, type CertificatePem } from '../../src/egress/tls/x509.js'
import { figure, median, note, round, spread, type Figure } from '../lib.js'
import type { LoadMessage, LoadResult, StartMessage, WorldMessage } from './tls-world.js'

const NAME = 'api.bench.test'
const INJECTED = 'Bearer injected-by-proxy'

export interface TlsBenchOptions {
  /** Measurement window per mode and round. */
  durationMs?: number
  rounds?: number
  /** Keep-alive connections the client drives at once. */
  concurrency?: number
  bodyBytes?: number
}

interface Proxy {
  port: number
  close(): Promise<void>
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as net.AddressInfo).port
}

function closer(server: net.Server, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy()
      server.close(() => resolve())
    })
}

function track(sockets: Set<net.Socket>, s: net.Socket): void {
  sockets.add(s)
  s.on('close', () => sockets.delete(s))
  s.on('error', () => s.destroy())
}

/** TLS passthrough: bytes piped to the destination, never decrypted. */
async function startPassthrough(upstreamPort: number): Promise<Proxy> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    track(sockets, client)
    const up = net.connect(upstreamPort, '127.0.0.1')
    track(sockets, up)
    up.setNoDelay(true)
    client.setNoDelay(true)
    client.pipe(up)
    up.pipe(client)
    client.on('close', () => up.destroy())
    up.on('close', () => client.destroy())
  })
  return { port: await listen(server), close: closer(server, sockets) }
}

/** Terminate-reoriginate with the injection a credential rule makes, as the proxy core calls it. */
async function startMitm(upstreamPort: number, leaves: LeafCache, upstreamCa: string): Promise<Proxy> {
  const sockets = new Set<net.Socket>()
  const hooks: HttpHooks = {
    onRequest: () => Promise.resolve({ action: 'allow', setHeaders: { authorization: INJECTED } }),
    onDone: () => {},
  }
  const server = net.createServer((client) => {
    track(sockets, client)
    client.setNoDelay(true)
    client.once('data', (firstBytes: Buffer) => {
      client.pause()
      void (async () => {
        try {
          const tlsSocket = await terminateTls(client, {
            ca: leaves,
            serverName: NAME,
            alpn: ['h2', 'http/1.1'],
            firstBytes,
          })
          await serveHttp(tlsSocket, {
            secure: true,
            alpn: tlsSocket.alpnProtocol,
            upstream: (want) =>
              originate({
                ip: '127.0.0.1',
                port: upstreamPort,
                serverName: NAME,
                alpn: want.alpn,
                ca: upstreamCa,
              }),
            hooks,
          })
        } catch {
          client.destroy() // a failed handshake shows up as a client error in the counts
        }
      })()
    })
  })
  return { port: await listen(server), close: closer(server, sockets) }
}

/** The child process: one question at a time. */
class World {
  readonly #child: ChildProcess
  #pending: { resolve: (m: unknown) => void; reject: (err: Error) => void } | undefined

  constructor() {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tls-world.ts')
    this.#child = fork(file, [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.#child.on('message', (m) => {
      const p = this.#pending
      this.#pending = undefined
      p?.resolve(m)
    })
    this.#child.on('exit', (code) => this.#pending?.reject(new Error(`bench world exited with ${code}`)))
  }

  ask<T>(m: WorldMessage): Promise<T> {
    return new Promise((resolve, reject) => {
      this.#pending = { resolve: resolve as (m: unknown) => void, reject }
      this.#child.send(m)
    })
  }

  stop(): void {
    this.#child.send({ type: 'exit' })
    setTimeout(() => this.#child.kill(), 2_000).unref()
  }
}

/** Per-leaf cost of a name the cache has not seen: key from the spare pool, signature off-loop. */
async function leafIssueMs(ca: CertificatePem): Promise<{ cachedMs: number; syncMs: number }> {
  const leaves = new LeafCache(ca)
  prewarmLeafKeys()
  await new Promise((r) => setTimeout(r, 200)) // let the spare keys fill
  const n = 200
  let t = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await leaves.leaf(`n${i}.bench.test`)
  const cachedMs = Number(process.hrtime.bigint() - t) / 1e6 / n
  t = process.hrtime.bigint()
  for (let i = 0; i < n; i++) issueLeaf(ca, [`s${i}.bench.test`])
  const syncMs = Number(process.hrtime.bigint() - t) / 1e6 / n
  return { cachedMs, syncMs }
}

interface Measured {
  pass: number[]
  mitm: number[]
  errors: number
  firstError?: string
}

function details(m: Measured): Record<string, unknown> {
  return { mitm: spread(m.mitm), passthrough: spread(m.pass), errors: m.errors, firstError: m.firstError }
}

/** `egress_tls_mitm_rps` (keep-alive) and `egress_tls_mitm_handshake_rps` (a connection per request). */
export async function egressTlsFigures(opts: TlsBenchOptions = {}): Promise<Figure[]> {
  const durationMs = opts.durationMs ?? Number(process.env['S0_BENCH_TLS_MS'] ?? 3_000)
  const rounds = opts.rounds ?? 3
  const concurrency = opts.concurrency ?? 8
  const bodyBytes = opts.bodyBytes ?? 1_024
  const upstreamCa = createCa('bench upstream CA')
  const sandboxCa = createCa('bench sandbox CA')
  const leaf = issueLeaf(upstreamCa, [NAME])
  const world = new World()
  const proxies: Proxy[] = []
  try {
    const start: StartMessage = { type: 'start', ...leaf, injectedAuthorization: INJECTED, bodyBytes }
    const up = await world.ask<{ port: number }>(start)
    const leaves = new LeafCache(sandboxCa)
    prewarmLeafKeys()
    const pass = await startPassthrough(up.port)
    const mitm = await startMitm(up.port, leaves, upstreamCa.certPem)
    proxies.push(pass, mitm)
    const load = (mode: 'pass' | 'mitm', keepAlive: boolean, ms: number): Promise<LoadResult> =>
      world.ask<LoadResult>({
        type: 'load',
        port: mode === 'pass' ? pass.port : mitm.port,
        ca: mode === 'pass' ? upstreamCa.certPem : sandboxCa.certPem,
        servername: NAME,
        durationMs: ms,
        concurrency,
        keepAlive,
        expectInjected: mode === 'mitm',
      } satisfies LoadMessage)
    const measure = async (keepAlive: boolean): Promise<Measured> => {
      const out: Measured = { pass: [], mitm: [], errors: 0 }
      await load('pass', keepAlive, 500) // warm-up: JIT, the leaf, TLS sessions
      await load('mitm', keepAlive, 500)
      for (let r = 0; r < rounds; r++) {
        for (const mode of r % 2 === 0 ? (['pass', 'mitm'] as const) : (['mitm', 'pass'] as const)) {
          const res = await load(mode, keepAlive, durationMs)
          out[mode].push(res.requests / res.seconds)
          out.errors += res.errors
          out.firstError ??= res.firstError
        }
      }
      return out
    }
    note(`egress tls: keep-alive, ${concurrency} connections, ${rounds} x ${durationMs} ms per mode`)
    const ka = await measure(true)
    note('egress tls: a new connection per request')
    const hs = await measure(false)
    const issue = await leafIssueMs(sandboxCa)
    const common = {
      concurrency,
      bodyBytes,
      rounds,
      durationMs,
      setup: 'loopback; proxy in the bench process, client and destination in one child process',
      leafIssueMs: { spareKeyAndOffLoopSign: round(issue.cachedMs, 3), synchronous: round(issue.syncMs, 3) },
    }
    return [
      figure({
        name: 'egress_tls_mitm_rps',
        value: median(ka.mitm),
        unit: 'req/s',
        baseline: {
          name: 'the same client through a TLS passthrough (TCP pipe, not decrypted)',
          value: round(median(ka.pass)),
          unit: 'req/s',
        },
        higherIsBetter: true,
        target: {},
        detail: { ...common, keepAlive: true, ...details(ka) },
      }),
      figure({
        name: 'egress_tls_mitm_handshake_rps',
        value: median(hs.mitm),
        unit: 'conn/s',
        baseline: {
          name: 'new TLS connections through the passthrough',
          value: round(median(hs.pass)),
          unit: 'conn/s',
        },
        higherIsBetter: true,
        target: {},
        detail: { ...common, keepAlive: false, ...details(hs) },
      }),
    ]
  } finally {
    for (const p of proxies) await p.close()
    world.stop()
  }
}
