// The sync suite's file trees, deterministic from a seed: the mixed 20k tree (mostly small text
// files, some 64 KiB-4 MiB binaries, a few 16-64 MiB ones; ~1 GiB at full scale), the 100k tree
// of small text files, and the scattered in-place edits that change 1 % of a tree's bytes.
// Every file's content is its own (per-file generator): no tool gains from cross-file dedup.
import { mkdir, open } from 'node:fs/promises'
import path from 'node:path'
import { Rng } from '../corpus.js'
import { KiB, MiB } from '../lib.js'

export type FileKind = 'text' | 'binary'

export interface TreeFile {
  /** Relative path, '/'-separated, no leading slash. */
  readonly path: string
  readonly kind: FileKind
  readonly size: number
  /** Index in the tree: with the tree's seed, it determines the content. */
  readonly index: number
}

export interface TreeSpec {
  readonly files: readonly TreeFile[]
  readonly bytes: number
  readonly seed: number
}

const FILES_PER_DIR = 100
const LEAF_DIRS_PER_TOP = 32
const TEXT_BYTES = { min: 100, max: 16 * KiB }
const MEDIUM_BYTES = { min: 64 * KiB, max: 4 * MiB }
const LARGE_BYTES = { min: 16 * MiB, max: 64 * MiB }
/** Shares of the 20k tree's files: 600 medium and 12 large of 20,000 (≈ 1 GiB in all). */
const MEDIUM_SHARE = 0.03
const LARGE_SHARE = 0.0006
const WRITE_PIECE_BYTES = 1 * MiB
const WRITERS = 8
const TEXT_EXTENSIONS = ['ts', 'md', 'json', 'txt', 'py', 'go'] as const

function filePath(index: number, kind: FileKind): string {
  const leaf = Math.floor(index / FILES_PER_DIR)
  const ext = kind === 'binary' ? 'bin' : TEXT_EXTENSIONS[index % TEXT_EXTENSIONS.length]
  return `d${Math.floor(leaf / LEAF_DIRS_PER_TOP)}/s${leaf % LEAF_DIRS_PER_TOP}/f${index}.${ext}`
}

function spec(seed: number, sizes: Array<{ kind: FileKind; size: number }>): TreeSpec {
  const files = sizes.map((s, index) => ({ ...s, index, path: filePath(index, s.kind) }))
  return { files, bytes: files.reduce((n, f) => n + f.size, 0), seed }
}

/** The mixed tree: exact counts of each size class, placed at shuffled positions. */
export function mixedTreeSpec(count: number, seed: number): TreeSpec {
  const rng = new Rng(seed)
  const large = Math.round(count * LARGE_SHARE)
  const medium = Math.round(count * MEDIUM_SHARE)
  type SizeClass = 'text' | 'medium' | 'large'
  const classes: SizeClass[] = []
  for (let i = 0; i < count; i++) classes.push(i < large ? 'large' : i < large + medium ? 'medium' : 'text')
  for (let i = classes.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1)
    const t = classes[i] as SizeClass
    classes[i] = classes[j] as SizeClass
    classes[j] = t
  }
  return spec(
    seed,
    classes.map((c) => {
      if (c === 'text') return { kind: 'text', size: rng.logInt(TEXT_BYTES.min, TEXT_BYTES.max) }
      const r = c === 'medium' ? MEDIUM_BYTES : LARGE_BYTES
      return { kind: 'binary', size: rng.logInt(r.min, r.max) }
    }),
  )
}

/** The small-file tree (100 B-16 KiB text, like a source checkout). */
export function smallTreeSpec(count: number, seed: number): TreeSpec {
  const rng = new Rng(seed)
  const sizes = Array.from({ length: count }, () => ({
    kind: 'text' as const,
    size: rng.logInt(TEXT_BYTES.min, TEXT_BYTES.max),
  }))
  return spec(seed, sizes)
}

// A vocabulary of code-ish words: text that looks and compresses like a source tree.
const WORDS = (() => {
  const rng = new Rng(0x70c4b)
  const letters = 'abcdefghijklmnopqrstuvwxyz_'
  return Array.from({ length: 512 }, () => {
    let w = ''
    for (let n = rng.int(2, 11); n > 0; n--) w += letters[rng.int(0, letters.length)]
    return Buffer.from(w)
  })
})()

/** Fills `buf` with words, spaces and newlines from `rng`. */
export function fillText(rng: Rng, buf: Buffer): void {
  let off = 0
  while (off < buf.length) {
    const r = rng.next()
    const word = WORDS[r & 511] as Buffer
    off += word.copy(buf, off)
    if (off < buf.length) buf[off++] = (r >>> 9) % 9 === 0 ? 0x0a : 0x20
  }
}

function contentRng(tree: TreeSpec, f: TreeFile): Rng {
  return new Rng((Math.imul(tree.seed, 0x9e3779b1) ^ Math.imul(f.index + 1, 0x85ebca6b)) >>> 0)
}

async function writeOne(dir: string, tree: TreeSpec, f: TreeFile, buf: Buffer): Promise<void> {
  const rng = contentRng(tree, f)
  const fh = await open(path.join(dir, f.path), 'w')
  try {
    for (let off = 0; off < f.size; off += buf.length) {
      const piece = buf.subarray(0, Math.min(buf.length, f.size - off))
      if (f.kind === 'text') fillText(rng, piece)
      else rng.fill(piece)
      await fh.write(piece)
    }
  } finally {
    await fh.close()
  }
}

/** Writes the tree under `dir` (WRITERS files at a time). */
export async function writeTree(dir: string, tree: TreeSpec): Promise<void> {
  const dirs = new Set(tree.files.map((f) => path.dirname(f.path)))
  for (const d of dirs) await mkdir(path.join(dir, d), { recursive: true })
  let next = 0
  const worker = async (): Promise<void> => {
    // Zero-offset, word-aligned: Rng.fill writes whole words.
    const buf = Buffer.allocUnsafeSlow(WRITE_PIECE_BYTES)
    while (next < tree.files.length) await writeOne(dir, tree, tree.files[next++] as TreeFile, buf)
  }
  await Promise.all(Array.from({ length: WRITERS }, worker))
}

export interface Edit {
  file: TreeFile
  offset: number
  length: number
}

export interface EditStats {
  edits: number
  filesTouched: number
  bytesWritten: number
  /** Edits and bytes in text files, in binaries under 16 MiB, and in larger ones. */
  byClass: Record<'text' | 'medium' | 'large', { edits: number; bytes: number }>
}

const SCATTERED_EDIT_BYTES = { min: 64, max: 1 * KiB }
const WEIGHTED_EDIT_BYTES = { min: 1 * KiB, max: 16 * KiB }

/**
 * In-place overwrites (sizes unchanged) totalling `fraction` of the tree's bytes. Edits alternate:
 * one in a file picked uniformly (64 B-1 KiB: mostly small files, spread over many) and one at a
 * position picked uniformly over all bytes (1-16 KiB: mostly in the medium and large files).
 */
export function planEdits(tree: TreeSpec, fraction: number, seed: number): Edit[] {
  const rng = new Rng(seed)
  const ends: number[] = []
  let total = 0
  for (const f of tree.files) ends.push((total += f.size))
  const byByte = (pos: number): TreeFile => {
    let lo = 0
    let hi = ends.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if ((ends[mid] as number) > pos) hi = mid
      else lo = mid + 1
    }
    return tree.files[lo] as TreeFile
  }
  const budget = Math.round(tree.bytes * fraction)
  const edits: Edit[] = []
  for (let written = 0; written < budget;) {
    const scattered = edits.length % 2 === 0
    const file = scattered
      ? (tree.files[rng.int(0, tree.files.length)] as TreeFile)
      : byByte(rng.int(0, tree.bytes))
    if (file.size === 0) continue
    const r = scattered ? SCATTERED_EDIT_BYTES : WEIGHTED_EDIT_BYTES
    const length = Math.min(file.size, rng.logInt(r.min, r.max), budget - written)
    const offset = rng.int(0, file.size - length + 1)
    edits.push({ file, offset, length })
    written += length
  }
  return edits
}

/** Applies the edits under `dir` with fresh content of each file's kind. */
export async function applyEdits(dir: string, edits: readonly Edit[], seed: number): Promise<EditStats> {
  const rng = new Rng(seed ^ 0x5a5a5a5a)
  const stats: EditStats = {
    edits: 0,
    filesTouched: new Set(edits.map((e) => e.file.path)).size,
    bytesWritten: 0,
    byClass: { text: { edits: 0, bytes: 0 }, medium: { edits: 0, bytes: 0 }, large: { edits: 0, bytes: 0 } },
  }
  const buf = Buffer.allocUnsafeSlow(WEIGHTED_EDIT_BYTES.max)
  for (const e of edits) {
    const piece = buf.subarray(0, e.length)
    if (e.file.kind === 'text') fillText(rng, piece)
    else rng.fill(piece)
    const fh = await open(path.join(dir, e.file.path), 'r+')
    try {
      await fh.write(piece, 0, piece.length, e.offset)
    } finally {
      await fh.close()
    }
    const cls = e.file.kind === 'text' ? 'text' : e.file.size < LARGE_BYTES.min ? 'medium' : 'large'
    stats.edits++
    stats.bytesWritten += e.length
    stats.byClass[cls].edits++
    stats.byClass[cls].bytes += e.length
  }
  return stats
}

/** Counts and bytes per size class, for the results' detail. */
export function treeStats(tree: TreeSpec): Record<string, { files: number; bytes: number }> {
  const out: Record<string, { files: number; bytes: number }> = {}
  for (const f of tree.files) {
    const cls = f.kind === 'text' ? 'text' : f.size < LARGE_BYTES.min ? 'medium' : 'large'
    const s = (out[cls] ??= { files: 0, bytes: 0 })
    s.files++
    s.bytes += f.size
  }
  return out
}
