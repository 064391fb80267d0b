// Real programs on a mounted volume, each verified by its own integrity check: git, tar, sqlite
// in WAL mode, a Python venv, rsync. The mount is served by this process, so every command runs
// asynchronously (a synchronous spawn would block the event loop that answers the kernel), and
// through bash with `cd` rather than a spawn `cwd` on the mount: libuv waits for the child's
// exec synchronously, and a child that must first chdir into the mount would wait for us.
import { execFile } from 'node:child_process'
import * as fs from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prng } from '../support/store.js'
import { mountTestVolume, type MountedVolume } from './support.js'

const exec = promisify(execFile)
const sh = async (cmd: string): Promise<string> =>
  (await exec('bash', ['-c', cmd], { maxBuffer: 64 * 1024 * 1024 })).stdout

let m: MountedVolume
let src: string
const FILES = 5_000

beforeAll(async () => {
  // Durability at fsync: what these programs see is the same in both modes (the persistence
  // gate and the mount tests cover durability at close); here a close costs no synchronous
  // commit, which makes the suite ~2.5x faster on a 2-core machine (git clone 73 s vs 180 s).
  m = await mountTestVolume({ durability: 'fsync' })
  src = await fs.mkdtemp(join(tmpdir(), 's0-workload-src-'))
  // A source tree on the host: 5,000 small files in 50 directories, a few large ones, modes,
  // symlinks and hard links.
  const tree = join(src, 'tree')
  for (let d = 0; d < 50; d++) {
    const dir = join(tree, `dir${d}`)
    await fs.mkdir(dir, { recursive: true })
    await Promise.all(
      Array.from({ length: FILES / 50 }, (_, f) =>
        fs.writeFile(join(dir, `file${f}.txt`), `file ${d}/${f}\n`.repeat(1 + ((d * 7 + f) % 40))),
      ),
    )
  }
  for (let i = 0; i < 3; i++) await fs.writeFile(join(tree, `big${i}.bin`), prng(8 * 1024 * 1024 + i, i))
  await fs.chmod(join(tree, 'dir0/file0.txt'), 0o755)
  await fs.chmod(join(tree, 'dir0/file1.txt'), 0o600)
  await fs.symlink('dir0/file2.txt', join(tree, 'link-to-file'))
  await fs.symlink('dir1', join(tree, 'link-to-dir'))
  await fs.link(join(tree, 'dir2/file3.txt'), join(tree, 'hardlink.txt'))
  await fs.utimes(join(tree, 'dir3'), 1_500_000_000, 1_500_000_000)
}, 120_000)

afterAll(async () => {
  await m?.close()
  if (src) await fs.rm(src, { recursive: true, force: true })
})

describe('real workloads on a FUSE mount', () => {
  it('git clone of a 5,000-file repository, then git fsck and a clean status', async () => {
    const repo = join(src, 'repo')
    await sh(
      `git init -q ${repo} && cp -a ${src}/tree/dir* ${repo}/ && cd ${repo} && git add -A && ` +
        `git -c user.email=t@s0 -c user.name=t commit -qm init`,
    )
    await sh(`git clone -q --no-hardlinks ${repo} ${m.dir}/clone`)
    await sh(`git -C ${m.dir}/clone fsck --full --strict`)
    expect(await sh(`git -C ${m.dir}/clone status --porcelain`)).toBe('')
    expect(Number(await sh(`git -C ${m.dir}/clone ls-files | wc -l`))).toBe(FILES)
    // Change, commit, check again: git's own writes (index, objects, refs) through the mount.
    await fs.appendFile(join(m.dir, 'clone/dir5/file5.txt'), 'changed\n')
    await sh(`cd ${m.dir}/clone && git -c user.email=t@s0 -c user.name=t commit -qam change`)
    await sh(`git -C ${m.dir}/clone fsck --full --strict`)
    expect(await sh(`git -C ${m.dir}/clone status --porcelain`)).toBe('')
  }, 600_000)

  it('tar x of a large tarball matches the source (diff -r)', async () => {
    await sh(`tar cf ${src}/tree.tar -C ${src} tree`)
    await fs.mkdir(join(m.dir, 'untar'))
    await sh(`tar xf ${src}/tree.tar -C ${m.dir}/untar`)
    await sh(`diff -r --no-dereference ${src}/tree ${m.dir}/untar/tree`)
  }, 600_000)

  it('sqlite3: 1,000 transactions in WAL mode, then PRAGMA integrity_check', async () => {
    const db = join(m.dir, 'test.db')
    const lines = ['PRAGMA journal_mode=WAL;', 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);']
    for (let i = 0; i < 1000; i++)
      lines.push(`BEGIN; INSERT INTO t(v) VALUES ('row ${i} ${'x'.repeat(i % 200)}'); COMMIT;`)
    await fs.writeFile(join(src, 'tx.sql'), lines.join('\n'))
    await sh(`sqlite3 ${db} < ${src}/tx.sql`)
    expect((await sh(`sqlite3 ${db} 'PRAGMA integrity_check; SELECT count(*) FROM t;'`)).trim()).toBe(
      'ok\n1000',
    )
  }, 600_000)

  it('python3 -m venv, then an import from it', async () => {
    await sh(`/usr/bin/python3 -m venv ${m.dir}/venv`)
    const out = await sh(`${m.dir}/venv/bin/python -c 'import pip, sys; print(sys.prefix)'`)
    expect(out.trim()).toBe(`${m.dir}/venv`)
  }, 600_000)

  it('rsync -aH round trip keeps modes, times, symlinks and hard links', async () => {
    await sh(`rsync -aH ${src}/tree/ ${m.dir}/rsync/`)
    await sh(`rsync -aH ${m.dir}/rsync/ ${src}/back/`)
    // A checksum dry run that lists nothing: same content, modes, times, links, hard links.
    expect(await sh(`rsync -aHcni ${src}/tree/ ${src}/back/`)).toBe('')
    expect(await sh(`rsync -aHcni ${src}/tree/ ${m.dir}/rsync/`)).toBe('')
    const [a, b] = await Promise.all([
      fs.stat(join(m.dir, 'rsync/dir2/file3.txt')),
      fs.stat(join(m.dir, 'rsync/hardlink.txt')),
    ])
    expect(a.ino).toBe(b.ino)
  }, 600_000)
})
