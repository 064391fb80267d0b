// Workspace sync across crashes, with real processes: kill -9 of the `s0 sync` client in the
// middle of a transfer, and kill -9 of `s0 server` while a live client commits (the client sees
// the connection drop and come back). Afterwards both sides converge: no edit lost, nothing
// twice (no conflict copies), and no half-written file on either side.
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serverProcesses, type ServerProcesses } from '../support/server.js'
import { spawnS0 } from '../support/s0-process.js'
import { localTree, until } from './support.js'

let servers: ServerProcesses
let env: NodeJS.ProcessEnv
const dirs: string[] = []

beforeAll(async () => {
  servers = await serverProcesses({ prefix: 's0-sync-crash-' })
  await servers.start()
  env = { S0_API_URL: servers.url, S0_TOKEN: await servers.token(), XDG_STATE_HOME: await tempDir() }
}, 120_000)

afterAll(async () => {
  await servers?.close()
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 's0-sync-crash-'))
  dirs.push(d)
  return d
}

async function newVolume(): Promise<string> {
  const res = await servers.api('/api/v1/sandboxvolumes', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  })
  return ((await res.json()) as { data: { id: string } }).data.id
}

/** The volume's tree through the files API (another process), with every name it holds. */
async function remoteTree(vol: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (dir: string, rel: string): Promise<void> => {
    const res = await servers.api(`/api/v1/sandboxvolumes/${vol}/files/list?path=${encodeURIComponent(dir)}`)
    const entries = (
      (await res.json()) as { data: { entries: { name: string; path: string; type: string }[] } }
    ).data.entries
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = rel ? `${rel}/${e.name}` : e.name
      if (e.type === 'dir') {
        out[p] = 'dir'
        await walk(e.path, p)
      } else {
        const body = await (
          await servers.api(`/api/v1/sandboxvolumes/${vol}/files?path=${encodeURIComponent(e.path)}`)
        ).text()
        out[p] = `file:${body}`
      }
    }
  }
  await walk('/', '')
  return out
}

async function seed(dir: string, files: number): Promise<void> {
  await mkdir(path.join(dir, 'src'), { recursive: true })
  for (let i = 0; i < files; i++)
    await writeFile(path.join(dir, 'src', `f${i}.txt`), `file ${i} ${randomBytes(2000).toString('hex')}`)
  for (let i = 0; i < 3; i++)
    await writeFile(path.join(dir, `big${i}.txt`), randomBytes(1_500_000).toString('base64'))
}

const noTemps = (t: Record<string, string>): string[] =>
  Object.keys(t).filter((p) => /(^|\/)\.s0sync-/.test(p))

describe('sync across crashes', () => {
  it('kill -9 of the client mid-transfer: the next run finishes the job, once', async () => {
    const vol = await newVolume()
    const dir = await tempDir()
    await seed(dir, 300)
    for (const delayMs of [900, 1600, 2400]) {
      const p = await spawnS0(['sync', dir, vol, '--once'], { env })
      await new Promise((r) => setTimeout(r, delayMs))
      p.child.kill('SIGKILL')
      await p.exited
    }
    const p = await spawnS0(['sync', dir, vol, '--once', '--json'], { env })
    const done = await p.exited
    expect(done.code, p.stderr()).toBe(0)
    expect(JSON.parse(p.stdout())).toMatchObject({ conflicts: 0 })
    const local = await localTree(dir)
    expect(noTemps(local)).toEqual([])
    const remote = await remoteTree(vol)
    expect(noTemps(remote)).toEqual([])
    expect(remote).toEqual(local)
  }, 180_000)

  it('kill -9 of the server while a live client commits: the client waits, resumes, and converges', async () => {
    const vol = await newVolume()
    const dir = await tempDir()
    const p = await spawnS0(['sync', dir, vol], { env })
    try {
      await until(
        async () => p.stderr(),
        (s) => s.includes('s0 sync: live'),
        30_000,
      )
      await seed(dir, 400)
      // Some of it committed: the server dies in the middle of the rest.
      await until(
        () => remoteTree(vol).catch(() => ({})),
        (t) => Object.keys(t).length > 1,
        30_000,
      )
      await servers.kill('SIGKILL')
      await writeFile(path.join(dir, 'while-down.txt'), 'written while the server was down')
      await servers.start()
      const local = await localTree(dir)
      const remote = await until(
        () => remoteTree(vol).catch(() => ({})),
        (t) => JSON.stringify(t) === JSON.stringify(local),
        60_000,
      )
      expect(remote).toEqual(local)
      expect(noTemps(remote)).toEqual([])
      // The feed came back too (a new epoch: the client rescanned): a remote write arrives.
      await servers.api(`/api/v1/sandboxvolumes/${vol}/files?path=/after-restart.txt`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: 'hello again',
      })
      await until(
        () => readdir(dir),
        (names) => names.includes('after-restart.txt'),
        30_000,
      )
      expect((await readdir(dir)).filter((n) => n.includes('conflict'))).toEqual([])
    } finally {
      p.child.kill('SIGINT')
      await p.exited
    }
  }, 240_000)
})
