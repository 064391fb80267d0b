// Workspace sync end to end: the real client (src/cli/sync) against a real server and volume.
// First passes both ways, live propagation both ways, renames sent as renames, conflicts kept
// on both sides, the mass-delete guard, --init-from, ignore rules, and bad input.
import {
  appendFile,
  chmod,
  mkdir,
  readFile,
  rename,
  stat,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises'
import { renameSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient } from '../../src/cli/api-client.js'
import { SyncRemote } from '../../src/cli/sync/remote.js'
import { SyncError, SyncSession } from '../../src/cli/sync/session.js'
import { SyncState } from '../../src/cli/sync/state.js'
import { resolve, splitPath } from '../../src/snapshots/paths.js'
import { move } from '../../src/snapshots/volume-files.js'
import { localTree, syncFixture, until, volumeTree, volumeWrite, type SyncFixture } from './support.js'

let fx: SyncFixture

beforeAll(async () => {
  fx = await syncFixture()
}, 60_000)

afterAll(async () => {
  await fx?.close()
})

async function seed(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'src', 'lib'), { recursive: true })
  await mkdir(path.join(dir, 'empty'))
  await writeFile(path.join(dir, 'README.md'), 'hello\n')
  await writeFile(path.join(dir, 'src', 'main.py'), 'print(1)\n')
  await writeFile(path.join(dir, 'src', 'lib', 'run.sh'), '#!/bin/sh\necho run\n')
  await chmod(path.join(dir, 'src', 'lib', 'run.sh'), 0o755)
  await symlink('lib/run.sh', path.join(dir, 'src', 'run'))
  // Ignored: by .gitignore (root and nested), .s0ignore, and .git/ by default.
  await writeFile(path.join(dir, '.gitignore'), 'build/\n*.log\n')
  await writeFile(path.join(dir, 'src', '.gitignore'), 'cache\n')
  await writeFile(path.join(dir, '.s0ignore'), 'secret.txt\n')
  await mkdir(path.join(dir, 'build'))
  await writeFile(path.join(dir, 'build', 'out.o'), 'obj')
  await writeFile(path.join(dir, 'debug.log'), 'log')
  await writeFile(path.join(dir, 'src', 'cache'), 'cached')
  await writeFile(path.join(dir, 'secret.txt'), 'secret')
  await mkdir(path.join(dir, '.git'))
  await writeFile(path.join(dir, '.git', 'HEAD'), 'ref: refs/heads/main\n')
}

const SEEDED_SYNCED = {
  '.gitignore': 'file:build/\n*.log\n',
  '.s0ignore': 'file:secret.txt\n',
  'README.md': 'file:hello\n',
  empty: 'dir',
  src: 'dir',
  'src/.gitignore': 'file:cache\n',
  'src/lib': 'dir',
  'src/lib/run.sh': 'file:#!/bin/sh\necho run\n x',
  'src/main.py': 'file:print(1)\n',
  'src/run': 'link:lib/run.sh',
}

describe('s0 sync', () => {
  it('first pass from a full folder to an empty volume, ignore rules applied, then back into an empty folder', async () => {
    const { id, vfs } = await fx.newVolume()
    const a = await fx.tempDir()
    await seed(a)
    const s = fx.session(a, id)
    await s.open()
    const r = await s.fullPass()
    expect(r.pushedFiles).toBe(6)
    expect(await volumeTree(vfs)).toEqual(SEEDED_SYNCED)
    await s.close()

    // Another empty folder takes the volume's content.
    const b = await fx.tempDir()
    const s2 = fx.session(b, id)
    await s2.open()
    expect((await s2.fullPass()).pulledFiles).toBe(6)
    expect(await localTree(b)).toEqual(SEEDED_SYNCED)
    // A second pass has nothing to do.
    expect(await s2.fullPass()).toEqual({ pushedFiles: 0, pulledFiles: 0, conflicts: 0 })
    await s2.close()
  })

  it('refuses to guess when both sides have content; --init-from picks the winner, nothing is deleted', async () => {
    const { id, vfs } = await fx.newVolume()
    await volumeWrite(vfs, '/both.txt', 'remote')
    await volumeWrite(vfs, '/remote-only.txt', 'r')
    const dir = await fx.tempDir()
    await writeFile(path.join(dir, 'both.txt'), 'local')
    await writeFile(path.join(dir, 'local-only.txt'), 'l')
    const s = fx.session(dir, id)
    await s.open()
    const err = await s.fullPass().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SyncError)
    expect((err as SyncError).code).toBe('sync_init_ambiguous')
    expect(await volumeTree(vfs)).toEqual({ 'both.txt': 'file:remote', 'remote-only.txt': 'file:r' })
    await s.close()
    const s2 = fx.session(dir, id, { initFrom: 'local' })
    await s2.open()
    await s2.fullPass()
    const want = { 'both.txt': 'file:local', 'local-only.txt': 'file:l', 'remote-only.txt': 'file:r' }
    expect(await volumeTree(vfs)).toEqual(want)
    expect(await localTree(dir)).toEqual(want)
    await s2.close()
  })

  it('live: edits, creates, deletes, renames and exec bits travel both ways', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    await seed(dir)
    const s = fx.session(dir, id)
    await s.open()
    let live = false
    const running = s.live(() => (live = true))
    await until(
      async () => live,
      (v) => v,
    )
    try {
      // Local → volume.
      await writeFile(path.join(dir, 'src', 'main.py'), 'print(2)\n')
      await writeFile(path.join(dir, 'new.txt'), 'new')
      await chmod(path.join(dir, 'src', 'main.py'), 0o755)
      await unlink(path.join(dir, 'README.md'))
      const want1 = { ...SEEDED_SYNCED, 'src/main.py': 'file:print(2)\n x', 'new.txt': 'file:new' } as Record<
        string,
        string
      >
      delete want1['README.md']
      expect(
        await until(
          () => volumeTree(vfs),
          (t) => JSON.stringify(t) === JSON.stringify(sorted(want1)),
        ),
      ).toEqual(sorted(want1))

      // A directory rename is sent as a rename: the volume keeps the inodes.
      const before = await resolve(vfs, splitPath('/src/lib/run.sh'))
      await rename(path.join(dir, 'src', 'lib'), path.join(dir, 'src', 'tools'))
      const moved = await until(
        () => resolve(vfs, splitPath('/src/tools/run.sh')).catch(() => null),
        (a) => a !== null,
      )
      expect(moved?.ino).toBe(before.ino)

      // Volume → local (what a sandbox does through its mount).
      await volumeWrite(vfs, '/src/main.py', 'print(3)\n')
      await volumeWrite(vfs, '/from-sandbox/out.txt', 'made inside')
      await volumeWrite(vfs, '/new.txt', 'changed inside')
      await vfs.unlink((await resolve(vfs, splitPath('/empty'))).ino, Buffer.from('x')).catch(() => undefined)
      expect(
        await until(
          () => localTree(dir, ['.s0sync', 'build', 'debug.log', 'secret.txt', '.git', 'src/cache']),
          (t) =>
            t['from-sandbox/out.txt'] === 'file:made inside' &&
            t['new.txt'] === 'file:changed inside' &&
            t['src/main.py']?.startsWith('file:print(3)') === true,
        ),
      ).toMatchObject({ 'from-sandbox/out.txt': 'file:made inside', 'new.txt': 'file:changed inside' })
      // A remote rename arrives as a rename (same local inode).
      const localIno = (await stat(path.join(dir, 'new.txt'))).ino
      await move(vfs, '/new.txt', '/renamed.txt')
      await until(
        () => readFile(path.join(dir, 'renamed.txt'), 'utf8').catch(() => ''),
        (v) => v === 'changed inside',
      )
      expect((await stat(path.join(dir, 'renamed.txt'))).ino).toBe(localIno)
      // Both sides end equal.
      const skip = ['.s0sync', 'build', 'debug.log', 'secret.txt', '.git']
      const local = await localTree(dir, skip)
      delete local['src/cache']
      expect(await volumeTree(vfs)).toEqual(local)
    } finally {
      s.stop()
      await running
    }
  })

  it('a conflict keeps both versions on both sides and is listed', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    await writeFile(path.join(dir, 'doc.txt'), 'base')
    const s = fx.session(dir, id)
    await s.open()
    await s.fullPass()
    await writeFile(path.join(dir, 'doc.txt'), 'local edit')
    await volumeWrite(vfs, '/doc.txt', 'remote edit!')
    const r = await s.fullPass()
    expect(r.conflicts).toBe(1)
    const conflicts = JSON.parse(await readFile(path.join(dir, '.s0sync', 'conflicts.json'), 'utf8')) as {
      path: string
      copy: string
    }[]
    expect(conflicts).toMatchObject([{ path: 'doc.txt' }])
    const copy = conflicts[0]?.copy as string
    expect(copy).toMatch(/^doc\.txt\.conflict-remote-\d{8}T\d{6}Z$/)
    await s.fullPass() // the copy is an ordinary new local file: it goes to the volume too
    const want = { 'doc.txt': 'file:local edit', [copy]: 'file:remote edit!' }
    expect(await localTree(dir)).toEqual(want)
    expect(await volumeTree(vfs)).toEqual(want)
    await s.close()
  })

  it('pauses a pass that would delete most of the tree until it is confirmed', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    for (let i = 0; i < 30; i++) await writeFile(path.join(dir, `f${i}`), `${i}`)
    const s = fx.session(dir, id)
    await s.open()
    await s.fullPass()
    for (let i = 0; i < 30; i++) await unlink(path.join(dir, `f${i}`))
    await s.fullPass()
    expect(Object.keys(await volumeTree(vfs))).toHaveLength(30)
    await writeFile(path.join(dir, '.s0sync', 'confirm-deletes'), 'yes')
    await s.fullPass()
    expect(await volumeTree(vfs)).toEqual({})
    await s.close()
  })

  it('a file being written while it is read is not sent half-written', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    const big = path.join(dir, 'growing.bin')
    await writeFile(big, Buffer.alloc(4 << 20, 1))
    const s = fx.session(dir, id)
    await s.open()
    // Keep appending while the pass reads it: the pass either sends a whole version or none.
    let writing = true
    const writer = (async () => {
      for (let i = 0; writing && i < 2000; i++) await appendFile(big, Buffer.alloc(64 << 10, 2))
    })()
    await s.fullPass()
    writing = false
    await writer
    const a = await resolve(vfs, splitPath('/growing.bin')).catch(() => null)
    if (a) {
      const data = await vfs.read(a.ino, 0, a.size)
      expect((data.length - (4 << 20)) % (64 << 10)).toBe(0) // whole appends only
    }
    await s.fullPass()
    const size = (await stat(big)).size
    expect((await resolve(vfs, splitPath('/growing.bin'))).size).toBe(size)
    await s.close()
  })

  it('bad input: another team, an unknown volume, a root escaping the volume, a read-only volume', async () => {
    const dir = await fx.tempDir()
    await writeFile(path.join(dir, 'a'), 'a')
    const call = async (
      route: string,
      init: RequestInit = {},
    ): Promise<{ status: number; code?: string }> => {
      const res = await fetch(`${fx.server.url}/api/v1/sandboxvolumes/${route}`, {
        ...init,
        headers: { authorization: `Bearer ${fx.server.token}`, 'content-type': 'application/json' },
      })
      const j = (await res.json()) as { error?: { code: string } }
      return { status: res.status, ...(j.error ? { code: j.error.code } : {}) }
    }
    expect(await call('vol-nope/sync/tree')).toMatchObject({ status: 404 })
    const other = await fx.server.engine.create('team-other' as never)
    expect(await call(`${other.id}/sync/tree`)).toMatchObject({ status: 404 })
    const { id, vfs } = await fx.newVolume()
    expect(await call(`${id}/sync/tree?root=/../etc`)).toMatchObject({ status: 400, code: 'invalid_path' })
    expect(await call(`${id}/sync/changes?cursor=nonsense`)).toMatchObject({
      status: 400,
      code: 'sync_cursor_invalid',
    })
    const commit = (ops: unknown[]): Promise<{ status: number; code?: string }> =>
      call(`${id}/sync/commit`, {
        method: 'POST',
        body: JSON.stringify({ idempotency_key: 'k-12345678', ops }),
      })
    expect(await commit([{ op: 'mkdir', path: '../x', base: null, mode: 493, mtime_ns: '0' }])).toMatchObject(
      { status: 400, code: 'invalid_path' },
    )
    expect(
      await commit([{ op: 'symlink', path: 'l', base: null, target: '../../etc/passwd', mtime_ns: '0' }]),
    ).toMatchObject({ status: 400, code: 'invalid_path' })
    expect(
      await commit([{ op: 'symlink', path: 'l', base: null, target: '/etc/passwd', mtime_ns: '0' }]),
    ).toMatchObject({ status: 400, code: 'invalid_path' })
    const badChunk = await fetch(
      `${fx.server.url}/api/v1/sandboxvolumes/${id}/sync/chunks/${'0'.repeat(64)}`,
      {
        method: 'PUT',
        headers: { authorization: `Bearer ${fx.server.token}`, 'content-type': 'application/octet-stream' },
        body: 'not that',
      },
    )
    expect(badChunk.status).toBe(400)
    expect(await volumeTree(vfs)).toEqual({})
    const ro = await fx.newVolume({ accessMode: 'ROX' })
    const s = fx.session(dir, ro.id)
    await s.open()
    await expect(s.fullPass()).rejects.toMatchObject({ code: 'read_only' })
    expect(await volumeTree(ro.vfs)).toEqual({})
    await s.close()
  })

  it('a cursor from another epoch gets a rescan, never a partial answer', async () => {
    const { id } = await fx.newVolume()
    const res = await fetch(
      `${fx.server.url}/api/v1/sandboxvolumes/${id}/sync/changes?cursor=000000000000.5`,
      {
        headers: { authorization: `Bearer ${fx.server.token}` },
      },
    )
    expect(((await res.json()) as { data: unknown }).data).toMatchObject({ rescan: true, changes: [] })
  })

  it("the feed names an upload's target, never its temporary file", async () => {
    const { id, vfs } = await fx.newVolume()
    const remote = new SyncRemote(
      new ApiClient({ baseUrl: fx.server.url, token: fx.server.token }),
      id,
      '/',
      5_000,
    )
    let cursor = (await remote.tree()).cursor
    await volumeWrite(vfs, '/up/loaded.txt', 'whole')
    const seen: string[] = []
    // Bounded: the write's events arrive in a few answers at most.
    for (let i = 0; i < 20 && !seen.includes('up/loaded.txt'); i++) {
      const ans = await remote.changes(cursor, 500)
      cursor = ans.cursor
      seen.push(...ans.changes.map((c) => c.path))
    }
    expect(seen).toContain('up/loaded.txt')
    expect(seen.filter((p) => p.includes('.s0-upload-'))).toEqual([])
  })
})

function sorted(t: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(t).sort(([x], [y]) => (x < y ? -1 : 1)))
}

describe('s0 sync resumes from its cursor', () => {
  it('a second start with the feed still alive reads only what changed, and misses nothing', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    for (let i = 0; i < 5; i++) await writeFile(path.join(dir, `f${i}`), `${i}`)
    const s = fx.session(dir, id)
    await s.open()
    await s.fullPass()
    await s.close()
    const kept = await SyncState.open(dir)
    expect(kept.meta?.cursor).toMatch(/^[0-9a-f]{12}\.\d+$/)
    await kept.close()
    // Changes while no session runs, on both sides.
    await volumeWrite(vfs, '/f1', 'changed remotely')
    await volumeWrite(vfs, '/new-remote', 'new')
    await writeFile(path.join(dir, 'f2'), 'changed locally')
    // The second session counts its listings: resuming needs none.
    let listed = 0
    class Counting extends SyncRemote {
      override tree(): ReturnType<SyncRemote['tree']> {
        listed++
        return super.tree()
      }
    }
    const s2 = new SyncSession({
      localRoot: dir,
      remote: new Counting(
        new ApiClient({ baseUrl: fx.server.url, token: fx.server.token }),
        id,
        '/',
        20_000,
      ),
      mode: { mode: 'two-way-safe' },
    })
    await s2.open()
    const r = await s2.fullPass()
    expect(listed).toBe(0)
    expect(r).toMatchObject({ pushedFiles: 1, pulledFiles: 2, conflicts: 0 })
    expect(await readFile(path.join(dir, 'f1'), 'utf8')).toBe('changed remotely')
    expect(await readFile(path.join(dir, 'new-remote'), 'utf8')).toBe('new')
    expect((await volumeTree(vfs))['f2']).toBe('file:changed locally')
    await s2.close()
    // A cursor the server no longer knows (a restart: another epoch) means a listing, not a loss.
    const st = await SyncState.open(dir)
    expect(st.meta?.cursor).toMatch(/^[0-9a-f]{12}\.\d+$/)
    const m = st.meta as NonNullable<typeof st.meta>
    st.setMeta({ ...m, cursor: `000000000000.${(m.cursor as string).split('.')[1]}` })
    await st.close()
    await volumeWrite(vfs, '/after', 'x')
    const s3 = new SyncSession({
      localRoot: dir,
      remote: new Counting(
        new ApiClient({ baseUrl: fx.server.url, token: fx.server.token }),
        id,
        '/',
        20_000,
      ),
      mode: { mode: 'two-way-safe' },
    })
    await s3.open()
    await s3.fullPass()
    expect(listed).toBe(1)
    expect(await readFile(path.join(dir, 'after'), 'utf8')).toBe('x')
    await s3.close()
  })

  it('records the version it fetched: a file changed during its pull and then renamed arrives as a rename', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    await volumeWrite(vfs, '/a.txt', 'first')
    // A sandbox writes the file again between the listing and the fetch, once.
    let raced = false
    class Racing extends SyncRemote {
      override async file(p: string): ReturnType<SyncRemote['file']> {
        if (!raced && p.endsWith('a.txt')) {
          raced = true
          await volumeWrite(vfs, '/a.txt', 'second, and longer')
        }
        return super.file(p)
      }
    }
    const s = new SyncSession({
      localRoot: dir,
      remote: new Racing(new ApiClient({ baseUrl: fx.server.url, token: fx.server.token }), id, '/', 20_000),
      mode: { mode: 'two-way-safe' },
    })
    await s.open()
    await s.fullPass()
    expect(raced).toBe(true)
    expect(await readFile(path.join(dir, 'a.txt'), 'utf8')).toBe('second, and longer')
    const ino = (await stat(path.join(dir, 'a.txt'))).ino
    // Its rename on the volume is a rename here (same inode), not a delete and a new download.
    await move(vfs, '/a.txt', '/b.txt')
    const r = await s.fullPass()
    expect(r).toMatchObject({ pulledFiles: 0 })
    expect((await stat(path.join(dir, 'b.txt'))).ino).toBe(ino)
    expect(await readFile(path.join(dir, 'b.txt'), 'utf8')).toBe('second, and longer')
    await s.close()
  })

  it('one directory renamed on both sides at once, live: both names end up on both sides', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    // The local rename lands between the pass's plan and its apply: the plan's trace line is the
    // hook (synchronous, so nothing of the session runs in between).
    const trace = process.env['S0_SYNC_TRACE']
    process.env['S0_SYNC_TRACE'] = '1'
    let round = 0
    let raced = false
    const s = new SyncSession({
      localRoot: dir,
      remote: new SyncRemote(
        new ApiClient({ baseUrl: fx.server.url, token: fx.server.token }),
        id,
        '/',
        20_000,
      ),
      mode: { mode: 'two-way-safe' },
      log: (line) => {
        if (!raced && line === `plan: pull-rename d${round} -> R${round}`) {
          raced = true
          renameSync(path.join(dir, `d${round}`), path.join(dir, `L${round}`))
        }
      },
    })
    await s.open()
    let live = false
    const running = s.live(() => (live = true))
    try {
      await until(
        async () => live,
        (v) => v,
      )
      const want: Record<string, string> = {}
      // The plan has the rename only when the feed brings both of its names in one answer: a few
      // rounds make that sure (each round converges in any case).
      for (; round < 5 && !raced; round++) {
        await volumeWrite(vfs, `/d${round}/x.txt`, `in d${round}`)
        await until(
          () => localTree(dir),
          (t) => t[`d${round}/x.txt`] === `file:in d${round}`,
        )
        await move(vfs, `/d${round}`, `/R${round}`)
        Object.assign(want, { [`R${round}`]: 'dir', [`R${round}/x.txt`]: `file:in d${round}` })
        const moved = await until(
          () => localTree(dir),
          (t) => t[`R${round}/x.txt`] !== undefined || t[`L${round}/x.txt`] !== undefined,
        )
        if (moved[`L${round}/x.txt`])
          Object.assign(want, { [`L${round}`]: 'dir', [`L${round}/x.txt`]: `file:in d${round}` })
        const sorted = Object.fromEntries(Object.entries(want).sort(([x], [y]) => (x < y ? -1 : 1)))
        const [l, v] = await until(
          async () => [await localTree(dir), await volumeTree(vfs)] as const,
          ([x, y]) =>
            JSON.stringify(x) === JSON.stringify(sorted) && JSON.stringify(y) === JSON.stringify(sorted),
        )
        expect(l).toEqual(sorted)
        expect(v).toEqual(sorted)
      }
      expect(raced).toBe(true)
    } finally {
      if (trace === undefined) delete process.env['S0_SYNC_TRACE']
      else process.env['S0_SYNC_TRACE'] = trace
      s.stop()
      await running
      await s.close()
    }
  })
})
