// Kernel cache coherence of the lowlevel transport: names, attributes, misses and pages are
// cached (TTLs > 0, pages kept across opens), so every change that does not come through the
// mount must be invalidated at once. Each case first makes the kernel cache what it is about to
// change, then changes it through the engine (the files API's path), another mount of the volume,
// or a restore, and looks again at once. (fuse-native cannot invalidate; it caches no
// attributes instead: see docs/ARCHITECTURE.md, "FUSE transports".)
import * as fs from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/core/log.js'
import { FuseMount } from '../../src/fuse/mount.js'
import { ROOT_INO } from '../../src/snapshots/types.js'
import type { Vfs } from '../../src/snapshots/vfs.js'
import { TEAM_A } from '../support/store.js'
import { mountTestVolume, type MountedVolume } from './support.js'

let m: MountedVolume
let vfs: Vfs
const n = (s: string): Buffer => Buffer.from(s)
// Long enough that nothing here passes by expiry: only an invalidation can make a test pass.
const LONG = 3600

beforeAll(async () => {
  m = await mountTestVolume({
    transport: 'lowlevel',
    attrTimeoutS: LONG,
    entryTimeoutS: LONG,
    negativeTimeoutS: LONG,
  })
  vfs = m.mount.vfs
})
afterAll(async () => {
  await m?.close()
})

async function apiWrite(name: string, data: string, parent = ROOT_INO): Promise<void> {
  const a = await vfs.create(parent, n(name), 0o644, { uid: 0, gid: 0 }, false)
  vfs.open(a.ino)
  await vfs.setattr(a.ino, { size: 0 })
  await vfs.write(a.ino, 0, n(data))
  await vfs.release(a.ino)
}

describe('kernel cache coherence (lowlevel)', () => {
  it('shows a write made through the engine at once, pages and size', async () => {
    const p = join(m.dir, 'w.txt')
    await fs.writeFile(p, 'first version')
    expect(await fs.readFile(p, 'utf8')).toBe('first version') // cached pages and attributes
    expect((await fs.stat(p)).size).toBe(13)
    // Same length: only the kept pages could show the old bytes.
    await apiWrite('w.txt', 'FIRST VERSION')
    expect(await fs.readFile(p, 'utf8')).toBe('FIRST VERSION')
    await apiWrite('w.txt', 'second, longer version')
    expect((await fs.stat(p)).size).toBe('second, longer version'.length)
    expect(await fs.readFile(p, 'utf8')).toBe('second, longer version')
  })

  it('shows a rename, an unlink and a create made through the engine at once', async () => {
    await fs.writeFile(join(m.dir, 'old'), 'x')
    await fs.stat(join(m.dir, 'old'))
    await expect(fs.stat(join(m.dir, 'new'))).rejects.toMatchObject({ code: 'ENOENT' }) // a cached miss
    await vfs.rename(ROOT_INO, n('old'), ROOT_INO, n('new'))
    await expect(fs.stat(join(m.dir, 'old'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await fs.readFile(join(m.dir, 'new'), 'utf8')).toBe('x')
    await vfs.unlink(ROOT_INO, n('new'))
    await expect(fs.stat(join(m.dir, 'new'))).rejects.toMatchObject({ code: 'ENOENT' })
    await expect(fs.stat(join(m.dir, 'born'))).rejects.toMatchObject({ code: 'ENOENT' })
    await apiWrite('born', 'hello')
    expect(await fs.readFile(join(m.dir, 'born'), 'utf8')).toBe('hello')
    expect(await fs.readdir(m.dir)).toContain('born')
  })

  it('shows a chmod and a chown made through the engine at once', async () => {
    const p = join(m.dir, 'modes')
    await fs.writeFile(p, 'm')
    expect((await fs.stat(p)).mode & 0o777).toBe(0o644)
    const a = await vfs.lookup(ROOT_INO, n('modes'))
    await vfs.setattr(a.ino, { mode: 0o600, uid: 1234 })
    const st = await fs.stat(p)
    expect([st.mode & 0o777, st.uid]).toEqual([0o600, 1234])
  })

  it('gives both names of a hard link the same attributes', async () => {
    const a = join(m.dir, 'hl-a')
    const b = join(m.dir, 'hl-b')
    await fs.writeFile(a, 'one')
    await fs.link(a, b)
    expect((await fs.stat(b)).size).toBe(3)
    await fs.appendFile(a, ' two three')
    const [sa, sb] = [await fs.stat(a), await fs.stat(b)]
    expect([sb.size, sb.mtimeMs, sb.nlink, sb.ino]).toEqual([sa.size, sa.mtimeMs, 2, sa.ino])
    expect(await fs.readFile(b, 'utf8')).toBe('one two three')
  })

  it('keeps two mounts of one volume coherent with each other', async () => {
    const other = await FuseMount.mount(
      vfs,
      join(m.dir, '..', 'second'),
      { transport: 'lowlevel' },
      silentLogger,
    )
    try {
      await fs.writeFile(join(m.dir, 'shared'), 'from the first')
      expect(await fs.readFile(join(other.dir, 'shared'), 'utf8')).toBe('from the first')
      await fs.writeFile(join(other.dir, 'shared'), 'from the second mount')
      expect(await fs.readFile(join(m.dir, 'shared'), 'utf8')).toBe('from the second mount')
      await fs.rename(join(other.dir, 'shared'), join(other.dir, 'moved'))
      await expect(fs.stat(join(m.dir, 'shared'))).rejects.toMatchObject({ code: 'ENOENT' })
      expect(await fs.readFile(join(m.dir, 'moved'), 'utf8')).toBe('from the second mount')
    } finally {
      await other.unmount()
    }
  })

  it('shows a restore at once, on this mount and on a long-TTL read-only one', async () => {
    await fs.mkdir(join(m.dir, 'snapdir'))
    await fs.writeFile(join(m.dir, 'snapdir', 'kept'), 'as in the snapshot')
    const snap = await m.engine.snapshot(TEAM_A, m.volumeId, { name: 'before' })
    const ro = await FuseMount.mount(
      vfs,
      join(m.dir, '..', 'ro'),
      {
        transport: 'lowlevel',
        readOnly: true,
        attrTimeoutS: LONG,
        entryTimeoutS: LONG,
        negativeTimeoutS: LONG,
      },
      silentLogger,
    )
    try {
      await fs.writeFile(join(m.dir, 'snapdir', 'kept'), 'changed after the snapshot')
      await fs.writeFile(join(m.dir, 'snapdir', 'later'), 'made after the snapshot')
      await fs.rm(join(m.dir, 'born'))
      for (const dir of [m.dir, ro.dir]) {
        expect(await fs.readFile(join(dir, 'snapdir', 'kept'), 'utf8')).toBe('changed after the snapshot')
        expect(await fs.readdir(join(dir, 'snapdir'))).toEqual(['kept', 'later'])
        await expect(fs.stat(join(dir, 'born'))).rejects.toMatchObject({ code: 'ENOENT' })
      }
      await m.engine.restore(TEAM_A, m.volumeId, snap.id)
      for (const dir of [m.dir, ro.dir]) {
        expect(await fs.readFile(join(dir, 'snapdir', 'kept'), 'utf8')).toBe('as in the snapshot')
        await expect(fs.stat(join(dir, 'snapdir', 'later'))).rejects.toMatchObject({ code: 'ENOENT' })
        expect(await fs.readdir(join(dir, 'snapdir'))).toEqual(['kept'])
        expect(await fs.readFile(join(dir, 'born'), 'utf8')).toBe('hello')
      }
    } finally {
      await ro.unmount()
    }
  })
})
