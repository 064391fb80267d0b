// Planned reads for restores and exports: every chunk of a request once, in the order that
// costs the fewest GETs. Also the range merging and the verification every ranged read shares.
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { ChunkIndex, ChunkLocation } from './chunk-index.js'
import { hashChunk } from './hash.js'
import type { ObjectStore } from './object-store.js'

/** One chunk of a planned read, with every position of the request that asked for it. */
export interface PlannedChunk {
  readonly hash: Buffer
  /** Often a view of the GET's range buffer: holding it holds the range; copy what you keep. */
  readonly bytes: Buffer
  readonly positions: readonly number[]
}

/** What the chunk store lends a planned read. */
export interface PlanSource {
  index: ChunkIndex
  objects: ObjectStore
  counters: { chunksRead: number; rangeGets: number }
  /** A verified chunk from the caches, or undefined. */
  cached(key: string, hash: Buffer): Promise<Buffer | undefined>
  /** The ordinary read path (locates again), for a pack that moved after planning. */
  refetch(
    teamId: TeamId,
    wanted: Array<{ key: string; hash: Buffer }>,
    opts: { signal?: AbortSignal },
  ): Promise<Map<string, Buffer>>
}

interface PlannedEntry {
  key: string
  hash: Buffer
  loc: ChunkLocation
  positions: number[]
}

interface PlannedRange {
  objectKey: string
  run: PlannedEntry[]
}

/**
 * The plan groups the chunks by pack, sorts each pack's by offset and merges neighbours (gaps <=
 * readCoalesceGapBytes) into ranges of up to restoreRangeMaxBytes, so a pack that writers
 * interleaved several files into is read once, not once per batch of files that needs some of
 * it (restic's restorer plans the same way). Memory: at most restoreRangesInFlightMax ranges;
 * chunks found in the caches come first, and planned chunks are not cached (a restore would
 * evict the working set).
 */
export async function* readPlanned(
  src: PlanSource,
  teamId: TeamId,
  hashes: readonly Buffer[],
  opts: { signal?: AbortSignal },
): AsyncGenerator<PlannedChunk> {
  const wanted = new Map<string, { hash: Buffer; positions: number[] }>()
  hashes.forEach((hash, i) => {
    const hex = hash.toString('hex')
    const w = wanted.get(hex)
    if (w) w.positions.push(i)
    else wanted.set(hex, { hash, positions: [i] })
  })
  const misses: Miss[] = []
  for (const [hex, w] of wanted) {
    const hit = await src.cached(`${teamId}:${hex}`, w.hash)
    if (hit) {
      src.counters.chunksRead += w.positions.length
      yield { hash: w.hash, bytes: hit, positions: w.positions }
    } else misses.push({ hex, ...w })
  }
  const plan = await planRanges(src.index, teamId, misses)
  // A window of ranges in flight; each is yielded whole, in plan order, as it arrives.
  const inflight: Array<Promise<PlannedChunk[]>> = []
  let next = 0
  const start = (): void => {
    const p = fetchPlanned(src, teamId, plan[next++] as PlannedRange, opts)
    p.catch(() => undefined) // awaited below in order; a consumer that stops early leaves it unobserved
    inflight.push(p)
  }
  while (next < plan.length && inflight.length < limits.restoreRangesInFlightMax) start()
  while (inflight.length > 0) {
    const chunks = await (inflight.shift() as Promise<PlannedChunk[]>)
    if (next < plan.length) start()
    for (const c of chunks) {
      src.counters.chunksRead += c.positions.length
      yield c
    }
  }
}

interface Miss {
  hex: string
  hash: Buffer
  positions: number[]
}

/** The ranged GETs of a planned read: by pack (first needed first), by offset, merged. */
async function planRanges(index: ChunkIndex, teamId: TeamId, misses: Miss[]): Promise<PlannedRange[]> {
  const byObject = new Map<string, { first: number; list: PlannedEntry[] }>()
  for (let i = 0; i < misses.length; i += limits.restoreLocateHashesMax) {
    const batch = misses.slice(i, i + limits.restoreLocateHashesMax)
    const locations = await index.locate(
      teamId,
      batch.map((m) => m.hash),
    )
    for (const m of batch) {
      const loc = locations.get(m.hex)
      if (!loc)
        throw new S0Error('chunk_not_found', `chunk ${m.hex} is not in the index`, {
          details: { hash: m.hex },
        })
      const first = m.positions[0] as number
      let g = byObject.get(loc.objectKey)
      if (!g) byObject.set(loc.objectKey, (g = { first, list: [] }))
      g.first = Math.min(g.first, first)
      g.list.push({ key: `${teamId}:${m.hex}`, hash: m.hash, loc, positions: m.positions })
    }
  }
  const plan: PlannedRange[] = []
  for (const [objectKey, g] of [...byObject].sort((a, b) => a[1].first - b[1].first)) {
    g.list.sort((a, b) => a.loc.offset - b.loc.offset)
    for (const run of coalesce(g.list, limits.restoreRangeMaxBytes)) plan.push({ objectKey, run })
  }
  return plan
}

async function fetchPlanned(
  src: PlanSource,
  teamId: TeamId,
  range: PlannedRange,
  opts: { signal?: AbortSignal },
): Promise<PlannedChunk[]> {
  const { objectKey, run } = range
  const first = run[0] as PlannedEntry
  const last = run[run.length - 1] as PlannedEntry
  const start = first.loc.offset
  let bytes: Buffer
  try {
    src.counters.rangeGets++
    bytes = await src.objects.get(objectKey, {
      range: { offset: start, length: last.loc.offset + last.loc.storedBytes - start },
      ...(opts.signal ? { signal: opts.signal } : {}),
    })
  } catch (err) {
    // GC may have rewritten the pack since the plan was made: the ordinary path looks again.
    if (!(err instanceof S0Error && err.code === 'object_not_found')) throw err
    const again = await src.refetch(
      teamId,
      run.map((c) => ({ key: c.key, hash: c.hash })),
      opts,
    )
    return run.map((c) => ({ hash: c.hash, bytes: again.get(c.key) as Buffer, positions: c.positions }))
  }
  // Views of one range buffer: the caller consumes them at once, nothing caches them.
  return run.map((c) => ({
    hash: c.hash,
    bytes: verifiedChunk(objectKey, bytes, start, c, false),
    positions: c.positions,
  }))
}

/** A chunk's bytes out of a ranged GET that began at `start`, checked against its hash. */
export function verifiedChunk(
  objectKey: string,
  range: Buffer,
  start: number,
  c: { hash: Buffer; loc: ChunkLocation },
  copy: boolean,
): Buffer {
  const view = range.subarray(c.loc.offset - start, c.loc.offset - start + c.loc.storedBytes)
  const chunk = copy ? Buffer.from(view) : view
  if (chunk.length !== c.loc.rawBytes || !hashChunk(chunk).equals(c.hash)) {
    throw new S0Error(
      'chunk_corrupt',
      `chunk ${c.hash.toString('hex')} in ${objectKey} does not match its hash`,
      {
        details: { hash: c.hash.toString('hex'), objectKey, offset: c.loc.offset },
      },
    )
  }
  return chunk
}

/** Chunks of one pack sorted by offset, merged into ranges: gaps <= readCoalesceGapBytes. */
export function coalesce<T extends { loc: ChunkLocation }>(
  sorted: T[],
  rangeMaxBytes: number = limits.readRangeMaxBytes,
): T[][] {
  const runs: T[][] = []
  let run: T[] = []
  let runStart = 0
  let runEnd = 0
  for (const c of sorted) {
    const end = c.loc.offset + c.loc.storedBytes
    if (
      run.length > 0 &&
      c.loc.offset - runEnd <= limits.readCoalesceGapBytes &&
      end - runStart <= rangeMaxBytes
    ) {
      run.push(c)
      runEnd = Math.max(runEnd, end)
      continue
    }
    if (run.length > 0) runs.push(run)
    run = [c]
    runStart = c.loc.offset
    runEnd = end
  }
  if (run.length > 0) runs.push(run)
  return runs
}
