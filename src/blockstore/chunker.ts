// FastCDC content-defined chunking (Gear hash, normalised chunking, min-size skip). Boundaries
// depend only on content, so an insert moves at most the chunks around it. The gear table and
// masks are fixed forever: changing them changes every boundary (and dedup with old data).
import { assert } from '../core/assert.js'
import { limits } from '../core/limits.js'
import { native, type NativeAddon } from '../core/native.js'

/**
 * The C gear loop (native/cdc.c, built by `npm install` with node-gyp), when it loaded. Both
 * implementations cut at the same places (a test checks it); JavaScript is the fallback.
 */
export const nativeCdc: Pick<NativeAddon, 'cuts'> | undefined =
  process.env['S0_NATIVE_CDC'] === '0' ? undefined : native

export interface ChunkerParams {
  minBytes: number
  avgBytes: number
  maxBytes: number
}

export const DEFAULT_CHUNKER_PARAMS: ChunkerParams = {
  minBytes: limits.chunkSizeMinBytes,
  avgBytes: limits.chunkSizeAvgBytes,
  maxBytes: limits.chunkSizeMaxBytes,
}

/** 256 pseudo-random 32-bit values from xorshift32 with a fixed seed (FORMAT.md, "Chunking"). */
export const GEAR: Int32Array = (() => {
  const table = new Int32Array(256)
  let x = 0x2545f491
  for (let i = 0; i < 256; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    table[i] = x | 0
  }
  return table
})()

const topBits = (k: number): number => (((1 << k) - 1) << (32 - k)) | 0

export interface Masks {
  hard: number
  easy: number
}

export function masksFor(avgBytes: number): Masks {
  const bits = Math.round(Math.log2(avgBytes))
  return { hard: topBits(bits + 1), easy: topBits(bits - 1) }
}

/**
 * The exclusive end of the chunk that starts at `start`, looking no further than `end`.
 * Kept a top-level function of explicit arguments: V8 compiles it once for all parameters
 * (a closure over per-instance constants runs ~2x slower after the first instance).
 */
export function cutPoint(
  buf: Uint8Array,
  start: number,
  end: number,
  min: number,
  avg: number,
  max: number,
  gear: Int32Array,
  hard: number,
  easy: number,
): number {
  const len = Math.min(end - start, max)
  if (len <= min) return start + len
  const normalEnd = start + Math.min(avg, len)
  const stop = start + len
  let h = 0
  let i = start + min
  for (; i < normalEnd; i++) {
    h = ((h << 1) + (gear[buf[i] as number] as number)) | 0
    if ((h & hard) === 0) return i + 1
  }
  for (; i < stop; i++) {
    h = ((h << 1) + (gear[buf[i] as number] as number)) | 0
    if ((h & easy) === 0) return i + 1
  }
  return stop
}

/**
 * Streaming chunker over a reused staging buffer. `feed` copies in as much input as fits and,
 * once the buffer is full, returns every chunk whose end is certain; `end` returns the rest.
 * Returned chunks are views of the staging buffer, valid until the next `feed` or `end`.
 */
export class StreamingChunker {
  private readonly p: ChunkerParams
  private readonly masks: Masks
  private staging: Buffer
  private readonly stagingMax: number
  private used = 0
  private cut = 0 // bytes before this offset were returned as chunks; compacted on the next feed
  private ends: Uint32Array | undefined

  /**
   * `sharedFromBytes`: once the staging buffer grows to this size it lives in a
   * SharedArrayBuffer, so a hash pool worker can cut it in place (see ChunkWriteSession).
   */
  constructor(
    params: ChunkerParams = DEFAULT_CHUNKER_PARAMS,
    stagingBytes = 4 * params.maxBytes,
    private readonly sharedFromBytes = Infinity,
  ) {
    assert(
      params.minBytes > 0 && params.minBytes < params.avgBytes && params.avgBytes < params.maxBytes,
      'chunker params',
    )
    assert(stagingBytes >= 2 * params.maxBytes, 'staging must hold two max chunks')
    this.p = params
    this.masks = masksFor(params.avgBytes)
    this.stagingMax = stagingBytes
    // Grown on demand up to stagingMax: a writer of a 1 KiB file should not cost 16 MiB.
    this.staging = Buffer.allocUnsafe(0)
  }

  private ensureRoom(want: number): void {
    if (this.staging.length >= Math.min(this.stagingMax, want)) return
    let size = Math.max(64 * 1024, this.staging.length * 2)
    while (size < want && size < this.stagingMax) size *= 2
    const bytes = Math.min(this.stagingMax, size)
    // Shared staging comes from the free list when it has a large enough buffer: fresh shared
    // memory is zeroed and faulted in, ~2x a large file's size while the staging grows.
    const next =
      bytes < this.sharedFromBytes
        ? Buffer.allocUnsafe(bytes)
        : (takeSharedStaging(bytes) ?? Buffer.from(new SharedArrayBuffer(bytes)))
    this.staging.copy(next, 0, 0, this.used)
    this.staging = next
  }

  feed(data: Uint8Array): { consumed: number; chunks: Buffer[] } {
    const consumed = this.fill(data)
    return { consumed, chunks: this.full ? this.cutChunks(false) : [] }
  }

  /**
   * The first half of `feed`: copies in as much as fits and cuts nothing. Once `full`, the caller
   * cuts the staged bytes, here (`cutReady`) or elsewhere (`applyCuts`), before filling again.
   */
  fill(data: Uint8Array): number {
    this.compact()
    this.ensureRoom(this.used + data.length)
    const consumed = Math.min(data.length, this.staging.length - this.used)
    this.staging.set(data.subarray(0, consumed), this.used)
    this.used += consumed
    return consumed
  }

  /**
   * Hands a shared staging buffer back for the next writer. Only once nothing uses the chunks
   * this chunker returned (they are views of it); the chunker is empty and reusable after.
   */
  release(): void {
    assert(this.used === 0, 'release with staged bytes')
    if (this.staging.buffer instanceof SharedArrayBuffer) giveSharedStaging(this.staging)
    // A buffer replaced while growing is not given back: it is small, and views may remain.
    this.staging = Buffer.allocUnsafe(0)
  }

  /** The staging buffer is full: its certain chunks must be cut before more can come in. */
  get full(): boolean {
    return this.used === this.stagingMax
  }

  /** Moves the uncut bytes to the front of `stagingBuffer`; returns how many there are. */
  stage(): number {
    this.compact()
    return this.used
  }

  get stagingBuffer(): Buffer {
    return this.staging
  }

  /** The chunks of a full staging buffer whose end is certain (as `feed` returns them). */
  cutReady(): Buffer[] {
    return this.cutChunks(false)
  }

  /**
   * Takes cut ends computed elsewhere over [0, stage()) (the same cuts `cutReady`, or `end`
   * when `final`, would make) and returns the chunks as views; `final` also empties the chunker.
   */
  applyCuts(ends: Uint32Array, count: number, final: boolean): Buffer[] {
    const out: Buffer[] = []
    let start = 0
    for (let k = 0; k < count; k++) {
      const end = ends[k] as number
      assert(end > start && end <= this.used, 'cut ends must increase within the staged bytes')
      out.push(this.staging.subarray(start, end))
      start = end
    }
    if (final) {
      assert(start === this.used, 'a final cut takes every staged byte')
      this.used = 0
      this.cut = 0
    } else this.cut = start
    return out
  }

  /** The remaining chunks (the last may be short); the chunker is empty and reusable after. */
  end(): Buffer[] {
    this.compact()
    const chunks = this.cutChunks(true)
    this.used = 0
    this.cut = 0
    return chunks
  }

  private compact(): void {
    if (this.cut === 0) return
    this.staging.copyWithin(0, this.cut, this.used)
    this.used -= this.cut
    this.cut = 0
  }

  private cutChunks(final: boolean): Buffer[] {
    const { minBytes, avgBytes, maxBytes } = this.p
    const buf = this.staging
    const out: Buffer[] = []
    let start = 0
    if (nativeCdc) {
      this.ends ??= new Uint32Array(Math.ceil(this.stagingMax / minBytes) + 2)
      const n = nativeCdc.cuts(
        buf,
        this.used,
        final,
        minBytes,
        avgBytes,
        maxBytes,
        GEAR,
        this.masks.hard,
        this.masks.easy,
        this.ends,
      )
      for (let k = 0; k < n; k++) {
        const end = this.ends[k] as number
        out.push(buf.subarray(start, end))
        start = end
      }
      this.cut = start
      return out
    }
    // Without `final`, a chunk is cut only when a full max-size window is visible, so every
    // boundary is the one a single pass over the whole stream would find.
    while (start < this.used && (final || this.used - start >= maxBytes)) {
      const end = cutPoint(
        buf,
        start,
        this.used,
        minBytes,
        avgBytes,
        maxBytes,
        GEAR,
        this.masks.hard,
        this.masks.easy,
      )
      out.push(buf.subarray(start, end))
      start = end
    }
    this.cut = start
    return out
  }
}

// Shared staging buffers no writer uses, at most limits.sharedStagingBytesKeptMax in all.
const freeSharedStaging: Buffer[] = []
let freeSharedStagingBytes = 0

/** The smallest free buffer of at least `bytes` (a power of two, as staging grows). */
function takeSharedStaging(bytes: number): Buffer | undefined {
  let best = -1
  freeSharedStaging.forEach((b, i) => {
    if (b.length >= bytes && (best < 0 || b.length < (freeSharedStaging[best] as Buffer).length)) best = i
  })
  if (best < 0) return undefined
  const b = freeSharedStaging.splice(best, 1)[0] as Buffer
  freeSharedStagingBytes -= b.length
  return b
}

function giveSharedStaging(b: Buffer): void {
  if (freeSharedStagingBytes + b.length > limits.sharedStagingBytesKeptMax) return
  freeSharedStaging.push(b)
  freeSharedStagingBytes += b.length
}

/** Cuts a whole buffer at once; returns [start, end) pairs of views of `data`. */
export function chunkBuffer(
  data: Uint8Array,
  params: ChunkerParams = DEFAULT_CHUNKER_PARAMS,
): Array<[number, number]> {
  const { hard, easy } = masksFor(params.avgBytes)
  const out: Array<[number, number]> = []
  if (nativeCdc) {
    const ends = new Uint32Array(Math.min(65_536, Math.ceil(data.length / params.minBytes) + 2))
    for (let base = 0; base < data.length;) {
      const view = data.subarray(base)
      const n = nativeCdc.cuts(
        view,
        view.length,
        true,
        params.minBytes,
        params.avgBytes,
        params.maxBytes,
        GEAR,
        hard,
        easy,
        ends,
      )
      let start = 0
      for (let k = 0; k < n; k++) {
        const end = ends[k] as number
        out.push([base + start, base + end])
        start = end
      }
      base += start
    }
    return out
  }
  for (let start = 0; start < data.length;) {
    const end = cutPoint(
      data,
      start,
      data.length,
      params.minBytes,
      params.avgBytes,
      params.maxBytes,
      GEAR,
      hard,
      easy,
    )
    out.push([start, end])
    start = end
  }
  return out
}
