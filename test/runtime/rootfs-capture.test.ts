// Root-filesystem capture, differentially: random changes are made through a real overlayfs
// (template lower, our checkpoint volume FUSE-mounted as the lower above it), the upper is
// captured into a fork of the checkpoint (incrementally, with a capture half-way through, and
// in one go into a second fork), and each result, mounted as the lower of a fresh overlay with an
// empty upper, must show exactly the tree the sandbox saw: names, types, modes, owners, sizes,
// contents, symlink targets, user xattrs, mtimes (to the millisecond: FUSE 2 carries no more).
// Three generations, so checkpoints stack. S0_CAPTURE_SEED replays a run.
import { createHash } from 'node:crypto'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/core/log.js'
import { FuseMount } from '../../src/fuse/mount.js'
import { DiskImages } from '../../src/runtime/disk.js'
import { mountOverlay, unmountOverlay } from '../../src/runtime/overlay.js'
import type { CaptureManifest } from '../../src/runtime/rootfs-capture.js'
import { captureUpper } from '../../src/runtime/rootfs-capture.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { openTestStore, prng, TEAM_A, type TestStore } from '../support/store.js'

const run = promisify(execFile)
const SEED = Number(process.env['S0_CAPTURE_SEED'] ?? Date.now() % 100_000)
const OPS_PER_HALF = Number(process.env['S0_CAPTURE_OPS'] ?? 60)

let t: TestStore
let engine: VolumeEngine
let base: string
let template: string
beforeAll(async () => {
  t = await openTestStore({ store: { diskCacheBytes: 0 } })
  engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  base = await fs.mkdtemp(path.join(os.tmpdir(), 's0-capture-'))
  await fs.chmod(base, 0o755)
  template = path.join(base, 'template')
  // A small template: files, nested directories, a symlink, a hard link, odd modes.
  for (const d of ['etc', 'usr/lib/pkg', 'usr/bin', 'var/cache/x', 'opt/a/b/c', 'home/u'])
    await fs.mkdir(path.join(template, d), { recursive: true })
  for (let i = 0; i < 12; i++) {
    const d = ['etc', 'usr/lib/pkg', 'usr/bin', 'var/cache/x', 'opt/a/b/c', 'home/u'][i % 6] as string
    await fs.writeFile(path.join(template, d, `f${i}`), prng(100 + i * 3000, i))
  }
  await fs.symlink('usr/lib', path.join(template, 'lib'))
  await fs.link(path.join(template, 'etc/f0'), path.join(template, 'etc/f0-link'))
  await fs.chmod(path.join(template, 'usr/bin/f2'), 0o4755)
})
afterAll(async () => {
  // A failed run leaves its mounts: detach them (deepest first) before removing the tree.
  if (base) {
    const mounts = (await fs.readFile('/proc/self/mounts', 'utf8'))
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m.startsWith(base + '/'))
      .sort((a, b) => b.length - a.length)
    for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined)
  }
  await engine?.close()
  await t?.close()
  if (base) await fs.rm(base, { recursive: true, force: true })
})

/** xorshift, seeded: every choice of a run replays from SEED. */
function rng(seed: number): () => number {
  let x = Math.imul(seed + 7, 0x9e3779b1) | 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}

/** user.* xattrs of every entry below `root` (one getfattr run), by path relative to it. */
async function xattrsOf(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const { stdout } = await run('getfattr', [
    '-R',
    '-P',
    '-h',
    '-d',
    '-m',
    '^user\\.',
    '--absolute-names',
    root,
  ])
  for (const block of stdout.split('\n\n')) {
    const lines = block.split('\n').filter(Boolean)
    const head = lines.shift()
    if (!head?.startsWith('# file: ')) continue
    out.set(path.relative(root, head.slice('# file: '.length)), lines.sort().join(','))
  }
  return out
}

/** Every entry below `root` (root itself excluded: it is the upper's); `full` adds contents and xattrs. */
async function describeTree(root: string, full = true): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const xattrs = full ? await xattrsOf(root) : new Map<string, string>()
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fs.readdir(path.join(root, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name
      const p = path.join(root, r)
      const st = await fs.lstat(p)
      const type = st.isFile() ? 'f' : st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'o'
      let what = `${type} ${st.mode.toString(8)} ${st.uid}:${st.gid} x=${xattrs.get(r) ?? ''}`
      if (!full) {
        out.set(r, what)
        if (st.isDirectory()) await walk(r)
        continue
      }
      if (st.isFile()) {
        const h = createHash('sha256')
          .update(await fs.readFile(p))
          .digest('hex')
          .slice(0, 16)
        what += ` size=${st.size} ${h} mtime=${Math.floor(st.mtimeMs)}`
      } else if (st.isSymbolicLink()) what += ` -> ${await fs.readlink(p)}`
      else if (st.isDirectory()) what += ` mtime=${Math.floor(st.mtimeMs)}`
      out.set(r, what)
      if (st.isDirectory()) await walk(r)
    }
  }
  await walk('')
  return out
}

interface Gen {
  dir: string
  merged: string
  upper: string
  lower?: FuseMount
}

async function startGen(name: string, checkpoint: string | null): Promise<Gen> {
  const dir = path.join(base, name)
  let lower: FuseMount | undefined
  if (checkpoint) {
    lower = await FuseMount.mount(
      await engine.vfs(TEAM_A, checkpoint),
      path.join(base, `${name}-ckpt`),
      { immutable: true },
      silentLogger,
    )
  }
  // The upper on an ext4 image, as a sandbox's (disk.ts): what a capture reads in production.
  const disk = { bytes: 256 * 1024 * 1024, images: new DiskImages(path.join(base, 'disk-images')) }
  const ovl = await mountOverlay({ dir, lowerDirs: [...(lower ? [lower.dir] : []), template], disk })
  return { dir, merged: ovl.merged, upper: ovl.upper, ...(lower ? { lower } : {}) }
}

async function stopGen(g: Gen): Promise<void> {
  await unmountOverlay(g.dir)
  await g.lower?.unmount()
}

/** One random change through the overlay (errors a real program could get are ignored). */
async function randomOp(root: string, r: () => number, i: number): Promise<void> {
  // stable-*: written once per generation and left alone (what an incremental capture skips).
  const all = [...(await describeTree(root, false)).entries()].filter(([p]) => !p.startsWith('stable-'))
  const dirs = ['', ...all.filter(([, d]) => d.startsWith('d')).map(([p]) => p)]
  const files = all.filter(([, d]) => d.startsWith('f')).map(([p]) => p)
  const any = all.map(([p]) => p)
  const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(r() * xs.length)]
  const at = (p: string): string => path.join(root, p)
  const newName = (): string => path.join(pick(dirs) ?? '', `n${i}-${Math.floor(r() * 1e6)}`)
  const ignore = (err: NodeJS.ErrnoException): void => {
    if (
      !['ENOENT', 'EXDEV', 'EEXIST', 'ENOTEMPTY', 'EISDIR', 'ENOTDIR', 'EINVAL', 'EPERM'].includes(
        err.code ?? '',
      )
    )
      throw err
  }
  const op = Math.floor(r() * 17)
  if (process.env['S0_CAPTURE_DEBUG']) await fs.appendFile('/tmp/capdbg.log', `op ${i} ${op}\n`)
  const f = pick(files)
  const e = pick(any)
  const d = pick(dirs.filter(Boolean))
  await (async () => {
    switch (op) {
      case 0:
      case 1:
        return fs.writeFile(at(newName()), prng(r() < 0.1 ? 3_000_000 : Math.floor(r() * 40_000), i))
      case 2:
        return f && fs.appendFile(at(f), prng(1 + Math.floor(r() * 5000), i + 1))
      case 3:
        return f && fs.truncate(at(f), Math.floor(r() * 2000))
      case 4:
        return e && fs.rm(at(e), { recursive: true, force: true })
      case 5:
        return fs.mkdir(at(newName()))
      case 6:
        return f && fs.rename(at(f), at(newName()))
      case 7:
        return d && fs.rename(at(d), at(newName()))
      case 8:
        return (
          e &&
          !all.find(([p]) => p === e)?.[1].startsWith('l') &&
          fs.chmod(at(e), 0o600 + Math.floor(r() * 0o177))
        )
      case 9:
        return e && fs.lchown(at(e), 1000 + Math.floor(r() * 5), 2000 + Math.floor(r() * 5))
      case 10:
        return fs.symlink(`target-${i}`, at(newName()))
      case 11:
        return f && fs.link(at(f), at(newName()))
      case 12:
        // user.* attributes exist on files and directories only (EPERM elsewhere).
        return (
          (f ?? d) &&
          run('setfattr', ['-h', '-n', `user.k${i % 3}`, '-v', `v${i}`, at((r() < 0.5 ? f : d) ?? '')])
        )
      case 13:
        return run('mkfifo', [at(newName())]).then(() => undefined)
      case 14:
        // A directory replaced by a file of the same name.
        if (!d) return
        await fs.rm(at(d), { recursive: true, force: true })
        return fs.writeFile(at(d), 'was a directory')
      case 15:
        // Emptied and made again: an opaque directory over the lower one.
        if (!d) return
        await fs.rm(at(d), { recursive: true, force: true })
        await fs.mkdir(at(d))
        return fs.writeFile(at(path.join(d, 'again')), `again ${i}`)
      case 16:
        return f && fs.writeFile(at(f), prng(Math.floor(r() * 20_000), i + 2))
    }
  })().catch(ignore)
}

async function expectGenShows(
  checkpoint: string,
  expected: Map<string, string>,
  name: string,
): Promise<void> {
  const g = await startGen(name, checkpoint)
  try {
    const seen = await describeTree(g.merged)
    const diff: string[] = []
    for (const [p, want] of expected)
      if (seen.get(p) !== want) diff.push(`${p}: want ${want}, got ${seen.get(p)}`)
    for (const [p, got] of seen) if (!expected.has(p)) diff.push(`${p}: unexpected ${got}`)
    expect(diff, `seed ${SEED}, ${name}`).toEqual([])
  } finally {
    await stopGen(g)
  }
}

describe('root-filesystem capture', () => {
  it(`captures an overlay upper so that it reads back identically, over three generations (seed ${SEED})`, async () => {
    const r = rng(SEED)
    let checkpoint: string | null = null
    for (let gen = 1; gen <= 3; gen++) {
      const g = await startGen(`gen${gen}`, checkpoint)
      // The capture target: a fork of the checkpoint (the first generation starts empty).
      const fork = async (): Promise<string> =>
        checkpoint
          ? (await engine.fork(TEAM_A, checkpoint)).id
          : (await engine.create(TEAM_A, { kind: 'rootfs' })).id
      const incremental = await fork()
      const whole = await fork()
      let manifest: CaptureManifest | undefined
      const stable = path.join(g.merged, `stable-${gen}`)
      await fs.mkdir(stable)
      for (let i = 0; i < 5; i++) await fs.writeFile(path.join(stable, `s${i}`), prng(5000 + i, gen * 10 + i))
      for (let i = 0; i < 2 * OPS_PER_HALF; i++) {
        await randomOp(g.merged, r, gen * 1000 + i)
        if (i === OPS_PER_HALF - 1) {
          // Half-way: a capture while the "sandbox" goes on (as a snapshot of a running one).
          manifest = (
            await captureUpper({
              upperDir: g.upper,
              templateDir: template,
              vfs: await engine.vfs(TEAM_A, incremental),
            })
          ).manifest
        }
      }
      const expected = await describeTree(g.merged)
      const inc = await captureUpper({
        upperDir: g.upper,
        templateDir: template,
        vfs: await engine.vfs(TEAM_A, incremental),
        ...(manifest ? { manifest } : {}),
      })
      const full = await captureUpper({
        upperDir: g.upper,
        templateDir: template,
        vfs: await engine.vfs(TEAM_A, whole),
      })
      if (process.env['S0_CAPTURE_DEBUG']) console.log(gen, inc.stats, full.stats)
      expect(
        inc.stats.unchanged,
        'the second capture skips what the first one stored',
      ).toBeGreaterThanOrEqual(5)
      await stopGen(g)
      await expectGenShows(whole, expected, `gen${gen}-whole`)
      await expectGenShows(incremental, expected, `gen${gen}-inc`)
      await engine.closeVfs(TEAM_A, whole)
      await engine.delete(TEAM_A, whole)
      if (checkpoint) await engine.delete(TEAM_A, checkpoint)
      checkpoint = incremental
      void full
    }
  }, 240_000)
})
