// The load client of bench/egress/proxy.ts, a child process: run in the "sandbox" network
// namespace (nsenter --net, so its TCP goes through the egress proxy) or on the host (straight to
// the upstream): the same program both ways. A raw HTTP/1.1 client (one request at a time per
// connection, Content-Length answers), so the client's own cost stays small beside what it
// measures. Jobs arrive as JSON lines on stdin; one JSON line per job answers on stdout.
import net from 'node:net'
import { createInterface } from 'node:readline'

export interface HttpTarget {
  /** The address the client connects to (the upstream's; redirected to the proxy in the sandbox). */
  address: string
  port: number
  /** The Host header: the name the proxy checks against the address and the policy. */
  hostHeader: string
  path: string
}

/** `concurrency` keep-alive connections, each a closed loop of GETs, for `durationMs`. */
export interface KeepAliveJob {
  type: 'keepalive'
  target: HttpTarget
  durationMs: number
  concurrency: number
}

/** `count` times, one after another: connect, one GET (Connection: close), the whole answer. */
export interface ConnectJob {
  type: 'connect'
  target: HttpTarget
  count: number
}

export type ClientJob = KeepAliveJob | ConnectJob | { type: 'exit' }

export interface KeepAliveResult {
  type: 'keepalive'
  requests: number
  errors: number
  seconds: number
  firstError?: string
  /** Per-request latency percentiles over the run, in ms. */
  p50Ms: number
  p99Ms: number
}

export interface ConnectResult {
  type: 'connect'
  /** Connect to the last byte of the answer, per connection, in ms (failed ones left out). */
  latenciesMs: number[]
  errors: number
  firstError?: string
}

export type ClientResult = KeepAliveResult | ConnectResult

function requestBytes(t: HttpTarget, close: boolean): Buffer {
  return Buffer.from(
    `GET ${t.path} HTTP/1.1\r\nhost: ${t.hostHeader}\r\nuser-agent: s0-bench\r\n` +
      `${close ? 'connection: close\r\n' : ''}\r\n`,
  )
}

const HEADER_END = Buffer.from('\r\n\r\n')

/** One connection, one request in flight: `request()` resolves when the whole answer is in. */
class Conn {
  private buf: Buffer = Buffer.alloc(0)
  private waiting: { resolve: () => void; reject: (err: Error) => void } | undefined
  private checked = false

  private constructor(
    private readonly socket: net.Socket,
    private readonly path: string,
  ) {
    socket.on('data', (b: Buffer) => this.onData(b))
    socket.on('error', (err) => this.fail(err))
    socket.on('close', () => this.fail(new Error('connection closed before the answer')))
  }

  static open(t: HttpTarget): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: t.address, port: t.port, noDelay: true })
      s.once('connect', () => {
        s.off('error', reject)
        resolve(new Conn(s, t.path))
      })
      s.once('error', reject)
    })
  }

  request(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject }
      this.socket.write(bytes)
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private fail(err: Error): void {
    const w = this.waiting
    this.waiting = undefined
    w?.reject(err)
  }

  private onData(b: Buffer): void {
    this.buf = this.buf.length === 0 ? b : Buffer.concat([this.buf, b])
    const end = this.buf.indexOf(HEADER_END)
    if (end < 0) return
    const head = this.buf.subarray(0, end).toString('latin1')
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head)
    if (!m) return this.fail(new Error(`answer without content-length: ${head.slice(0, 200)}`))
    const total = end + 4 + Number(m[1])
    if (this.buf.length < total) return
    const body = this.buf.subarray(end + 4, total)
    this.buf = this.buf.subarray(total)
    const w = this.waiting
    this.waiting = undefined
    if (!head.startsWith('HTTP/1.1 200 '))
      return w?.reject(new Error(`answer: ${head.split('\r\n')[0]} ${body.toString('utf8').slice(0, 300)}`))
    if (!this.checked) {
      // The first answer of each connection: really the echo server's, for our request.
      this.checked = true
      const echo = JSON.parse(body.toString('utf8')) as { method?: string; path?: string }
      if (echo.method !== 'GET' || echo.path !== this.path)
        return w?.reject(new Error(`not our echo: ${body.toString('utf8').slice(0, 200)}`))
    }
    w?.resolve()
  }
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

async function keepAlive(j: KeepAliveJob): Promise<KeepAliveResult> {
  const req = requestBytes(j.target, false)
  let lat = new Float64Array(1 << 16)
  let n = 0
  let errors = 0
  let firstError: string | undefined
  const t0 = process.hrtime.bigint()
  const deadline = t0 + BigInt(j.durationMs) * 1_000_000n
  const worker = async (): Promise<void> => {
    let conn: Conn | undefined
    while (process.hrtime.bigint() < deadline) {
      try {
        conn ??= await Conn.open(j.target)
        const s = process.hrtime.bigint()
        await conn.request(req)
        if (n === lat.length) {
          const bigger = new Float64Array(lat.length * 2)
          bigger.set(lat)
          lat = bigger
        }
        lat[n++] = Number(process.hrtime.bigint() - s) / 1e6
      } catch (err) {
        errors++
        firstError ??= message(err)
        conn?.close()
        conn = undefined
      }
    }
    conn?.close()
  }
  await Promise.all(Array.from({ length: j.concurrency }, worker))
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const sorted = lat.subarray(0, n).sort()
  return {
    type: 'keepalive',
    requests: n,
    errors,
    seconds,
    ...(firstError !== undefined ? { firstError } : {}),
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  }
}

async function connects(j: ConnectJob): Promise<ConnectResult> {
  const req = requestBytes(j.target, true)
  const latenciesMs: number[] = []
  let errors = 0
  let firstError: string | undefined
  for (let i = 0; i < j.count; i++) {
    const t0 = process.hrtime.bigint()
    let conn: Conn | undefined
    try {
      conn = await Conn.open(j.target)
      await conn.request(req)
      latenciesMs.push(Number(process.hrtime.bigint() - t0) / 1e6)
    } catch (err) {
      errors++
      firstError ??= message(err)
    } finally {
      conn?.close()
    }
  }
  return { type: 'connect', latenciesMs, errors, ...(firstError !== undefined ? { firstError } : {}) }
}

async function main(): Promise<void> {
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    const job = JSON.parse(line) as ClientJob
    if (job.type === 'exit') break
    const result = job.type === 'keepalive' ? await keepAlive(job) : await connects(job)
    process.stdout.write(JSON.stringify(result) + '\n')
  }
  lines.close()
  process.exit(0)
}

main().catch((err: unknown) => {
  process.stderr.write(`http-client: ${message(err)}\n`)
  process.exit(1)
})
