// Persistence gate (Sandbox0's "V0"): 30,000 × 4 KiB files written through a FUSE mount of a
// running `s0 server`, `sync`, kill -9 of the server; after a restart the volume and a fork of
// it, mounted elsewhere, hold every file with its sha256. The killed server leaves no mount.
import { execFile, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freshDb, type TestDb } from '../support/db.js'
import { spawnServer } from '../support/server.js'
import { freePort } from '../../tools/free-port.js'

const run = promisify(execFile)
const FILES = Number(process.env.S0_GATE_FILES ?? 30_000)
const PER_DIR = 128
const WRITERS = 8

let tdb: TestDb
let stateDir: string
let port: number
let server: ChildProcess | undefined

function startServer(): Promise<ChildProcess> {
  return spawnServer({ stateDir, port, databaseUrl: tdb.url, env: { S0_RUNTIMES: 'runc' } })
}

async function api<T>(token: string, method: string, p: string, body?: unknown): Promise<T> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1${p}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  })
  const json = (await res.json()) as { success: boolean; data: T; error?: unknown }
  if (!json.success) throw new Error(`${method} ${p}: ${res.status} ${JSON.stringify(json.error)}`)
  return json.data
}

function content(i: number): Buffer {
  const b = Buffer.alloc(4096)
  for (let k = 0; k < 4096; k += 32) createHash('sha256').update(`${i}:${k}`).digest().copy(b, k)
  return b
}

const fileOf = (root: string, i: number): string =>
  path.join(root, `d${String(Math.floor(i / PER_DIR)).padStart(4, '0')}`, `f${i}.bin`)

async function inParallel(n: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (next < n) await fn(next++)
    }),
  )
}

async function mountedAt(dir: string): Promise<boolean> {
  return (await fs.readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === dir)
}

beforeAll(async () => {
  tdb = await freshDb()
  stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 's0-gate-'))
  await fs.chmod(stateDir, 0o755)
  port = await freePort()
})
afterAll(async () => {
  server?.kill('SIGKILL')
  await tdb.drop()
  await fs.rm(stateDir, { recursive: true, force: true })
})

describe('persistence gate', () => {
  it(`keeps ${FILES} files written through FUSE across kill -9 of the server (and in a fork)`, async () => {
    server = await startServer()
    const token = (await fs.readFile(path.join(stateDir, 'token'), 'utf8')).trim()
    const volume = await api<{ id: string }>(token, 'POST', '/sandboxvolumes', {})
    const mount = await api<{ id: string; host_path: string }>(
      token,
      'POST',
      `/sandboxvolumes/${volume.id}/mounts`,
      {},
    )
    const hashes: string[] = []
    for (let d = 0; d * PER_DIR < FILES; d++)
      await fs.mkdir(path.dirname(fileOf(mount.host_path, d * PER_DIR)))
    await inParallel(FILES, async (i) => {
      const data = content(i)
      hashes[i] = createHash('sha256').update(data).digest('hex')
      await fs.writeFile(fileOf(mount.host_path, i), data)
    })
    await run('sync')
    server.kill('SIGKILL')
    await new Promise((r) => server?.once('exit', r))
    // auto_unmount: the mount goes with the process that served it.
    for (let i = 0; i < 50 && (await mountedAt(mount.host_path)); i++)
      await new Promise((r) => setTimeout(r, 100))
    expect(await mountedAt(mount.host_path)).toBe(false)

    server = await startServer()
    const fork = await api<{ id: string }>(token, 'POST', `/sandboxvolumes/${volume.id}/fork`, {})
    for (const id of [volume.id, fork.id]) {
      const m = await api<{ id: string; host_path: string }>(
        token,
        'POST',
        `/sandboxvolumes/${id}/mounts`,
        {},
      )
      expect(m.host_path).not.toBe(mount.host_path)
      const bad: number[] = []
      await inParallel(FILES, async (i) => {
        const data = await fs.readFile(fileOf(m.host_path, i)).catch(() => Buffer.alloc(0))
        if (createHash('sha256').update(data).digest('hex') !== hashes[i]) bad.push(i)
      })
      expect(bad.slice(0, 10), `${bad.length} files lost or damaged in ${id}`).toEqual([])
      await api(token, 'DELETE', `/sandboxvolumes/${id}/mounts/${m.id}`)
      expect(await mountedAt(m.host_path)).toBe(false)
    }
    server.kill('SIGTERM')
    await new Promise((r) => server?.once('exit', r))
    server = undefined
  }, 900_000)
})
