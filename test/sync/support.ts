// Workspace sync test fixtures: a real server (in process, real Postgres and object store), a
// volume, a local temp folder, and sessions of the real client against them; helpers to read
// and write the volume through the engine (what a sandbox or the files API would do).
import { lstat, mkdtemp, readFile, readlink, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { ApiClient } from '../../src/cli/api-client.js'
import type { ModeOptions } from '../../src/cli/sync/reconcile.js'
import { SyncRemote } from '../../src/cli/sync/remote.js'
import { SyncSession, type SessionOptions } from '../../src/cli/sync/session.js'
import type { TeamId } from '../../src/core/ids.js'
import { resolve, splitPath } from '../../src/snapshots/paths.js'
import { isDir, isLnk } from '../../src/snapshots/types.js'
import type { Vfs } from '../../src/snapshots/vfs.js'
import * as volumeFiles from '../../src/snapshots/volume-files.js'
import { startTestServer, type TestServer } from '../support/server.js'

export interface SyncFixture {
  server: TestServer
  teamId: TeamId
  newVolume(opts?: { accessMode?: 'RWO' | 'ROX' }): Promise<{ id: string; vfs: Vfs }>
  tempDir(): Promise<string>
  session(
    dir: string,
    volumeId: string,
    o?: Partial<Omit<SessionOptions, 'localRoot' | 'remote'>> & { root?: string },
  ): SyncSession
  close(): Promise<void>
}

export async function syncFixture(): Promise<SyncFixture> {
  const server = await startTestServer()
  const res = await fetch(`${server.url}/api/v1/sandboxvolumes`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: '{}',
  })
  const first = ((await res.json()) as { data: { id: string } }).data.id
  const teamId = await server.engine.catalog.teamOf(first)
  const dirs: string[] = []
  const sessions: SyncSession[] = []
  return {
    server,
    teamId,
    async newVolume(opts = {}) {
      const v = await server.engine.create(teamId, opts)
      return { id: v.id, vfs: await server.engine.vfs(teamId, v.id) }
    },
    async tempDir() {
      const d = await mkdtemp(path.join(os.tmpdir(), 's0-sync-'))
      dirs.push(d)
      return d
    },
    session(dir, volumeId, o = {}) {
      const api = new ApiClient({ baseUrl: server.url, token: server.token })
      const s = new SyncSession({
        localRoot: dir,
        remote: new SyncRemote(api, volumeId, o.root ?? '/', 20_000),
        mode: o.mode ?? ({ mode: 'two-way-safe' } as ModeOptions),
        // S0_SYNC_TEST_LOG=1 shows what the sessions decided.
        ...(process.env['S0_SYNC_TEST_LOG']
          ? { log: (l: string) => process.stderr.write(`[sync ${path.basename(dir)}] ${l}\n`) }
          : {}),
        ...o,
      })
      sessions.push(s)
      return s
    },
    async close() {
      for (const s of sessions) await s.close().catch(() => undefined)
      await server.close()
      for (const d of dirs) await rm(d, { recursive: true, force: true })
    },
  }
}

/** A tree as `path → 'file:<content>' | 'dir' | 'link:<target>'` (+ ' x' for exec files). */
export type Tree = Record<string, string>

export async function localTree(root: string, skip = ['.s0sync']): Promise<Tree> {
  const out: Tree = {}
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(root, rel))).sort()) {
      const p = rel ? `${rel}/${name}` : name
      if (skip.includes(p.split('/')[0] as string)) continue
      const st = await lstat(path.join(root, p))
      if (st.isDirectory()) {
        out[p] = 'dir'
        await walk(p)
      } else if (st.isSymbolicLink()) out[p] = `link:${await readlink(path.join(root, p))}`
      else out[p] = `file:${await readFile(path.join(root, p), 'utf8')}${st.mode & 0o100 ? ' x' : ''}`
    }
  }
  await walk('')
  return out
}

export async function volumeTree(vfs: Vfs, root = '/'): Promise<Tree> {
  const out: Tree = {}
  const walk = async (dirPath: string, rel: string): Promise<void> => {
    for (const e of await volumeFiles.list(vfs, dirPath)) {
      const p = rel ? `${rel}/${e.name}` : e.name
      if (e.name.startsWith('.s0sync-')) continue
      const a = await resolve(vfs, splitPath(e.path))
      if (isDir(a.mode)) {
        out[p] = 'dir'
        await walk(e.path, p)
      } else if (isLnk(a.mode)) out[p] = `link:${(await vfs.readlink(a.ino)).toString()}`
      else out[p] = `file:${(await vfs.read(a.ino, 0, a.size)).toString('utf8')}${a.mode & 0o100 ? ' x' : ''}`
    }
  }
  await walk(root, '')
  return out
}

export async function volumeWrite(vfs: Vfs, p: string, content: string): Promise<void> {
  await volumeFiles.writeFile(vfs, p, { uid: 0, gid: 0 }, Readable.from([Buffer.from(content)]))
}

/**
 * Polls `what` until `ok` holds (bounded: `ms`), then returns its last value. A read that races
 * the session (a name gone between a listing and a stat) is simply tried again.
 */
export async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    try {
      const v = await what()
      if (ok(v) || Date.now() >= end) return v
    } catch (err) {
      if (Date.now() >= end) throw err
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}
