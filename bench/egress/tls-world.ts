// The world outside the proxy for bench/egress/tls.ts, in a child process of its own (so the proxy
// under test has the other core): an HTTPS destination, and the load client playing the sandbox.
// Driven over IPC: `start` → `ready`, `load` → `result`, `exit`.
import https from 'node:https'
import type net from 'node:net'

export interface StartMessage {
  type: 'start'
  certPem: string
  keyPem: string
  /** The destination says (`x-injected: 1`) whether Authorization was this. */
  injectedAuthorization: string
  bodyBytes: number
}

export interface LoadMessage {
  type: 'load'
  port: number
  /** The roots the client trusts (the sandbox CA through the MITM, the real CA through the pipe). */
  ca: string
  servername: string
  durationMs: number
  concurrency: number
  /** false: a new TLS connection for every request. */
  keepAlive: boolean
  /** Count an answer without the injected header as an error (the MITM must inject every time). */
  expectInjected: boolean
}

export interface LoadResult {
  type: 'result'
  requests: number
  errors: number
  seconds: number
  firstError?: string
}

export type WorldMessage = StartMessage | LoadMessage | { type: 'exit' }

let server: https.Server | undefined

function start(m: StartMessage): void {
  const body = Buffer.alloc(m.bodyBytes, 'b')
  server = https.createServer({ cert: m.certPem, key: m.keyPem, keepAliveTimeout: 60_000 }, (req, res) => {
    req.resume()
    req.on('end', () => {
      const injected = req.headers['authorization'] === m.injectedAuthorization ? '1' : '0'
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': body.length,
        'x-injected': injected,
      })
      res.end(body)
    })
  })
  server.listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'ready', port: (server?.address() as net.AddressInfo).port })
  })
}

function once(m: LoadMessage, agent: https.Agent | false): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: m.port,
        servername: m.servername,
        ca: m.ca,
        agent,
        path: '/v1/echo',
        headers: { host: m.servername, authorization: 'Bearer sandbox-placeholder' },
      },
      (res) => {
        res.resume()
        const injected = res.headers['x-injected'] === '1'
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`))
          else if (injected !== m.expectInjected)
            reject(new Error(`injected: ${injected}, expected ${m.expectInjected}`))
          else resolve()
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end()
  })
}

async function load(m: LoadMessage): Promise<LoadResult> {
  const result: LoadResult = { type: 'result', requests: 0, errors: 0, seconds: 0 }
  const agents: https.Agent[] = []
  const t0 = process.hrtime.bigint()
  const deadline = t0 + BigInt(m.durationMs) * 1_000_000n
  const worker = async (): Promise<void> => {
    const agent = m.keepAlive ? new https.Agent({ keepAlive: true, maxSockets: 1 }) : false
    if (agent) agents.push(agent)
    while (process.hrtime.bigint() < deadline) {
      try {
        await once(m, agent)
        result.requests++
      } catch (err) {
        result.errors++
        result.firstError ??= err instanceof Error ? err.message : String(err)
      }
    }
  }
  await Promise.all(Array.from({ length: m.concurrency }, worker))
  result.seconds = Number(process.hrtime.bigint() - t0) / 1e9
  for (const a of agents) a.destroy()
  return result
}

process.on('message', (m: WorldMessage) => {
  if (m.type === 'start') start(m)
  else if (m.type === 'load')
    void load(m).then((r) => process.send?.(r)) // load() never rejects
  else server?.close(() => process.exit(0))
})
