// The streaming tar reader against archives made by GNU tar (ustar, gnu, pax) and hand-made
// malformed ones; and importArchive on a real Vfs: malicious archives are refused and change nothing.
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import {
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  symlink,
  link,
  writeFile,
  chmod,
} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error, type ErrorCode } from '../../src/core/errors.js'
import { silentLogger } from '../../src/core/log.js'
import { resolve } from '../../src/snapshots/paths.js'
import { importArchive, type ArchiveImportLimits } from '../../src/snapshots/archive-import.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { readTar, type TarEntry } from '../../src/snapshots/tar.js'
import { isDir, isLnk, isReg, ROOT_INO } from '../../src/snapshots/types.js'
import type { Vfs } from '../../src/snapshots/vfs.js'
import { openMemoryTestStore, prng, TEAM_A, type MemoryTestStore } from '../support/store.js'

const MTIME_S = 1_700_000_000
const BIG_BYTES = 3 * 1024 * 1024 + 17
let work: string
/** Trees made once: without names over 100 bytes (ustar can hold those) and with them. */
let shortTree: string
let longTree: string

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 's0-tar-'))
  shortTree = path.join(work, 'short')
  longTree = path.join(work, 'long')
  await makeTree(shortTree, false)
  await makeTree(longTree, true)
})
afterAll(async () => {
  await rm(work, { recursive: true, force: true })
})

// ---- helpers -------------------------------------------------------------------------------

/** The buffer in pieces of 1..maxPiece bytes (deterministic), as a network would deliver it. */
async function* pieces(buf: Buffer, seed = 1, maxPiece = 4096): AsyncGenerator<Buffer> {
  let x = seed * 2654435761
  for (let off = 0; off < buf.length;) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    const n = 1 + (x % maxPiece)
    yield buf.subarray(off, off + n)
    off += n
  }
}

interface Read {
  path: string
  type: TarEntry['type']
  mode: number
  mtimeNs: bigint
  size: number
  linkTarget: string | null
  data: Buffer
}

async function readAll(source: AsyncIterable<Buffer>): Promise<Read[]> {
  const out: Read[] = []
  for await (const e of readTar(source)) {
    const bufs: Buffer[] = []
    for await (const p of e.body) bufs.push(p)
    const { path: p, type, mode, mtimeNs, size, linkTarget } = e
    out.push({ path: p, type, mode, mtimeNs, size, linkTarget, data: Buffer.concat(bufs) })
  }
  return out
}

async function errorOf(p: Promise<unknown>): Promise<{ code: ErrorCode | 'ok'; message: string }> {
  try {
    await p
    return { code: 'ok', message: '' }
  } catch (err) {
    if (isS0Error(err)) return { code: err.code, message: err.message }
    throw err
  }
}

/** A directory tree with every kind of entry the reader must handle; `long` adds >100-byte names. */
async function makeTree(root: string, long: boolean): Promise<void> {
  await mkdir(path.join(root, 'bin'), { recursive: true })
  const deep = path.join(root, 'deep', 'a'.repeat(60), 'b'.repeat(60))
  await mkdir(deep, { recursive: true })
  await writeFile(path.join(root, 'hello.txt'), 'hello world\n')
  await writeFile(path.join(root, 'empty'), '')
  await chmod(path.join(root, 'empty'), 0o600)
  await writeFile(path.join(root, 'bin', 'run.sh'), '#!/bin/sh\necho hi\n')
  await chmod(path.join(root, 'bin', 'run.sh'), 0o750)
  await writeFile(path.join(root, 'big.bin'), prng(BIG_BYTES, 7))
  await writeFile(path.join(deep, 'file.txt'), 'deep\n') // a 136-byte path: the ustar prefix
  await link(path.join(root, 'hello.txt'), path.join(root, 'hard'))
  await symlink('hello.txt', path.join(root, 'link'))
  if (long) {
    await writeFile(path.join(root, 'n'.repeat(200)), 'long name\n')
    await symlink(path.relative(root, path.join(deep, 'file.txt')), path.join(root, 'longlink'))
  }
  execFileSync('touch', ['-h', '-d', `@${MTIME_S}`, ...walkSync(root)])
}

function walkSync(root: string): string[] {
  return execFileSync('find', [root, '-depth'], { encoding: 'utf8' }).split('\n').filter(Boolean)
}

function tarOf(dir: string, format: string, ...extra: string[]): Buffer {
  return execFileSync('tar', ['-C', dir, `--format=${format}`, '--sort=name', ...extra, '-cf', '-', '.'], {
    maxBuffer: 64 * 1024 * 1024,
  })
}

// Hand-made archives: the pieces GNU tar will not produce (bad checksums, huge pax records...).
function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0'
}

interface Hdr {
  name: string
  type?: string
  size?: number
  mode?: number
  mtime?: number
  linkname?: string
  prefix?: string
}

function header(o: Hdr): Buffer {
  const h = Buffer.alloc(512)
  h.write(o.name, 0, 100, 'utf8')
  h.write(octal(o.mode ?? 0o644, 8), 100, 'latin1')
  h.write(octal(0, 8), 108, 'latin1')
  h.write(octal(0, 8), 116, 'latin1')
  h.write(octal(o.size ?? 0, 12), 124, 'latin1')
  h.write(octal(o.mtime ?? MTIME_S, 12), 136, 'latin1')
  h.write(o.type ?? '0', 156, 'latin1')
  h.write(o.linkname ?? '', 157, 100, 'utf8')
  h.write('ustar\u000000', 257, 'latin1')
  if (o.prefix) h.write(o.prefix, 345, 155, 'utf8')
  return withChecksum(h)
}

function withChecksum(h: Buffer): Buffer {
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(octal(sum, 7) + ' ', 148, 'latin1')
  return h
}

function member(o: Hdr, data: Buffer | string = ''): Buffer {
  const body = Buffer.from(data)
  const pad = Buffer.alloc((512 - (body.length % 512)) % 512)
  return Buffer.concat([header({ ...o, size: o.size ?? body.length }), body, pad])
}

function paxBody(records: Record<string, string>): Buffer {
  const out: Buffer[] = []
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`
    let len = Buffer.byteLength(rest) + 1
    while (String(len).length + Buffer.byteLength(rest) !== len) len++
    out.push(Buffer.from(`${len}${rest}`))
  }
  return Buffer.concat(out)
}

const END = Buffer.alloc(1024)
function archive(...members: Buffer[]): Buffer {
  return Buffer.concat([...members, END])
}

// ---- the reader ----------------------------------------------------------------------------

describe('readTar', () => {
  for (const format of ['ustar', 'gnu', 'pax'] as const) {
    it(`reads a GNU tar --format=${format} archive byte for byte`, async () => {
      const root = format === 'ustar' ? shortTree : longTree
      const entries = await readAll(pieces(tarOf(root, format), 3))
      const seen = new Set<string>()
      for (const e of entries) {
        const rel = e.path.replace(/^\.\//, '').replace(/\/$/, '')
        seen.add(rel)
        const full = path.join(root, rel)
        const st = await lstat(full)
        expect(e.mtimeNs / 1_000_000_000n, rel).toBe(BigInt(MTIME_S))
        if (e.type === 'dir') {
          expect(st.isDirectory(), rel).toBe(true)
          expect(e.mode).toBe(st.mode & 0o7777)
        } else if (e.type === 'symlink') {
          expect(st.isSymbolicLink(), rel).toBe(true)
          expect(e.linkTarget).toBe(await readlink(full))
          expect(e.data.length).toBe(0)
        } else if (e.type === 'hardlink') {
          const target = await lstat(path.join(root, (e.linkTarget ?? '').replace(/^\.\//, '')))
          expect(target.ino).toBe(st.ino)
          expect(e.data.length).toBe(0)
        } else {
          expect(e.type, rel).toBe('file')
          expect(e.mode).toBe(st.mode & 0o7777)
          expect(e.size).toBe(st.size)
          expect(e.data.equals(await readFile(full)), rel).toBe(true)
        }
      }
      const expected = walkSync(root)
        .map((p) => path.relative(root, p))
        .filter((p) => p !== '')
      expect([...seen].filter((p) => p !== '').sort()).toEqual(expected.sort())
      expect(entries.filter((e) => e.type === 'hardlink')).toHaveLength(1)
    })
  }

  it('streams file data: pieces never exceed what the source delivered, before the source is read', async () => {
    const data = prng(BIG_BYTES, 9)
    const tar = archive(member({ name: 'big.bin' }, data), member({ name: 'after.txt' }, 'x'))
    const pieceMax = 64 * 1024
    let consumed = 0
    async function* source(): AsyncGenerator<Buffer> {
      for (let off = 0; off < tar.length; off += pieceMax) {
        consumed = Math.min(tar.length, off + pieceMax)
        yield tar.subarray(off, off + pieceMax)
      }
    }
    const names: string[] = []
    for await (const e of readTar(source())) {
      names.push(e.path)
      let got = 0
      for await (const p of e.body) {
        if (got === 0 && e.path === 'big.bin') expect(consumed).toBeLessThan(2 * pieceMax)
        expect(p.length).toBeLessThanOrEqual(pieceMax)
        got += p.length
      }
      expect(got).toBe(e.size)
    }
    expect(names).toEqual(['big.bin', 'after.txt'])
  })

  it('skips bodies nobody read', async () => {
    const tar = tarOf(longTree, 'gnu')
    const names: string[] = []
    for await (const e of readTar(pieces(tar, 5))) names.push(`${e.type}:${e.path}`)
    expect(names).toContain('file:./big.bin')
    expect(names).toContain('file:./' + 'n'.repeat(200))
    expect(names).toContain('symlink:./longlink')
  })

  it('applies pax path, linkpath, size and mtime; GNU L/K; ignores global headers', async () => {
    const longName = 'p/' + 'q'.repeat(300)
    const tar = archive(
      member({ name: 'pax_global', type: 'g' }, paxBody({ comment: 'ignored', path: 'not-used' })),
      member(
        { name: 'PaxHeaders/x', type: 'x' },
        paxBody({ path: longName, mtime: '1700000000.123456789', size: '5' }),
      ),
      member({ name: 'short', size: 99 }, 'abcde'), // the pax size (5) wins over the header's
      member({ name: 'PaxHeaders/y', type: 'x' }, paxBody({ linkpath: 'l'.repeat(150) })),
      member({ name: 'sym', type: '2', linkname: 'ignored' }),
      member({ name: '././@LongLink', type: 'L' }, 'g'.repeat(180) + '\0'),
      member({ name: '././@LongLink', type: 'K' }, 'k'.repeat(120) + '\0'),
      member({ name: 'trunc', type: '1', linkname: 'trunc' }),
      member({ name: 'file', prefix: 'pre/fix' }, 'x'),
      member({ name: 'v7dir/', type: '\0' }),
      member({ name: 'fifo', type: '6', size: 1234 }), // header-only: the size field is not data
      member({ name: 'after' }, 'ok'),
    )
    const got = await readAll(pieces(tar, 11, 100))
    expect(got.map((e) => [e.path, e.type, e.linkTarget, e.size])).toEqual([
      [longName, 'file', null, 5],
      ['sym', 'symlink', 'l'.repeat(150), 0],
      ['g'.repeat(180), 'hardlink', 'k'.repeat(120), 0],
      ['pre/fix/file', 'file', null, 1],
      ['v7dir/', 'dir', null, 0],
      ['fifo', 'other', null, 0],
      ['after', 'file', null, 2],
    ])
    expect(got[0]?.mtimeNs).toBe(1_700_000_000_123_456_789n)
    expect(got[0]?.data.toString()).toBe('abcde')
    expect(got[1]?.mtimeNs).toBe(BigInt(MTIME_S) * 1_000_000_000n)
  })

  it('reads GNU base-256 numbers and stops at the first zero block', async () => {
    const h = header({ name: 'b256', size: 0 })
    h.fill(0, 124, 136)
    h[124] = 0x80
    h.writeUInt32BE(3, 132) // size 3, in base-256
    h.fill(0xff, 136, 148) // mtime -1, in base-256
    withChecksum(h)
    const tar = Buffer.concat([
      h,
      Buffer.from('abc'),
      Buffer.alloc(509),
      Buffer.alloc(512),
      Buffer.from('junk'),
    ])
    const [e, ...rest] = await readAll(pieces(tar))
    expect(rest).toEqual([])
    expect([e?.size, e?.mtimeNs, e?.data.toString()]).toEqual([3, -1_000_000_000n, 'abc'])
  })

  it('yields hostile names as they are: judging them is the importer’s job', async () => {
    const tar = archive(
      member({ name: '../x' }, 'x'),
      member({ name: '/etc/x' }, 'x'),
      member({ name: 'a', type: '2', linkname: '../../x' }),
    )
    const got = await readAll(pieces(tar))
    expect(got.map((e) => [e.path, e.linkTarget])).toEqual([
      ['../x', null],
      ['/etc/x', null],
      ['a', '../../x'],
    ])
  })

  const good = archive(member({ name: 'a.txt' }, 'hello'), member({ name: 'b.txt' }, 'world'))
  const bad: Array<[string, () => Buffer, ErrorCode, RegExp]> = [
    [
      'a bad checksum',
      () => {
        const b = Buffer.from(good)
        b[0] = 0x41 // the name changes, the stored checksum does not
        return b
      },
      'bad_request',
      /checksum/,
    ],
    ['a truncated body', () => good.subarray(0, 512 + 3), 'bad_request', /truncated/],
    ['a truncated header', () => good.subarray(0, 1024 + 100), 'bad_request', /truncated/],
    ['no end-of-archive marker', () => good.subarray(0, 2048), 'bad_request', /end-of-archive/],
    ['an empty body', () => Buffer.alloc(0), 'bad_request', /empty/],
    [
      'gzip',
      () => Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(1020)]),
      'bad_request',
      /gzip/,
    ],
    [
      'a 2 MiB pax header',
      () => archive(member({ name: 'x', type: 'x' }, paxBody({ comment: 'c'.repeat(2 * 1024 * 1024) }))),
      'bad_request',
      /extension header/,
    ],
    [
      'a 2 MiB GNU long name',
      () => archive(member({ name: '././@LongLink', type: 'L' }, 'n'.repeat(2 * 1024 * 1024))),
      'bad_request',
      /extension header/,
    ],
    [
      'endless extension headers',
      () =>
        archive(...Array.from({ length: 20 }, () => member({ name: 'x', type: 'x' }, paxBody({ a: 'b' })))),
      'bad_request',
      /in a row/,
    ],
    [
      'an extension header with no member',
      () => archive(member({ name: 'x', type: 'x' }, paxBody({ path: 'p' }))),
      'bad_request',
      /without a member/,
    ],
    [
      'a malformed pax record',
      () => archive(member({ name: 'x', type: 'x' }, '99 path=p\n'), member({ name: 'f' })),
      'bad_request',
      /pax/,
    ],
    [
      'a non-octal size',
      () => {
        const h = header({ name: 'f' })
        h.write('12z45678901\0', 124, 'latin1')
        return archive(withChecksum(h))
      },
      'bad_request',
      /size/,
    ],
    [
      'a name that is not UTF-8',
      () => archive(withChecksum(header({ name: 'x' }).fill(0xff, 0, 3))),
      'invalid_path',
      /UTF-8/,
    ],
  ]
  for (const [what, make, code, message] of bad) {
    it(`refuses ${what}`, async () => {
      const err = await errorOf(readAll(pieces(make(), 2, 700)))
      expect(err.code).toBe(code)
      expect(err.message).toMatch(message)
    })
  }

  it('honours a lower extension limit, and closes the source when it stops early', async () => {
    const tar = archive(
      member({ name: 'x', type: 'x' }, paxBody({ path: 'p'.repeat(2000) })),
      member({ name: 'f' }),
    )
    expect((await readAll(pieces(tar))).map((e) => e.path)).toEqual(['p'.repeat(2000)])
    let returned = false
    const src: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => {
        const it = pieces(tar)
        return {
          next: () => it.next(),
          return: async () => {
            returned = true
            return { done: true, value: undefined }
          },
        }
      },
    }
    const limited = await errorOf(
      (async () => {
        for await (const e of readTar(src, { extensionBytesMax: 1024 })) void e
      })(),
    )
    expect(limited.code).toBe('bad_request')
    expect(returned).toBe(true)
  })
})

// ---- the importer on a real Vfs ------------------------------------------------------------

describe('importArchive', () => {
  let t: MemoryTestStore
  let engine: VolumeEngine
  const owner = { uid: 1000, gid: 1000 }
  const small: ArchiveImportLimits = { archiveEntriesMax: 50, fileUploadBytesMax: 4 * 1024 * 1024 }

  beforeAll(async () => {
    t = await openMemoryTestStore()
    engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  })
  afterAll(async () => {
    await engine.close()
    await t.close()
  })

  async function newVfs(): Promise<Vfs> {
    return engine.vfs(TEAM_A, (await engine.create(TEAM_A)).id)
  }

  /** Every entry under `ino`: path, mode, size, mtime, and a content hash or link target. */
  async function tree(vfs: Vfs, ino = ROOT_INO, prefix = ''): Promise<string[]> {
    const out: string[] = []
    for (const e of await vfs.readdir(ino, null, 1000)) {
      const a = await vfs.getattr(e.ino)
      const p = `${prefix}/${e.name.toString()}`
      let what = ''
      if (isLnk(a.mode)) what = `-> ${(await vfs.readlink(e.ino)).toString()}`
      else if (isReg(a.mode))
        what = createHash('sha256')
          .update(await vfs.read(e.ino, 0, a.size))
          .digest('hex')
          .slice(0, 16)
      out.push(`${p} ${a.mode.toString(8)} ${a.size} ${a.mtimeNs} ${what}`)
      if (isDir(a.mode)) out.push(...(await tree(vfs, e.ino, p)))
    }
    return out
  }

  const dest = [Buffer.from('dest')]
  const run = (vfs: Vfs, tar: Buffer, limits?: ArchiveImportLimits): Promise<unknown> =>
    importArchive(vfs, dest, pieces(tar, 4), owner, limits)

  it('extracts a GNU tar archive with modes, mtimes, links and a 3 MiB file', async () => {
    const vfs = await newVfs()
    const xy = [Buffer.from('x'), Buffer.from('y')]
    const result = await importArchive(vfs, xy, pieces(tarOf(longTree, 'gnu')), owner)
    // ./ is the destination itself (not counted); hello.txt is a hard link to hard.
    expect(result).toEqual({ files: 7, directories: 4, symlinks: 2, bytes: BIG_BYTES + 12 + 18 + 5 + 10 })
    const lines = await tree(vfs)
    expect(lines.some((l) => l.includes('.s0-import-'))).toBe(false)
    const byPath = new Map(lines.map((l) => [l.split(' ')[0] as string, l.split(' ')]))
    const big = byPath.get('/x/y/big.bin')
    expect(big?.slice(1, 4)).toEqual(['100644', String(BIG_BYTES), `${MTIME_S}000000000`])
    expect(byPath.get('/x/y/bin/run.sh')?.[1]).toBe('100750')
    expect(byPath.get('/x/y/empty')?.slice(1, 3)).toEqual(['100600', '0'])
    expect(byPath.get('/x/y/bin')?.[3]).toBe(`${MTIME_S}000000000`) // set after its contents
    expect(byPath.get('/x/y/link')?.[5]).toBe('hello.txt')
    const dir = await resolve(vfs, xy)
    const hard = await vfs.lookup(dir.ino, Buffer.from('hard'))
    expect(hard.nlink).toBe(2)
    expect((await vfs.lookup(dir.ino, Buffer.from('hello.txt'))).ino).toBe(hard.ino)
    const bigIno = (await vfs.lookup(dir.ino, Buffer.from('big.bin'))).ino
    expect((await vfs.read(bigIno, 0, BIG_BYTES)).equals(prng(BIG_BYTES, 7))).toBe(true)
  })

  it('replaces files and symlinks, merges directories, and refuses a file over a directory', async () => {
    const vfs = await newVfs()
    await run(
      vfs,
      archive(
        member({ name: 'keep.txt' }, 'keep'),
        member({ name: 'd/old.txt' }, 'old'),
        member({ name: 'f' }, 'v1'),
        member({ name: 's', type: '2', linkname: 'f' }),
      ),
    )
    const result = await run(
      vfs,
      archive(
        member({ name: 'f' }, 'v2'),
        member({ name: 'd/', type: '5', mode: 0o700 }),
        member({ name: 'd/new.txt' }, 'new'),
        member({ name: 's/', type: '5', mode: 0o755 }), // a directory where the volume has a symlink
        member({ name: 's/in.txt' }, 'in'),
        member({ name: 'dup' }, 'first'),
        member({ name: 'dup' }, 'second'), // a later entry of the same name wins
      ),
    )
    expect(result).toEqual({ files: 5, directories: 2, symlinks: 0, bytes: 2 + 3 + 2 + 5 + 6 })
    const lines = (await tree(vfs)).map((l) => l.split(' ')).map((p) => `${p[0]} ${p[1]} ${p[2]}`)
    expect(lines).toEqual([
      '/dest 40755 0',
      '/dest/d 40700 0',
      '/dest/d/new.txt 100644 3',
      '/dest/d/old.txt 100644 3',
      '/dest/dup 100644 6',
      '/dest/f 100644 2',
      '/dest/keep.txt 100644 4',
      '/dest/s 40755 0',
      '/dest/s/in.txt 100644 2',
    ])
    const before = await tree(vfs)
    const err = await errorOf(
      run(vfs, archive(member({ name: 'z' }, 'z'), member({ name: 'd' }, 'file over a dir'))),
    )
    expect(err.code).toBe('path_not_file')
    expect(await tree(vfs)).toEqual(before)
  })

  const hostile: Array<[string, Buffer, RegExp]> = [
    [
      'a ".." entry',
      archive(member({ name: 'ok.txt' }, 'x'), member({ name: '../x' }, 'x')),
      /"\.\.\/x".*\.\./,
    ],
    ['an absolute entry', archive(member({ name: '/etc/x' }, 'x')), /"\/etc\/x".*absolute/],
    ['a nested ".." entry', archive(member({ name: 'a/../../x' }, 'x')), /\.\./],
    [
      'a symlink out of the destination',
      archive(member({ name: 'a', type: '2', linkname: '../../x' })),
      /"a".*outside/,
    ],
    [
      'a nested symlink out',
      archive(member({ name: 'p/q/a', type: '2', linkname: '../../../x' })),
      /outside/,
    ],
    ['an absolute symlink', archive(member({ name: 'a', type: '2', linkname: '/etc/passwd' })), /absolute/],
    [
      'a symlink chain out of the destination',
      archive(
        member({ name: 'x/l', type: '2', linkname: '..' }), // inside on its own
        member({ name: 'y', type: '2', linkname: 'x/l/..' }), // inside lexically, outside through x/l
      ),
      /"y".*outside/,
    ],
    [
      'a hard link to a symlink that escapes from its new place',
      archive(
        member({ name: 'd/l', type: '2', linkname: '../f' }),
        member({ name: 'l2', type: '1', linkname: 'd/l' }),
      ),
      /"l2".*outside/,
    ],
    [
      'a hard link outside the archive',
      archive(member({ name: 'h', type: '1', linkname: 'keep.txt' })),
      /"h".*hard link/,
    ],
    [
      'a hard link out of the destination',
      archive(member({ name: 'h', type: '1', linkname: '../etc/passwd' })),
      /\.\./,
    ],
    [
      'a hard link to a directory',
      archive(member({ name: 'd/', type: '5' }), member({ name: 'h', type: '1', linkname: 'd' })),
      /directory/,
    ],
    [
      'an entry through a symlink',
      archive(member({ name: 'l', type: '2', linkname: 'sub' }), member({ name: 'l/x' }, 'x')),
      /not a directory/,
    ],
    [
      'a 256-byte name',
      archive(member({ name: 'x', type: 'x' }, paxBody({ path: 'n'.repeat(256) })), member({ name: 'x' })),
      /255/,
    ],
    [
      'a NUL in a pax path',
      archive(member({ name: 'x', type: 'x' }, paxBody({ path: 'a\0b' })), member({ name: 'x' })),
      /NUL/,
    ],
    [
      'a file replacing a directory of the archive',
      archive(member({ name: 'd/f' }, 'x'), member({ name: 'd' }, 'x')),
      /replaces a directory/,
    ],
  ]
  for (const [what, tar, message] of hostile) {
    it(`refuses ${what} and changes nothing`, async () => {
      const vfs = await newVfs()
      await run(vfs, archive(member({ name: 'keep.txt' }, 'keep'), member({ name: 'sub/', type: '5' })))
      const before = await tree(vfs)
      const err = await errorOf(run(vfs, tar))
      expect(err.code).toBe('invalid_path')
      expect(err.message).toMatch(message)
      expect(await tree(vfs)).toEqual(before)
    })
  }

  it('skips devices and FIFOs, and counts them nowhere', async () => {
    const vfs = await newVfs()
    const result = await run(
      vfs,
      archive(
        member({ name: 'fifo', type: '6' }),
        member({ name: 'dev', type: '3' }),
        member({ name: 'f' }, 'x'),
      ),
    )
    expect(result).toEqual({ files: 1, directories: 0, symlinks: 0, bytes: 1 })
    expect((await tree(vfs)).map((l) => l.split(' ')[0])).toEqual(['/dest', '/dest/f'])
  })

  it('refuses tar bombs (entries, bytes) and a destination that is a file, changing nothing', async () => {
    const vfs = await newVfs()
    await run(vfs, archive(member({ name: 'keep.txt' }, 'keep')))
    const before = await tree(vfs)
    const many = archive(...Array.from({ length: 51 }, (_, k) => member({ name: `f${k}` })))
    expect((await errorOf(run(vfs, many, small))).code).toBe('quota_exceeded')
    const big = archive(
      member({ name: 'a' }, prng(3 * 1024 * 1024, 1)),
      member({ name: 'b' }, prng(2 * 1024 * 1024, 2)),
    )
    expect((await errorOf(run(vfs, big, small))).code).toBe('file_too_large')
    const onFile = await errorOf(
      importArchive(vfs, [Buffer.from('dest'), Buffer.from('keep.txt')], pieces(good()), owner),
    )
    expect(onFile.code).toBe('path_not_directory')
    expect(await tree(vfs)).toEqual(before)
  })
})

function good(): Buffer {
  return archive(member({ name: 'a.txt' }, 'hello'))
}
