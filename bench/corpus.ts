// A deterministic corpus shaped like a real workspace, generated from a seed (xoshiro128**):
//  - a source tree of many small text files (1-40 KiB, log-uniform) built from a Zipf-ish token
//    vocabulary, most with a shared licence header, ~4 % exact duplicates (vendored copies);
//  - "binaries" (100 KiB-5 MiB, log-uniform) made of segments: fresh random bytes, low-entropy
//    tables, repeats of earlier segments of the same file, blocks of a shared "library" pool;
//  - big incompressible files (4-64 MiB of random bytes).
// Byte shares: source 20 %, binaries 35 %, incompressible 45 %.
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { KiB, MiB } from './lib.js'

export type FileKind = 'source' | 'binary' | 'random'

export interface CorpusFile {
  /** Relative path, '/'-separated. */
  readonly path: string
  readonly kind: FileKind
  data: Buffer
}

export interface Corpus {
  readonly files: CorpusFile[]
  readonly bytes: number
  readonly seed: number
}

const SHARES: Record<FileKind, number> = { source: 0.2, binary: 0.35, random: 0.45 }

/** xoshiro128** seeded through splitmix32: fast, deterministic, 32-bit arithmetic only. */
export class Rng {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    let s = seed >>> 0
    const split = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
      return (z ^ (z >>> 16)) >>> 0
    }
    this.a = split()
    this.b = split()
    this.c = split()
    this.d = split()
  }

  /** A uniform uint32. */
  next(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0
    const t = this.b << 9
    this.c ^= this.a
    this.d ^= this.b
    this.b ^= this.c
    this.a ^= this.d
    this.c ^= t
    this.d = rotl(this.d, 11)
    return result
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 4294967296
  }

  /** Uniform integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo))
  }

  /** Log-uniform integer in [lo, hi). */
  logInt(lo: number, hi: number): number {
    return Math.floor(Math.exp(Math.log(lo) + this.float() * (Math.log(hi) - Math.log(lo))))
  }

  /** Fills `buf` with random bytes (4 at a time where aligned). */
  fill(buf: Uint8Array): void {
    let i = 0
    if (buf.byteOffset % 4 === 0) {
      const words = new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2)
      for (let w = 0; w < words.length; w++) words[w] = this.next()
      i = words.length * 4
    }
    for (; i < buf.length; i++) buf[i] = this.next() & 0xff
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0
}

/** A new zero-offset buffer (so Rng.fill can write whole words). */
function alloc(size: number): Buffer {
  return Buffer.allocUnsafeSlow(size)
}

// ---------------------------------------------------------------------------------------------
// Source files

const KEYWORDS = [
  'const',
  'let',
  'function',
  'return',
  'import',
  'export',
  'from',
  'if',
  'else',
  'for',
  'while',
  'await',
  'async',
  'interface',
  'type',
  'class',
  'new',
  'this',
  'private',
  'readonly',
  'public',
  'static',
  'extends',
  'implements',
  'string',
  'number',
  'boolean',
  'undefined',
  'null',
  'true',
  'false',
  'throw',
  'try',
  'catch',
  'finally',
  'switch',
  'case',
  'break',
  'continue',
  'default',
  'void',
  'Promise',
  'Buffer',
  'Map',
  'Set',
]
const PUNCT = [
  '(',
  ')',
  '{',
  '}',
  '[',
  ']',
  '=',
  '=>',
  ':',
  ',',
  '.',
  '+',
  '-',
  '*',
  '===',
  '!==',
  '&&',
  '||',
  '?',
  '<',
  '>',
]
const SYLLABLES = [
  'get',
  'set',
  'read',
  'write',
  'chunk',
  'pack',
  'store',
  'hash',
  'file',
  'node',
  'tree',
  'key',
  'value',
  'index',
  'count',
  'size',
  'offset',
  'buf',
  'data',
  'team',
  'root',
  'span',
  'open',
  'close',
  'flush',
  'seal',
  'cache',
  'log',
  'err',
  'opts',
  'conf',
  'path',
  'dir',
  'name',
  'list',
  'item',
  'entry',
  'ref',
  'id',
  'sum',
  'max',
  'min',
  'len',
  'pos',
]

const LICENCE = Buffer.from(
  '// Copyright (c) The s0 bench authors. Licensed under the Apache License, Version 2.0 (the "License");\n' +
    '// you may not use this file except in compliance with the License. You may obtain a copy at\n' +
    '//     http://www.apache.org/licenses/LICENSE-2.0\n' +
    '// Unless required by applicable law or agreed to in writing, software is distributed "AS IS".\n\n',
  'utf8',
)

function buildVocabulary(rng: Rng): Uint8Array[] {
  const words: string[] = [...KEYWORDS, ...PUNCT]
  for (let i = 0; i < 1500; i++) {
    const n = rng.int(1, 4)
    let w = ''
    for (let j = 0; j < n; j++) {
      const s = SYLLABLES[rng.int(0, SYLLABLES.length)] as string
      w += j === 0 ? s : s[0]?.toUpperCase() + s.slice(1)
    }
    if (rng.float() < 0.2) w += String(rng.int(0, 100))
    words.push(w)
  }
  return words.map((w) => Buffer.from(w, 'utf8'))
}

function sourceFile(rng: Rng, vocab: Uint8Array[], size: number): Buffer {
  const buf = alloc(size)
  let pos = 0
  if (rng.float() < 0.7) {
    const n = Math.min(size, LICENCE.length)
    LICENCE.copy(buf, 0, 0, n)
    pos = n
  }
  let indent = 0
  while (pos < size) {
    // One line: indentation, 3-12 Zipf-ish tokens, a terminator.
    for (let i = 0; i < indent * 2 && pos < size; i++) buf[pos++] = 0x20
    const tokens = rng.int(3, 13)
    for (let t = 0; t < tokens && pos < size; t++) {
      const u = rng.float()
      const tok = vocab[Math.floor(u * u * u * vocab.length)] as Uint8Array
      for (let k = 0; k < tok.length && pos < size; k++) buf[pos++] = tok[k] as number
      if (pos < size) buf[pos++] = 0x20
    }
    const r = rng.float()
    const end = r < 0.15 && indent < 6 ? ' {\n' : r < 0.3 && indent > 0 ? '\n}\n' : '\n'
    if (end === ' {\n') indent++
    else if (end === '\n}\n') indent--
    for (let k = 0; k < end.length && pos < size; k++) buf[pos++] = end.charCodeAt(k)
  }
  return buf
}

// ---------------------------------------------------------------------------------------------
// Binaries

function libraryPool(rng: Rng): Buffer[] {
  const pool: Buffer[] = []
  for (let i = 0; i < 48; i++) {
    const b = alloc(rng.logInt(32 * KiB, 768 * KiB))
    rng.fill(b)
    pool.push(b)
  }
  return pool
}

function binaryFile(rng: Rng, pool: Buffer[], size: number): Buffer {
  const buf = alloc(size)
  const segments: Array<[number, number]> = []
  let pos = 0
  while (pos < size) {
    const len = Math.min(size - pos, rng.logInt(4 * KiB, 384 * KiB))
    const r = rng.float()
    const dst = buf.subarray(pos, pos + len)
    if (r < 0.45 || (r < 0.6 && segments.length === 0)) {
      rng.fill(dst) // compiled code: high entropy
    } else if (r < 0.65) {
      // Tables and padding: mostly zero, a few small values.
      dst.fill(0)
      for (let i = 0; i < len; i += rng.int(1, 16)) dst[i] = rng.next() & 0x3f
    } else if (r < 0.8 && segments.length > 0) {
      // Repeat of an earlier segment of this file.
      const [s, l] = segments[rng.int(0, segments.length)] as [number, number]
      let n = 0
      while (n < len) {
        const c = Math.min(l, len - n)
        buf.copy(dst, n, s, s + c)
        n += c
      }
    } else {
      // A block of the shared library (statically linked code, embedded assets).
      const lib = pool[rng.int(0, pool.length)] as Buffer
      let n = 0
      while (n < len) {
        const c = Math.min(lib.length, len - n)
        lib.copy(dst, n, 0, c)
        n += c
      }
    }
    segments.push([pos, len])
    pos += len
  }
  return buf
}

// ---------------------------------------------------------------------------------------------

/** Generates about `totalBytes` of files (the last file of each kind is trimmed to fit). */
export function generateCorpus(totalBytes: number, seed = 0x5eed): Corpus {
  const rng = new Rng(seed)
  const vocab = buildVocabulary(rng)
  const pool = libraryPool(rng)
  const files: CorpusFile[] = []

  // Source tree: src/pNN/dNN/fNNN.ts, ~40 files per directory; some vendored duplicates.
  const sourceBudget = Math.floor(totalBytes * SHARES.source)
  const sources: Buffer[] = []
  for (let used = 0, i = 0; used < sourceBudget; i++) {
    const dir = `src/p${String(Math.floor(i / 1600)).padStart(2, '0')}/d${String(Math.floor(i / 40) % 40).padStart(2, '0')}`
    let data: Buffer
    if (sources.length > 20 && rng.float() < 0.04) {
      data = Buffer.from(sources[rng.int(0, sources.length)] as Buffer) // an exact copy elsewhere in the tree
    } else {
      data = sourceFile(rng, vocab, Math.min(rng.logInt(1 * KiB, 40 * KiB), Math.max(1, sourceBudget - used)))
      sources.push(data)
    }
    files.push({ path: `${dir}/f${String(i).padStart(5, '0')}.ts`, kind: 'source', data })
    used += data.length
  }

  const binaryBudget = Math.floor(totalBytes * SHARES.binary)
  const binDirs = ['bin', 'lib', 'build/out', 'node_modules/.bin', 'vendor/lib']
  for (let used = 0, i = 0; used < binaryBudget; i++) {
    const size = Math.min(rng.logInt(100 * KiB, 5 * MiB), Math.max(1, binaryBudget - used))
    const dir = binDirs[i % binDirs.length] as string
    files.push({
      path: `${dir}/b${String(i).padStart(4, '0')}.bin`,
      kind: 'binary',
      data: binaryFile(rng, pool, size),
    })
    used += size
  }

  const randomBudget = totalBytes - sourceBudget - binaryBudget
  for (let used = 0, i = 0; used < randomBudget; i++) {
    const size = Math.min(rng.int(4 * MiB, 64 * MiB), randomBudget - used)
    const data = alloc(size)
    rng.fill(data)
    files.push({ path: `data/blob${String(i).padStart(3, '0')}.dat`, kind: 'random', data })
    used += size
  }

  return { files, bytes: files.reduce((s, f) => s + f.data.length, 0), seed }
}

/** Reads one byte of every page of every file, so timed loops do not pay page faults. */
export function pretouch(files: readonly { data: Buffer }[]): number {
  let x = 0
  for (const f of files) for (let i = 0; i < f.data.length; i += 4096) x ^= f.data[i] as number
  return x
}

export async function writeCorpus(dir: string, files: readonly CorpusFile[]): Promise<void> {
  const made = new Set<string>()
  for (const f of files) {
    const file = path.join(dir, ...f.path.split('/'))
    const d = path.dirname(file)
    if (!made.has(d)) {
      await mkdir(d, { recursive: true })
      made.add(d)
    }
    await writeFile(file, f.data)
  }
}

export interface Modification {
  file: CorpusFile
  before: Buffer
  insertedAt: number
  insertedBytes: number
}

/**
 * Picks `fraction` of the files of each kind (at least one per kind) and inserts 64-512 bytes in
 * the middle of each, in place (file.data is replaced). Deterministic for a seed.
 */
export function modifyFiles(corpus: Corpus, fraction: number, seed = 0xed17): Modification[] {
  const rng = new Rng(seed)
  const out: Modification[] = []
  for (const kind of ['source', 'binary', 'random'] as const) {
    const ofKind = corpus.files.filter((f) => f.kind === kind)
    const n = Math.min(ofKind.length, Math.max(1, Math.round(ofKind.length * fraction)))
    const picked = new Set<number>()
    while (picked.size < n) picked.add(rng.int(0, ofKind.length))
    for (const i of [...picked].sort((a, b) => a - b)) {
      const file = ofKind[i] as CorpusFile
      const before = file.data
      const at = before.length >> 1
      const insert = alloc(rng.int(64, 513))
      if (kind === 'source') for (let k = 0; k < insert.length; k++) insert[k] = 0x61 + (rng.next() % 26)
      else rng.fill(insert)
      file.data = Buffer.concat([before.subarray(0, at), insert, before.subarray(at)])
      out.push({ file, before, insertedAt: at, insertedBytes: insert.length })
    }
  }
  return out
}

/** About `bytes` of the corpus with the same mix: the first files of each kind, in proportion. */
export function sliceCorpus(corpus: Corpus, bytes: number): CorpusFile[] {
  const share = Math.min(1, bytes / corpus.bytes)
  const out: CorpusFile[] = []
  for (const kind of ['source', 'binary', 'random'] as const) {
    const ofKind = corpus.files.filter((f) => f.kind === kind)
    const want = share * ofKind.reduce((s, f) => s + f.data.length, 0)
    let got = 0
    for (const f of ofKind) {
      if (got >= want) break
      out.push(f)
      got += f.data.length
    }
  }
  return out
}

export function kindStats(files: readonly CorpusFile[]): Record<FileKind, { files: number; bytes: number }> {
  const s: Record<FileKind, { files: number; bytes: number }> = {
    source: { files: 0, bytes: 0 },
    binary: { files: 0, bytes: 0 },
    random: { files: 0, bytes: 0 },
  }
  for (const f of files) {
    s[f.kind].files++
    s[f.kind].bytes += f.data.length
  }
  return s
}
