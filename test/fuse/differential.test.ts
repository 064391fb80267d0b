// Differential test: the same random sequences of file-system operations run on a directory of
// the host's file system and on our FUSE mount; every result and every errno must agree, and so
// must the whole tree afterwards. Seeds are replayable: S0_DIFF_SEED=<n> runs one sequence,
// S0_DIFF_RUNS / S0_DIFF_OPS scale it up.
import { createHash } from 'node:crypto'
import * as fs from 'node:fs/promises'
import { constants as C } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mountTestVolume, type MountedVolume } from './support.js'

const RUNS = Number(process.env.S0_DIFF_RUNS ?? 12)
const OPS = Number(process.env.S0_DIFF_OPS ?? 120)
const ONE_SEED = process.env.S0_DIFF_SEED === undefined ? null : Number(process.env.S0_DIFF_SEED)

let m: MountedVolume
let nativeBase: string
beforeAll(async () => {
  m = await mountTestVolume()
  nativeBase = await mkdtemp(join(tmpdir(), 's0-diff-native-'))
})
afterAll(async () => {
  await m?.close()
  if (nativeBase) await rm(nativeBase, { recursive: true, force: true })
})

/** Small deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// Few names, shallow tree: operations collide often (existing targets, wrong types, non-empty
// directories, moves into oneself), which is where file systems get errnos wrong.
const COMPONENTS = ['a', 'b', 'x', 'y']

type Op =
  | { op: 'write'; path: string; off: number; len: number; seed: number }
  | { op: 'truncate'; path: string; size: number }
  | { op: 'rename'; from: string; to: string }
  | { op: 'link'; from: string; to: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'chmod'; path: string; mode: number }
  | { op: 'utimes'; path: string; ms: number }
  | { op: 'mkdir'; path: string }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: string }
  | { op: 'readdir'; path: string }
  | { op: 'read'; path: string }
  | { op: 'fsync'; path: string }
  | { op: 'stat'; path: string }
  | { op: 'lstat'; path: string }

function genOps(seed: number, count: number): Op[] {
  const r = rng(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T
  const path = (): string => {
    const depth = 1 + Math.floor(r() * r() * 3)
    return Array.from({ length: depth }, () => pick(COMPONENTS)).join('/')
  }
  const ops: Op[] = []
  for (let i = 0; i < count; i++) {
    const k = r()
    if (k < 0.22)
      ops.push({
        op: 'write',
        path: path(),
        off: pick([0, 0, 100, 65_536, 1_048_576, 3_000_000]),
        len: pick([1, 100, 5_000, 131_072, 400_000]),
        seed: Math.floor(r() * 1e9),
      })
    else if (k < 0.3) ops.push({ op: 'truncate', path: path(), size: pick([0, 10, 70_000, 2_000_000]) })
    else if (k < 0.38) ops.push({ op: 'rename', from: path(), to: path() })
    else if (k < 0.42) ops.push({ op: 'link', from: path(), to: path() })
    else if (k < 0.46)
      ops.push({ op: 'symlink', target: pick(['a', '../a', 'x/b', 'nowhere']), path: path() })
    else if (k < 0.5) ops.push({ op: 'chmod', path: path(), mode: pick([0o644, 0o600, 0o755, 0o4711]) })
    else if (k < 0.53)
      ops.push({ op: 'utimes', path: path(), ms: 1_600_000_000_000 + Math.floor(r() * 1e6) * 1000 })
    else if (k < 0.63) ops.push({ op: 'mkdir', path: path() })
    else if (k < 0.68) ops.push({ op: 'rmdir', path: path() })
    else if (k < 0.74) ops.push({ op: 'unlink', path: path() })
    else if (k < 0.8) ops.push({ op: 'readdir', path: pick(['', ...COMPONENTS, 'x/y']) })
    else if (k < 0.88) ops.push({ op: 'read', path: path() })
    else if (k < 0.91) ops.push({ op: 'fsync', path: path() })
    else if (k < 0.96) ops.push({ op: 'stat', path: path() })
    else ops.push({ op: 'lstat', path: path() })
  }
  return ops
}

function bytes(len: number, seed: number): Buffer {
  const r = rng(seed)
  const b = Buffer.allocUnsafe(len)
  for (let i = 0; i < len; i++) b[i] = (r() * 256) | 0
  return b
}

function digest(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 16)
}

function typeOf(s: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): string {
  return s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'link' : 'other'
}

/** What an operation did, comparable across the two file systems. */
async function apply(root: string, o: Op): Promise<unknown> {
  const p = (rel: string): string => join(root, rel)
  try {
    switch (o.op) {
      case 'write': {
        const h = await fs.open(p(o.path), C.O_WRONLY | C.O_CREAT, 0o644)
        try {
          const { bytesWritten } = await h.write(bytes(o.len, o.seed), 0, o.len, o.off)
          return { n: bytesWritten }
        } finally {
          await h.close()
        }
      }
      case 'truncate':
        return await fs.truncate(p(o.path), o.size)
      case 'rename':
        return await fs.rename(p(o.from), p(o.to))
      case 'link':
        return await fs.link(p(o.from), p(o.to))
      case 'symlink':
        return await fs.symlink(o.target, p(o.path))
      case 'chmod':
        await fs.chmod(p(o.path), o.mode)
        return (await fs.stat(p(o.path))).mode
      case 'utimes':
        await fs.utimes(p(o.path), o.ms / 1000, o.ms / 1000)
        return Math.round((await fs.stat(p(o.path))).mtimeMs)
      case 'mkdir':
        return await fs.mkdir(p(o.path), 0o755)
      case 'rmdir':
        return await fs.rmdir(p(o.path))
      case 'unlink':
        return await fs.unlink(p(o.path))
      case 'readdir':
        return (await fs.readdir(p(o.path))).sort()
      case 'read':
        return digest(await fs.readFile(p(o.path)))
      case 'fsync': {
        const h = await fs.open(p(o.path), 'r')
        try {
          return await h.sync()
        } finally {
          await h.close()
        }
      }
      case 'stat':
      case 'lstat': {
        const s = o.op === 'stat' ? await fs.stat(p(o.path)) : await fs.lstat(p(o.path))
        return {
          type: typeOf(s),
          size: s.isDirectory() ? null : s.size,
          mode: s.mode,
          nlink: s.isDirectory() ? null : s.nlink,
        }
      }
    }
  } catch (err) {
    return { errno: (err as NodeJS.ErrnoException).code }
  }
}

/** The whole tree: type, mode, size, link count, content digest or link target per path. */
async function snapshotTree(root: string, rel = ''): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {}
  for (const name of (await fs.readdir(join(root, rel))).sort()) {
    const path = rel ? `${rel}/${name}` : name
    const s = await fs.lstat(join(root, path))
    const entry: Record<string, unknown> = { type: typeOf(s), mode: s.mode }
    if (s.isFile()) {
      entry.size = s.size
      entry.nlink = s.nlink
      entry.sha = digest(await fs.readFile(join(root, path)))
    } else if (s.isSymbolicLink()) entry.target = await fs.readlink(join(root, path))
    out[path] = entry
    if (s.isDirectory()) Object.assign(out, await snapshotTree(root, path))
  }
  return out
}

async function runSequence(seed: number): Promise<void> {
  const native = join(nativeBase, `run-${seed}`)
  const ours = join(m.dir, `run-${seed}`)
  await fs.mkdir(native)
  await fs.mkdir(ours)
  const ops = genOps(seed, OPS)
  for (const [i, o] of ops.entries()) {
    const want = await apply(native, o)
    const got = await apply(ours, o)
    if (process.env.S0_DIFF_TRACE) console.log(i, JSON.stringify(o), JSON.stringify(want))
    expect(got, `seed ${seed} op #${i} ${JSON.stringify(o)}`).toEqual(want)
  }
  expect(await snapshotTree(ours), `seed ${seed}: final tree`).toEqual(await snapshotTree(native))
}

describe('differential: host file system vs FUSE mount', () => {
  const seeds = ONE_SEED !== null ? [ONE_SEED] : Array.from({ length: RUNS }, (_, i) => 1000 + i)
  for (const seed of seeds) {
    it(`agrees on sequence ${seed}`, () => runSequence(seed), 120_000)
  }

  it('agrees after the volume is flushed and re-read from the store', async () => {
    // Drop every cache of the Vfs by flushing and comparing against the store's view.
    await m.mount.vfs.flushAll()
    for (const seed of seeds.slice(0, 3)) {
      expect(await snapshotTree(join(m.dir, `run-${seed}`))).toEqual(
        await snapshotTree(join(nativeBase, `run-${seed}`)),
      )
    }
  })
})
