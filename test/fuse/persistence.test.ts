// Persistence gate (Sandbox0's "V0"): 30,000 × 4 KiB files written through a FUSE mount of a
// running `s0 server`, `sync`, kill -9 of the server; after a restart the volume and a fork of
// it, mounted elsewhere, hold every file with its sha256. The killed server leaves no mount.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import * as fs from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serverProcesses, type ServerProcesses } from '../support/server.js'

const run = promisify(execFile)
const FILES = Number(process.env.S0_GATE_FILES ?? 30_000)
const PER_DIR = 128
const WRITERS = 8

let servers: ServerProcesses

async function api<T>(method: string, p: string, body?: unknown): Promise<T> {
  const res = await servers.api(`/api/v1${p}`, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    ...(body ? { body: JSON.stringify(body) } : {}),
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
  servers = await serverProcesses({ prefix: 's0-gate-', env: { S0_RUNTIMES: 'runc' } })
})
afterAll(async () => {
  await servers?.close()
})

describe('persistence gate', () => {
  it(`keeps ${FILES} files written through FUSE across kill -9 of the server (and in a fork)`, async () => {
    await servers.start()
    const volume = await api<{ id: string }>('POST', '/sandboxvolumes', {})
    const mount = await api<{ id: string; host_path: string }>(
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
    await servers.kill('SIGKILL')
    // auto_unmount: the mount goes with the process that served it.
    for (let i = 0; i < 50 && (await mountedAt(mount.host_path)); i++)
      await new Promise((r) => setTimeout(r, 100))
    expect(await mountedAt(mount.host_path)).toBe(false)

    await servers.start()
    const fork = await api<{ id: string }>('POST', `/sandboxvolumes/${volume.id}/fork`, {})
    for (const id of [volume.id, fork.id]) {
      const m = await api<{ id: string; host_path: string }>('POST', `/sandboxvolumes/${id}/mounts`, {})
      expect(m.host_path).not.toBe(mount.host_path)
      const bad: number[] = []
      await inParallel(FILES, async (i) => {
        const data = await fs.readFile(fileOf(m.host_path, i)).catch(() => Buffer.alloc(0))
        if (createHash('sha256').update(data).digest('hex') !== hashes[i]) bad.push(i)
      })
      expect(bad.slice(0, 10), `${bad.length} files lost or damaged in ${id}`).toEqual([])
      await api('DELETE', `/sandboxvolumes/${id}/mounts/${m.id}`)
      expect(await mountedAt(m.host_path)).toBe(false)
    }
    await servers.kill('SIGTERM')
  }, 900_000)
})
