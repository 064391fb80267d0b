// Helpers of the services tests: a server whose sandboxes have a network (a pool of the test's
// own; no upstream: the tests only go into sandboxes), raw requests to the ingress by Host, and
// a bounded wait.
import http from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { startSandboxServer, type SandboxTestServer } from '../api/sandbox-fixture.js'

export const APP_SERVER = path.join(import.meta.dirname, 'app-server.py')

export async function startServicesServer(): Promise<SandboxTestServer & { cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 's0-services-test-'))
  const hostsFile = path.join(dir, 'hosts')
  await writeFile(hostsFile, '')
  // Nothing in these tests resolves a name: the resolver's upstream is a closed loopback port.
  const server = await startSandboxServer({ network: { hostsFile, resolver: '127.0.0.1:9' } })
  return {
    ...server,
    cleanup: async () => {
      await server.close()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

export async function appServerSource(): Promise<string> {
  return readFile(APP_SERVER, 'utf8')
}

export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  text: string
}

/** A request to the server's listener with this Host (what a browser sends for a public URL). */
export function ingress(
  serverUrl: string,
  host: string,
  urlPath: string,
  o: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<Answer> {
  const u = new URL(serverUrl)
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        method: o.method ?? 'GET',
        path: urlPath,
        headers: { host, ...o.headers },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const body = Buffer.concat(chunks)
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.setTimeout(60_000, () => req.destroy(new Error('ingress request timed out')))
    req.end(o.body)
  })
}

/** The Host of a public URL (`http://web--sb-x.localhost:1234` -> `web--sb-x.localhost:1234`). */
export function hostOf(publicUrl: string): string {
  return new URL(publicUrl).host
}

/** Retries `f` until it returns a value (not undefined), bounded. */
export async function until<T>(f: () => Promise<T | undefined>, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (let i = 0; Date.now() < deadline && i < 10_000; i++) {
    try {
      const v = await f()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}
