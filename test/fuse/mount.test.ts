// The FUSE mount: POSIX behaviour seen through the kernel, read-only mounts, caching vs API
// changes, unmount.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import * as fs from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/core/log.js'
import { FuseMount } from '../../src/fuse/mount.js'
import { ROOT_INO } from '../../src/snapshots/types.js'
import { prng } from '../support/store.js'
import { mountTestVolume, type MountedVolume } from './support.js'

// The mount is served by this process: commands that touch it must not block the event loop.
const run = promisify(execFile)
let m: MountedVolume
beforeAll(async () => {
  m = await mountTestVolume()
})
afterAll(async () => {
  await m?.close()
})

async function errCode(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'ok'
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err)
  }
}

describe('fuse mount', () => {
  it('writes, reads, lists and stats files through the kernel', async () => {
    const data = prng(5 * 1024 * 1024 + 17, 1)
    const p = join(m.dir, 'a.bin')
    await fs.writeFile(p, data)
    expect((await fs.stat(p)).size).toBe(data.length)
    expect((await fs.readFile(p)).equals(data)).toBe(true)
    await fs.mkdir(join(m.dir, 'd/e'), { recursive: true })
    await fs.writeFile(join(m.dir, 'd/e/f.txt'), 'hello')
    expect((await fs.readdir(m.dir)).sort()).toEqual(['a.bin', 'd'])
    expect(await fs.readFile(join(m.dir, 'd/e/f.txt'), 'utf8')).toBe('hello')
    expect((await fs.stat(join(m.dir, 'd'))).isDirectory()).toBe(true)
  })

  it('returns POSIX errnos', async () => {
    expect(await errCode(fs.stat(join(m.dir, 'nope')))).toBe('ENOENT')
    await fs.mkdir(join(m.dir, 'full'))
    await fs.writeFile(join(m.dir, 'full/x'), 'x')
    expect(await errCode(fs.rmdir(join(m.dir, 'full')))).toBe('ENOTEMPTY')
    expect(await errCode(fs.mkdir(join(m.dir, 'full')))).toBe('EEXIST')
    expect(await errCode(fs.readFile(join(m.dir, 'full')))).toBe('EISDIR')
    expect(await errCode(fs.writeFile(join(m.dir, 'full/x/y'), 'y'))).toBe('ENOTDIR')
    expect(await errCode(fs.writeFile(join(m.dir, 'n'.repeat(256)), 'y'))).toBe('ENAMETOOLONG')
    expect(await errCode(fs.rename(join(m.dir, 'd'), join(m.dir, 'd/e/inside')))).toBe('EINVAL')
  })

  it('keeps hard links, symlinks, modes, times and xattrs', async () => {
    const f = join(m.dir, 'orig')
    await fs.writeFile(f, 'linked')
    await fs.link(f, join(m.dir, 'hard'))
    await fs.symlink('orig', join(m.dir, 'soft'))
    const [a, b] = [await fs.stat(f), await fs.stat(join(m.dir, 'hard'))]
    expect(a.ino).toBe(b.ino)
    expect(a.nlink).toBe(2)
    expect(await fs.readlink(join(m.dir, 'soft'))).toBe('orig')
    expect(await fs.readFile(join(m.dir, 'soft'), 'utf8')).toBe('linked')
    await fs.chmod(f, 0o600)
    expect((await fs.stat(f)).mode & 0o7777).toBe(0o600)
    const when = new Date('2020-01-02T03:04:05.500Z')
    // Distinct times: fuse-native 2.2.6 sent atime as mtime (patched at install).
    await fs.utimes(f, new Date(when.getTime() - 86_400_000), when)
    expect((await fs.stat(f)).mtimeMs).toBe(when.getTime())
    expect((await fs.stat(f)).atimeMs).toBe(when.getTime() - 86_400_000)
    // One side UTIME_OMIT: touch -a leaves the mtime, touch -m the atime (both transports).
    await run('touch', ['-a', '-d', '@1200000000', f])
    await run('touch', ['-m', '-d', '@1300000000', f])
    const st = await fs.stat(f)
    expect([st.atimeMs, st.mtimeMs]).toEqual([1_200_000_000_000, 1_300_000_000_000])
    // Nanoseconds where the transport keeps them (lowlevel; fuse-native passes milliseconds).
    await run('touch', ['-d', '@1100000000.987654321', f])
    const ns = await fs.stat(f, { bigint: true })
    const exact = m.mount.transport === 'lowlevel'
    expect(ns.mtimeNs).toBe(exact ? 1_100_000_000_987_654_321n : 1_100_000_000_987_000_000n)
    if (exact) {
      // Before 1970: seconds round down, nanoseconds stay in [0, 1e9) (struct timespec).
      await run('touch', ['-m', '-d', '@-1.25', f])
      expect((await fs.stat(f, { bigint: true })).mtimeNs).toBe(-1_250_000_000n)
    }
    await run('setfattr', ['-n', 'user.k', '-v', 'v1', f])
    expect((await run('getfattr', ['--only-values', '-n', 'user.k', f])).stdout).toBe('v1')
    await run('setfattr', ['-x', 'user.k', f])
    expect(await errCode(run('getfattr', ['-n', 'user.k', f]))).not.toBe('ok')
  })

  it('truncates, overwrites at offsets and appends', async () => {
    const p = join(m.dir, 'offsets')
    const h = await fs.open(p, 'w+')
    await h.write(Buffer.from('0123456789'), 0, 10, 0)
    await h.write(Buffer.from('AB'), 0, 2, 4)
    await h.truncate(8)
    await h.write(Buffer.from('Z'), 0, 1, 12)
    await h.sync()
    await h.close()
    expect(await fs.readFile(p)).toEqual(Buffer.from('0123AB67\0\0\0\0Z'))
    await fs.appendFile(p, 'tail')
    expect((await fs.readFile(p, 'latin1')).endsWith('Ztail')).toBe(true)
  })

  it('sees changes made through the volume engine (the files API path)', async () => {
    const vfs = m.mount.vfs
    const a = await vfs.create(ROOT_INO, Buffer.from('from-api'), 0o644, { uid: 0, gid: 0 })
    vfs.open(a.ino)
    await vfs.write(a.ino, 0, Buffer.from('api bytes'))
    await vfs.release(a.ino)
    expect(await fs.readFile(join(m.dir, 'from-api'), 'utf8')).toBe('api bytes')
  })

  it('mounts read-only: reads work, every change is EROFS', async () => {
    await fs.writeFile(join(m.dir, 'ro-src.txt'), 'visible')
    const ro = await FuseMount.mount(m.mount.vfs, join(m.dir, '..', 'ro'), { readOnly: true }, silentLogger)
    try {
      expect(await fs.readFile(join(ro.dir, 'ro-src.txt'), 'utf8')).toBe('visible')
      expect(await errCode(fs.writeFile(join(ro.dir, 'new.txt'), 'x'))).toBe('EROFS')
      expect(await errCode(fs.unlink(join(ro.dir, 'ro-src.txt')))).toBe('EROFS')
      expect(await errCode(fs.mkdir(join(ro.dir, 'newdir')))).toBe('EROFS')
    } finally {
      await ro.unmount()
    }
  })

  it('makes device nodes (inert: the mount is nodev), sockets and FIFOs', async () => {
    await run('mknod', [join(m.dir, 'blk'), 'b', '1', '1'])
    await run('mknod', [join(m.dir, 'chr'), 'c', '1', '3'])
    const blk = await fs.lstat(join(m.dir, 'blk'))
    const chr = await fs.lstat(join(m.dir, 'chr'))
    expect([blk.isBlockDevice(), chr.isCharacterDevice(), chr.rdev]).toEqual([true, true, 259])
    // /dev/null's numbers, yet no device behind them: nodev refuses the open.
    expect(await errCode(fs.readFile(join(m.dir, 'chr')))).toBe('EACCES')
    await run('mkfifo', [join(m.dir, 'fifo')])
    expect((await fs.lstat(join(m.dir, 'fifo'))).isFIFO()).toBe(true)
    // A Unix socket bound on the mount carries a connection (ssh-agent, tmux, language servers).
    // In a child: bind and connect are synchronous syscalls, and this process serves the mount.
    const script = [
      'import socket, os, sys',
      'p = sys.argv[1]',
      's = socket.socket(socket.AF_UNIX); s.bind(p); s.listen(1)',
      'c = socket.socket(socket.AF_UNIX); c.connect(p)',
      'a, _ = s.accept(); a.sendall(b"hello from the socket"); a.close()',
      'print(c.recv(100).decode(), os.path.exists(p))',
    ].join('\n')
    const out = await run('python3', ['-c', script, join(m.dir, 'agent.sock')])
    expect(out.stdout.trim()).toBe('hello from the socket True')
    expect((await fs.lstat(join(m.dir, 'agent.sock'))).isSocket()).toBe(true)
  })

  it('reports statfs', async () => {
    const out = await run('stat', ['-f', '-c', '%l %S', m.dir])
    expect(out.stdout.trim()).toBe('255 4096')
  })
})
