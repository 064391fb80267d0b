// The volume engine's VFS operations against real Postgres and a real chunk store.
import type { Ino } from '../../src/core/ids.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collectGarbage } from '../../src/blockstore/gc.js'
import { fsck } from '../../src/blockstore/fsck.js'
import { isS0Error, type ErrorCode } from '../../src/core/errors.js'
import { silentLogger } from '../../src/core/log.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { ROOT_INO, RENAME_EXCHANGE, RENAME_NOREPLACE, S_IFIFO, isDir } from '../../src/snapshots/types.js'
import type { Vfs } from '../../src/snapshots/vfs.js'
import { openMemoryTestStore, prng, TEAM_A, TEAM_B, type MemoryTestStore } from '../support/store.js'

const n = (s: string): Buffer => Buffer.from(s)
const owner = { uid: 1000, gid: 1000 }
let t: MemoryTestStore
let engine: VolumeEngine

beforeAll(async () => {
  t = await openMemoryTestStore()
  engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
})
afterAll(async () => {
  await engine.close()
  await t.close()
})

async function code(p: Promise<unknown>): Promise<ErrorCode | 'ok'> {
  try {
    await p
    return 'ok'
  } catch (err) {
    if (isS0Error(err)) return err.code
    throw err
  }
}

async function newVfs(team = TEAM_A): Promise<Vfs> {
  const v = await engine.create(team)
  return engine.vfs(team, v.id)
}

async function writeFile(vfs: Vfs, parent: Ino, name: string, data: Buffer): Promise<Ino> {
  const a = await vfs.create(parent, n(name), 0o644, owner)
  vfs.open(a.ino)
  await vfs.write(a.ino, 0, data)
  await vfs.release(a.ino)
  return a.ino
}

async function readPath(vfs: Vfs, ...names: string[]): Promise<Buffer> {
  let ino = ROOT_INO
  for (const name of names) ino = (await vfs.lookup(ino, n(name))).ino
  const a = await vfs.getattr(ino)
  return vfs.read(ino, 0, a.size)
}

describe('vfs', () => {
  it('creates, writes, reads, and reports POSIX errors', async () => {
    const vfs = await newVfs()
    const data = prng(3 * 1024 * 1024 + 5, 1)
    const ino = await writeFile(vfs, ROOT_INO, 'a.bin', data)
    expect((await readPath(vfs, 'a.bin')).equals(data)).toBe(true)
    expect((await vfs.getattr(ino)).size).toBe(data.length)
    expect(await code(vfs.create(ROOT_INO, n('a.bin'), 0o644, owner))).toBe('path_exists')
    expect((await vfs.create(ROOT_INO, n('a.bin'), 0o644, owner, false)).ino).toBe(ino)
    expect(await code(vfs.lookup(ROOT_INO, n('nope')))).toBe('file_not_found')
    expect(await code(vfs.lookup(ino, n('x')))).toBe('path_not_directory')
    expect(await code(vfs.create(ROOT_INO, n('x'.repeat(256)), 0o644, owner))).toBe('name_too_long')
    expect(await code(vfs.create(ROOT_INO, n('a/b'), 0o644, owner))).toBe('invalid_path')
    expect(await code(vfs.create(ROOT_INO, n('..'), 0o644, owner))).toBe('invalid_path')
    expect(await code(vfs.unlink(ROOT_INO, n('nope')))).toBe('file_not_found')
  })

  it('writes at offsets, overwrites in the middle, extends sparsely and truncates', async () => {
    const vfs = await newVfs()
    const base = prng(2_000_000, 2)
    const ino = await writeFile(vfs, ROOT_INO, 'f', base)
    const model = Buffer.from(base)
    vfs.open(ino)
    const patch = prng(10_000, 3)
    await vfs.write(ino, 123_456, patch)
    patch.copy(model, 123_456)
    // Visible before flush, to any reader.
    expect((await vfs.read(ino, 123_000, 11_000)).equals(model.subarray(123_000, 134_000))).toBe(true)
    await vfs.fsync(ino)
    expect((await vfs.read(ino, 0, model.length)).equals(model)).toBe(true)
    await vfs.write(ino, 3_000_000, n('tail'))
    await vfs.release(ino)
    const grown = Buffer.concat([model, Buffer.alloc(3_000_000 - model.length), n('tail')])
    expect((await readPath(vfs, 'f')).equals(grown)).toBe(true)
    await vfs.setattr(ino, { size: 100 })
    expect((await readPath(vfs, 'f')).equals(model.subarray(0, 100))).toBe(true)
    await vfs.setattr(ino, { size: 200 })
    expect(
      (await readPath(vfs, 'f')).equals(Buffer.concat([model.subarray(0, 100), Buffer.alloc(100)])),
    ).toBe(true)
  })

  it('directories: mkdir, readdir in name order with a cursor, rmdir only when empty, nlink', async () => {
    const vfs = await newVfs()
    const d = await vfs.mkdir(ROOT_INO, n('d'), 0o755, owner)
    expect(isDir(d.mode)).toBe(true)
    expect((await vfs.getattr(ROOT_INO)).nlink).toBe(3)
    for (const name of ['c', 'a', 'b']) await writeFile(vfs, d.ino, name, n(name))
    await vfs.mkdir(d.ino, n('sub'), 0o700, owner)
    expect((await vfs.readdir(d.ino)).map((e) => e.name.toString())).toEqual(['a', 'b', 'c', 'sub'])
    expect((await vfs.readdir(d.ino, n('b'), 10)).map((e) => e.name.toString())).toEqual(['c', 'sub'])
    expect(await code(vfs.rmdir(ROOT_INO, n('d')))).toBe('directory_not_empty')
    expect(await code(vfs.unlink(ROOT_INO, n('d')))).toBe('path_not_file')
    expect(await code(vfs.rmdir(d.ino, n('a')))).toBe('path_not_directory')
    for (const name of ['a', 'b', 'c']) await vfs.unlink(d.ino, n(name))
    await vfs.rmdir(d.ino, n('sub'))
    await vfs.rmdir(ROOT_INO, n('d'))
    expect((await vfs.readdir(ROOT_INO)).length).toBe(0)
    expect((await vfs.getattr(ROOT_INO)).nlink).toBe(2)
  })

  it('rename: replace, NOREPLACE, EXCHANGE, into itself, across directories', async () => {
    const vfs = await newVfs()
    await writeFile(vfs, ROOT_INO, 'x', n('X'))
    await writeFile(vfs, ROOT_INO, 'y', n('Y'))
    expect(await code(vfs.rename(ROOT_INO, n('x'), ROOT_INO, n('y'), RENAME_NOREPLACE))).toBe('path_exists')
    await vfs.rename(ROOT_INO, n('x'), ROOT_INO, n('y'), RENAME_EXCHANGE)
    expect((await readPath(vfs, 'x')).toString()).toBe('Y')
    expect((await readPath(vfs, 'y')).toString()).toBe('X')
    await vfs.rename(ROOT_INO, n('x'), ROOT_INO, n('y'))
    expect((await readPath(vfs, 'y')).toString()).toBe('Y')
    expect(await code(vfs.lookup(ROOT_INO, n('x')))).toBe('file_not_found')
    const a = await vfs.mkdir(ROOT_INO, n('a'), 0o755, owner)
    const b = await vfs.mkdir(a.ino, n('b'), 0o755, owner)
    expect(await code(vfs.rename(ROOT_INO, n('a'), b.ino, n('a2')))).toBe('bad_request')
    await vfs.rename(a.ino, n('b'), ROOT_INO, n('b'))
    expect((await vfs.getattr(a.ino)).nlink).toBe(2)
    expect((await vfs.getattr(ROOT_INO)).nlink).toBe(4)
    expect(await code(vfs.rename(ROOT_INO, n('y'), ROOT_INO, n('a')))).toBe('path_not_file')
    expect(await code(vfs.rename(ROOT_INO, n('a'), ROOT_INO, n('y')))).toBe('path_not_directory')
  })

  it('hard links, symlinks, fifos, xattrs, unlink while open', async () => {
    const vfs = await newVfs()
    const ino = await writeFile(vfs, ROOT_INO, 'f', n('data'))
    await vfs.hardlink(ino, ROOT_INO, n('g'))
    expect((await vfs.getattr(ino)).nlink).toBe(2)
    await vfs.unlink(ROOT_INO, n('f'))
    expect((await readPath(vfs, 'g')).toString()).toBe('data')
    const l = await vfs.symlink(ROOT_INO, n('l'), n('../target'), owner)
    expect((await vfs.readlink(l.ino)).toString()).toBe('../target')
    const fifo = await vfs.mknod(ROOT_INO, n('p'), S_IFIFO | 0o600, owner)
    expect(fifo.mode & 0o170000).toBe(S_IFIFO)
    const dev = await vfs.mknod(ROOT_INO, n('dev'), 0o020000 | 0o600, owner, { rdev: (1 << 8) | 3 })
    expect({ type: dev.mode & 0o170000, rdev: dev.rdev }).toEqual({ type: 0o020000, rdev: 259 })
    const sock = await vfs.mknod(ROOT_INO, n('sock'), 0o140000 | 0o755, owner)
    expect(sock.mode).toBe(0o140755)
    expect(await code(vfs.mknod(ROOT_INO, n('bad'), 0o170000 | 0o600, owner))).toBe('bad_request')
    // A setgid directory passes its group on, and its setgid bit to subdirectories.
    const sg = await vfs.mkdir(ROOT_INO, n('sg'), 0o2775, { uid: 1, gid: 50 })
    const inFile = await vfs.create(sg.ino, n('f'), 0o644, { uid: 2, gid: 60 })
    const inDir = await vfs.mkdir(sg.ino, n('d'), 0o755, { uid: 2, gid: 60 })
    expect([inFile.gid, inFile.mode & 0o7777, inDir.gid, inDir.mode & 0o7777]).toEqual([
      50, 0o644, 50, 0o2755,
    ])
    await vfs.setxattr(ino, 'user.k', n('v'))
    expect((await vfs.getxattr(ino, 'user.k')).toString()).toBe('v')
    expect(await vfs.listxattr(ino)).toEqual(['user.k'])
    expect(await code(vfs.setxattr(ino, 'user.k', n('w'), 'create'))).toBe('path_exists')
    await vfs.removexattr(ino, 'user.k')
    expect(await code(vfs.getxattr(ino, 'user.k'))).toBe('xattr_not_found')
    vfs.open(ino)
    await vfs.unlink(ROOT_INO, n('g'))
    expect((await vfs.read(ino, 0, 10)).toString()).toBe('data')
    const inodes = vfs.usage.inodes
    await vfs.release(ino)
    expect(vfs.usage.inodes).toBe(inodes - 1)
    expect(await code(vfs.getattr(ino))).toBe('file_not_found')
  })

  it('setattr: mode, owner, nanosecond times', async () => {
    const vfs = await newVfs()
    const ino = await writeFile(vfs, ROOT_INO, 'f', n('x'))
    const a = await vfs.setattr(ino, {
      mode: 0o4711,
      uid: 5,
      gid: 6,
      atimeNs: 1_234_567_890_123_456_789n,
      mtimeNs: 42n,
    })
    expect(a.mode & 0o7777).toBe(0o4711)
    expect([a.uid, a.gid, a.atimeNs, a.mtimeNs]).toEqual([5, 6, 1_234_567_890_123_456_789n, 42n])
  })

  it('quotas: bytes give no_space, inodes quota_exceeded; statfs reports them', async () => {
    const v = await engine.create(TEAM_A, { quotaBytes: 10_000, quotaInodes: 3 })
    const vfs = await engine.vfs(TEAM_A, v.id)
    const ino = (await vfs.create(ROOT_INO, n('f'), 0o644, owner)).ino
    expect(await code(vfs.write(ino, 0, Buffer.alloc(20_000)))).toBe('no_space')
    await vfs.write(ino, 0, Buffer.alloc(5_000, 1))
    await vfs.flush(ino)
    await vfs.create(ROOT_INO, n('g'), 0o644, owner)
    expect(await code(vfs.create(ROOT_INO, n('h'), 0o644, owner))).toBe('quota_exceeded')
    const s = await vfs.statfs()
    expect(s.files).toBe(3)
    expect(s.filesFree).toBe(0)
    expect(s.blocksFree * s.blockSize).toBeLessThanOrEqual(5_000)
  })

  it('snapshot, restore and fork are copy-on-write and independent', async () => {
    const v = await engine.create(TEAM_A)
    const vfs = await engine.vfs(TEAM_A, v.id)
    await writeFile(vfs, ROOT_INO, 'f', n('one'))
    const snap = await engine.snapshot(TEAM_A, v.id, { name: 's1' })
    await writeFile(vfs, ROOT_INO, 'g', n('two'))
    const fi = (await vfs.lookup(ROOT_INO, n('f'))).ino
    vfs.open(fi)
    await vfs.write(fi, 0, n('ONE!'))
    await vfs.release(fi)

    const fork = await engine.fork(TEAM_A, v.id)
    const fvfs = await engine.vfs(TEAM_A, fork.id)
    expect((await readPath(fvfs, 'f')).toString()).toBe('ONE!')
    await writeFile(fvfs, ROOT_INO, 'only-in-fork', n('3'))
    await fvfs.unlink(ROOT_INO, n('g'))
    expect(await code(vfs.lookup(ROOT_INO, n('only-in-fork')))).toBe('file_not_found')
    expect((await readPath(vfs, 'g')).toString()).toBe('two')

    await engine.restore(TEAM_A, v.id, snap.id)
    expect((await readPath(vfs, 'f')).toString()).toBe('one')
    expect(await code(vfs.lookup(ROOT_INO, n('g')))).toBe('file_not_found')
    // The fork still sees what it had.
    expect((await readPath(fvfs, 'f')).toString()).toBe('ONE!')
    expect((await readPath(fvfs, 'only-in-fork')).toString()).toBe('3')

    // Deleting the source volume (and its snapshot) leaves the fork intact, after GC too.
    await engine.delete(TEAM_A, v.id)
    await collectGarbage(t.store, { gracePeriodMs: 0, roots: [engine.gcRoots] })
    t.store.dropMemoryCache()
    expect((await readPath(fvfs, 'f')).toString()).toBe('ONE!')
    expect((await fsck(t.store)).problems).toEqual([])
  })

  it('volumes are team-scoped', async () => {
    const v = await engine.create(TEAM_A)
    expect(await code(engine.vfs(TEAM_B, v.id))).toBe('not_found')
    expect(await code(engine.catalog.get(TEAM_B, v.id))).toBe('not_found')
    expect(await code(engine.catalog.get(TEAM_A, 'not-a-uuid'))).toBe('not_found')
  })

  it('a second engine instance cannot write a volume whose lease is held', async () => {
    const v = await engine.create(TEAM_A)
    await engine.vfs(TEAM_A, v.id)
    const other = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
    try {
      expect(await code(other.vfs(TEAM_A, v.id))).toBe('volume_busy')
    } finally {
      await other.close()
    }
  })

  it('flattens deep chains in the background; every snapshot still reads as it was', async () => {
    const v = await engine.create(TEAM_A)
    const vfs = await engine.vfs(TEAM_A, v.id)
    const snaps: Array<{ id: string; i: number }> = []
    for (let i = 0; i < 40; i++) {
      const a = await vfs.create(ROOT_INO, n(`f${i % 7}`), 0o644, owner, false)
      await vfs.setattr(a.ino, { size: 0 })
      vfs.open(a.ino)
      await vfs.write(a.ino, 0, n(`gen ${i}`))
      await vfs.release(a.ino)
      if (i % 5 === 4) await vfs.unlink(ROOT_INO, n(`f${(i + 3) % 7}`)).catch(() => undefined)
      const s = await engine.snapshot(TEAM_A, v.id, { name: `s${i}` })
      snaps.push({ id: s.id, i })
    }
    // Let the background flatten jobs finish.
    for (let k = 0; k < 50 && vfs.layerChain.length > 33; k++) await new Promise((r) => setTimeout(r, 20))
    expect(vfs.layerChain.length).toBeLessThanOrEqual(33)
    // The head and a few snapshots read as a replay of the same writes says.
    const expectAt = (upto: number): Map<string, string> => {
      const m = new Map<string, string>()
      for (let i = 0; i <= upto; i++) {
        m.set(`f${i % 7}`, `gen ${i}`)
        if (i % 5 === 4) m.delete(`f${(i + 3) % 7}`)
      }
      return m
    }
    const readAllFiles = async (x: Vfs): Promise<Map<string, string>> => {
      const m = new Map<string, string>()
      for (const e of await x.readdir(ROOT_INO))
        m.set(e.name.toString(), (await x.read(e.ino, 0, 100)).toString())
      return m
    }
    expect(await readAllFiles(vfs)).toEqual(expectAt(39))
    for (const s of [snaps[0], snaps[10], snaps[25], snaps[39]]) {
      const probe = await engine.create(TEAM_A, { snapshotId: s!.id })
      expect(await readAllFiles(await engine.vfs(TEAM_A, probe.id))).toEqual(expectAt(s!.i))
    }
  })

  it('diff between two snapshots lists only what changed between them', async () => {
    const v = await engine.create(TEAM_A)
    const vfs = await engine.vfs(TEAM_A, v.id)
    for (let i = 0; i < 50; i++) await writeFile(vfs, ROOT_INO, `f${i}`, n(`${i}`))
    const a = await engine.snapshot(TEAM_A, v.id, { name: 'a' })
    const f3 = (await vfs.lookup(ROOT_INO, n('f3'))).ino
    vfs.open(f3)
    await vfs.write(f3, 0, n('changed'))
    await vfs.release(f3)
    await vfs.unlink(ROOT_INO, n('f7'))
    await writeFile(vfs, ROOT_INO, 'new', n('x'))
    const b = await engine.snapshot(TEAM_A, v.id, { name: 'b' })
    const d = await engine.catalog.diff(a.layerId, b.layerId)
    expect(d.entries.map((e) => e.name.toString()).sort()).toEqual(['f7', 'new'])
    // f3's content, f7 freed, the new file, and the root directory (mtime, size of entries).
    expect(d.inodes).toContain(f3)
    expect(d.inodes).toContain(ROOT_INO)
    expect(d.inodes.length).toBeLessThanOrEqual(4)
    expect(await engine.catalog.diff(b.layerId, b.layerId)).toEqual({ inodes: [], entries: [] })
  })

  it('reads a large file sequentially with one GET per ~16 MiB, and at random offsets', async () => {
    const MiB = 1024 * 1024
    const data = prng(40 * MiB, 99)
    const vfs = await newVfs()
    const ino = (await vfs.create(ROOT_INO, n('big'), 0o644, owner)).ino
    vfs.open(ino)
    for (let pos = 0; pos < data.length; pos += 1_000_000)
      await vfs.write(ino, pos, data.subarray(pos, pos + 1_000_000))
    await vfs.release(ino)
    t.store.dropMemoryCache()
    const gets0 = t.objects.stats.gets
    const parts: Buffer[] = []
    for (let pos = 0; pos < data.length; pos += 128 * 1024) parts.push(await vfs.read(ino, pos, 128 * 1024))
    expect(Buffer.concat(parts).equals(data)).toBe(true)
    // 40 MiB in packs of ~16 MiB: a handful of ranged GETs, not one per chunk (~40).
    expect(t.objects.stats.gets - gets0).toBeLessThanOrEqual(8)
    for (const [off, len] of [
      [5, 10],
      [MiB * 13 + 7, 3 * MiB],
      [data.length - 100, 500],
    ] as const) {
      expect(
        (await vfs.read(ino, off, len)).equals(data.subarray(off, Math.min(data.length, off + len))),
      ).toBe(true)
    }
  })
})

describe('change events name a moved file by its new directory', () => {
  it('a write to a file moved to another directory is reported at its new path', async () => {
    const vfs = await newVfs()
    const a = await vfs.mkdir(ROOT_INO, n('a'), 0o755, owner)
    const b = await vfs.mkdir(ROOT_INO, n('b'), 0o755, owner)
    const f = await vfs.create(a.ino, n('f'), 0o644, owner)
    await vfs.rename(a.ino, n('f'), b.ino, n('g'))
    expect(await vfs.pathOf(f.ino)).toBe('/b/g')
    const paths: string[] = []
    const stop = vfs.watch((e) => {
      if (e.event === 'write') paths.push(`${e.parentIno}`)
    })
    vfs.open(f.ino)
    await vfs.write(f.ino, 0, n('data'))
    await vfs.release(f.ino, { flush: 'now' })
    stop()
    expect(paths).toEqual([`${b.ino}`])
  })
})
