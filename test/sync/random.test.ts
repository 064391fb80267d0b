// Randomized two-sided sync (replayable: S0_SYNC_SEEDS=7,8 reruns those seeds): a live session
// between a temp folder and a volume while random edits land on both sides at once — writes,
// large files with small edits, deletes (of directories with content too), renames of files
// and directories, symlinks, exec bits. After each round both sides converge to one tree, and
// nothing written in the round is lost: every file content a side wrote last (and did not itself
// remove) is somewhere in the converged tree, at its path or in a conflict copy.
import { createHash, randomBytes } from 'node:crypto'
import { chmod, lstat, mkdir, readFile, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { resolve, splitPath } from '../../src/snapshots/paths.js'
import { isDir } from '../../src/snapshots/types.js'
import type { Vfs } from '../../src/snapshots/vfs.js'
import * as volumeFiles from '../../src/snapshots/volume-files.js'
import { localTree, syncFixture, until, volumeTree, type SyncFixture } from './support.js'

let fx: SyncFixture
beforeAll(async () => {
  fx = await syncFixture()
}, 60_000)
afterAll(async () => {
  await fx?.close()
})

/** mulberry32: small, seedable. */
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

interface Side {
  name: 'local' | 'remote'
  files(): Promise<string[]>
  dirs(): Promise<string[]>
  write(p: string, data: Buffer): Promise<void>
  patch(p: string, off: number, data: Buffer): Promise<void>
  remove(p: string): Promise<void>
  move(from: string, to: string): Promise<void>
  link(p: string, target: string): Promise<void>
  exec(p: string): Promise<void>
  read(p: string): Promise<Buffer | null>
}

function localSide(root: string): Side {
  const a = (p: string): string => path.join(root, ...p.split('/'))
  const list = async (want: 'f' | 'd'): Promise<string[]> => {
    const out: string[] = []
    const walk = async (rel: string): Promise<void> => {
      for (const e of await readdir(a(rel || '.'), { withFileTypes: true }).catch(() => [])) {
        const p = rel ? `${rel}/${e.name}` : e.name
        if (p === '.s0sync' || e.name.startsWith('.s0sync')) continue
        if (e.isDirectory()) {
          if (want === 'd') out.push(p)
          await walk(p)
        } else if (e.isFile() && want === 'f') out.push(p)
      }
    }
    await walk('')
    return out.sort()
  }
  return {
    name: 'local',
    files: () => list('f'),
    dirs: () => list('d'),
    async write(p, data) {
      await mkdir(path.dirname(a(p)), { recursive: true })
      await writeFile(a(p), data)
    },
    async patch(p, off, data) {
      const old = await readFile(a(p))
      data.copy(old, Math.min(off, Math.max(0, old.length - data.length)))
      await writeFile(a(p), old)
    },
    remove: (p) => rm(a(p), { recursive: true, force: true }),
    async move(from, to) {
      await mkdir(path.dirname(a(to)), { recursive: true })
      await rename(a(from), a(to))
    },
    link: (p, target) => symlink(target, a(p)).catch(() => undefined),
    exec: (p) => chmod(a(p), 0o755),
    read: (p) => readFile(a(p)).catch(() => null),
  }
}

function remoteSide(vfs: Vfs): Side {
  const owner = { uid: 0, gid: 0 }
  const list = async (want: 'f' | 'd'): Promise<string[]> => {
    const out: string[] = []
    const walk = async (dir: string, rel: string): Promise<void> => {
      for (const e of await volumeFiles.list(vfs, dir).catch(() => [])) {
        const p = rel ? `${rel}/${e.name}` : e.name
        if (e.name.startsWith('.s0sync')) continue
        if (e.type === 'dir') {
          if (want === 'd') out.push(p)
          await walk(e.path, p)
        } else if (e.type === 'file' && want === 'f') out.push(p)
      }
    }
    await walk('/', '')
    return out.sort()
  }
  return {
    name: 'remote',
    files: () => list('f'),
    dirs: () => list('d'),
    write: (p, data) => volumeFiles.writeFile(vfs, `/${p}`, owner, Readable.from([data])),
    async patch(p, off, data) {
      const at = await resolve(vfs, splitPath(`/${p}`))
      vfs.open(at.ino)
      await vfs.write(at.ino, Math.min(off, Math.max(0, at.size - data.length)), data)
      await vfs.release(at.ino, { flush: 'now' })
    },
    remove: (p) => volumeFiles.remove(vfs, `/${p}`).catch(() => undefined),
    async move(from, to) {
      await volumeFiles.makeDirectory(vfs, `/${path.posix.dirname(to)}`, true, owner).catch(() => undefined)
      await volumeFiles.move(vfs, `/${from}`, `/${to}`)
    },
    async link(p, target) {
      const parts = splitPath(`/${p}`)
      const dir = await resolve(vfs, parts.slice(0, -1))
      await vfs
        .symlink(dir.ino, parts[parts.length - 1] as Buffer, Buffer.from(target), owner)
        .catch(() => undefined)
    },
    async exec(p) {
      const at = await resolve(vfs, splitPath(`/${p}`))
      await vfs.setattr(at.ino, { mode: 0o755 })
    },
    async read(p) {
      const at = await resolve(vfs, splitPath(`/${p}`)).catch(() => null)
      if (!at || isDir(at.mode)) return null
      return vfs.read(at.ino, 0, at.size)
    },
  }
}

/** One random operation on a side; returns the content it leaves at a path, if any. */
async function randomOp(side: Side, r: () => number, tag: string, seq: number): Promise<void> {
  const pick = <T>(xs: T[]): T | undefined => (xs.length ? xs[Math.floor(r() * xs.length)] : undefined)
  const files = await side.files()
  const dirs = await side.dirs()
  const x = r()
  const trace = process.env['S0_SYNC_TRACE']
    ? (what: string): void => void process.stderr.write(`[op ${side.name}] ${what}\n`)
    : (): void => undefined
  const name = (): string =>
    `${pick(['', ...dirs]) ? `${pick(dirs) ?? ''}/` : ''}${tag}${seq}-${Math.floor(r() * 1000)}`.replace(
      /^\//,
      '',
    )
  try {
    if (x < 0.35 || files.length === 0) {
      const size = r() < 0.1 ? 200_000 + Math.floor(r() * 400_000) : Math.floor(r() * 3000)
      await side.write(name() + '.txt', Buffer.from(`${tag}${seq}:${randomBytes(size).toString('base64')}`))
    } else if (x < 0.5) {
      const f = pick(files) as string
      trace(`rewrite ${f}`)
      await side.write(f, Buffer.from(`${tag}${seq} rewrote ${f}`))
    } else if (x < 0.6) {
      const f = pick(files) as string
      trace(`patch ${f}`)
      await side.patch(f, Math.floor(r() * 100_000), Buffer.from(`<${tag}${seq} patched>`))
    } else if (x < 0.68) await side.remove(pick(files) as string)
    else if (x < 0.73 && dirs.length > 0)
      await side.remove(pick(dirs) as string) // a directory with content
    else if (x < 0.82) {
      const f = pick(files) as string
      const to = name() + '.moved'
      trace(`move ${f} ${to}`)
      await side.move(f, to)
    } else if (x < 0.87 && dirs.length > 0) {
      const d = pick(dirs) as string
      if (!d.includes('/')) await side.move(d, `${tag}${seq}-dir`)
    } else if (x < 0.92) {
      const d = `${tag}${seq}d`
      await side.write(`${d}/a.txt`, Buffer.from(`${tag}${seq} in new dir`))
    } else if (x < 0.96) await side.link(`${tag}${seq}.lnk`, pick(files) ?? 'nowhere')
    else {
      const f = pick(files) as string
      trace(`exec ${f}`)
      await side.exec(f)
    }
  } catch (err) {
    // The other side's sync moved something under us (a path is gone): that is the race we want.
    const code = (err as { code?: string }).code
    if (
      ![
        'ENOENT',
        'file_not_found',
        'path_not_directory',
        'ENOTDIR',
        'EISDIR',
        'path_not_file',
        'EEXIST',
        'path_exists',
        'directory_not_empty',
      ].includes(code ?? '')
    )
      throw err
  }
}

/** Long contents shortened to a head and a hash, so a failure's diff stays readable. */
function summary(t: Record<string, string> | null): Record<string, string> | null {
  if (!t) return t
  return Object.fromEntries(
    Object.entries(t).map(([p, v]) => [
      p,
      v.length > 60 ? `${v.slice(0, 24)}…#${createHash('sha1').update(v).digest('hex').slice(0, 10)}` : v,
    ]),
  )
}

const SEEDS = (process.env['S0_SYNC_SEEDS'] ?? '1,2,3').split(',').map(Number)

async function editBoth(L: Side, R: Side, r: () => number, round: number, ops: number): Promise<void> {
  await Promise.all(
    [L, R].map(async (side) => {
      for (let k = 0; k < ops; k++) await randomOp(side, r, `${side === L ? 'L' : 'R'}${round}~`, k)
    }),
  )
}

describe('randomized two-sided sync', () => {
  it.each(SEEDS)(
    'converges without losing an edit (seed %i)',
    async (seed) => {
      const r = rng(seed)
      const { id, vfs } = await fx.newVolume()
      const dir = await fx.tempDir()
      const L = localSide(dir)
      const R = remoteSide(vfs)
      for (let i = 0; i < 20; i++)
        await L.write(`base/f${i}.txt`, Buffer.from(`base ${i} ${'x'.repeat(Math.floor(r() * 5000))}`))
      await L.write('big.bin', Buffer.from(randomBytes(1_500_000).toString('base64')))
      const converge = async (what: string): Promise<void> => {
        const [l, v] = await until(
          // Read while the session may still move things: a read that races it is retried.
          async () =>
            [await localTree(dir).catch(() => null), await volumeTree(vfs).catch(() => null)] as const,
          ([a, b]) => a !== null && JSON.stringify(a) === JSON.stringify(b),
          20_000,
        )
        if (JSON.stringify(l) !== JSON.stringify(v)) {
          // What the session believed of each differing path: its ancestor and both sides now.
          const state = JSON.parse(await readFile(path.join(dir, '.s0sync', 'state.json'), 'utf8')) as {
            entries: [string, unknown][]
          }
          const A = new Map(state.entries)
          // Read-only replay of the journal (the session is still running: no compaction here).
          for (const line of (
            await readFile(path.join(dir, '.s0sync', 'journal'), 'utf8').catch(() => '')
          ).split('\n')) {
            if (!line) continue
            const rec = JSON.parse(line) as { p?: string; e?: unknown }
            if (rec.p !== undefined) {
              if (rec.e) A.set(rec.p, rec.e)
              else A.delete(rec.p)
            }
          }
          const differ = [...new Set([...Object.keys(l ?? {}), ...Object.keys(v ?? {})])].filter(
            (p) => l?.[p] !== v?.[p],
          )
          for (const p of differ) {
            const st = await lstat(path.join(dir, p)).catch(() => null)
            const at = await resolve(vfs, splitPath(`/${p}`)).catch(() => null)
            process.stderr.write(
              `diverged ${p}: ancestor ${JSON.stringify(A.get(p))} local ino ${st?.ino} mtime ${st?.mtimeMs} size ${st?.size}; remote ino ${at?.ino} mtime ${at?.mtimeNs} ctime ${at?.ctimeNs} size ${at?.size} mode ${at?.mode.toString(8)}\n`,
            )
          }
        }
        expect(summary(l), `seed ${seed} ${what}: local vs volume`).toEqual(summary(v))
      }
      const first = fx.session(dir, id)
      await first.open()
      await first.fullPass()
      await first.close()
      for (let round = 0; round < 4; round++) {
        // Offline edits (no session runs): every change on both sides is concurrent, so the next
        // session must keep each content either side wrote, here or in a conflict copy.
        await editBoth(L, R, r, round, 6)
        const written: Buffer[] = []
        for (const side of [L, R])
          for (const f of await side.files()) {
            const b = await side.read(f)
            if (b && (b.includes(`L${round}~`) || b.includes(`R${round}~`))) written.push(b)
          }
        const s = fx.session(dir, id, { confirmDeletes: true })
        await s.open()
        let live = false
        const running = s.live(() => (live = true))
        try {
          await until(
            async () => live,
            (v) => v,
            20_000,
          )
          await converge(`round ${round} (offline edits)`)
          const finalFiles = await Promise.all((await L.files()).map((f) => L.read(f)))
          for (const w of written)
            expect(
              finalFiles.some((b) => b?.equals(w)),
              `seed ${seed} round ${round}: lost ${JSON.stringify(w.subarray(0, 30).toString('latin1'))}`,
            ).toBe(true)
          // Live edits on both sides while the session runs: they converge.
          await editBoth(L, R, r, round + 100, 5)
          await converge(`round ${round} (live edits)`)
        } finally {
          s.stop()
          await running
          await s.close()
        }
      }
    },
    240_000,
  )
})
