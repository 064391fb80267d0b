// Edit propagation through a live `s0 sync`: write a file on one side, poll the other until the new
// bytes show, one sample at a time. Both loops are bounded: samples, a timeout per sample and a
// time budget for the whole loop. A sample that times out counts at the timeout (a lower bound).
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Rng } from '../corpus.js'
import type { LiveSync } from './client.js'
import { fillText } from './tree.js'
import type { SyncServer } from './server.js'

export const POLL_INTERVAL_MS = 25
export const SAMPLE_TIMEOUT_MS = 30_000
/** Time to let the client settle between samples (echoes of the previous edit). */
export const SETTLE_MS = 250
const LOOP_BUDGET_MS = 10 * 60_000
const EDIT_BYTES = 2048

export interface PropagationResult {
  /** Milliseconds from the start of the write to the first poll that saw the new bytes. */
  samplesMs: number[]
  timeouts: number
  /** Duration of the writes themselves (a local writeFile, or the files API POST). */
  writeMs: number[]
  stoppedByBudget: boolean
}

export interface PropagationTarget {
  dir: string
  volumeId: string
  server: SyncServer
  live: LiveSync
  /** Relative paths of existing files to edit, one per sample (distinct from the other direction's). */
  files: readonly string[]
  seed: number
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6

function newContent(rng: Rng, label: string): Buffer {
  const body = Buffer.allocUnsafeSlow(EDIT_BYTES)
  fillText(rng, body)
  return Buffer.concat([Buffer.from(`${label} ${rng.next().toString(16)}\n`), body])
}

async function sample(
  write: () => Promise<void>,
  seen: () => Promise<boolean>,
): Promise<{ ms: number; writeMs: number; timedOut: boolean }> {
  const t0 = process.hrtime.bigint()
  await write()
  const writeMs = msSince(t0)
  for (;;) {
    if (await seen()) return { ms: msSince(t0), writeMs, timedOut: false }
    if (msSince(t0) >= SAMPLE_TIMEOUT_MS) return { ms: SAMPLE_TIMEOUT_MS, writeMs, timedOut: true }
    await sleep(POLL_INTERVAL_MS)
  }
}

async function loop(
  t: PropagationTarget,
  label: string,
  one: (rel: string, content: Buffer) => ReturnType<typeof sample>,
): Promise<PropagationResult> {
  const rng = new Rng(t.seed)
  const out: PropagationResult = { samplesMs: [], timeouts: 0, writeMs: [], stoppedByBudget: false }
  const start = process.hrtime.bigint()
  for (const rel of t.files) {
    if (msSince(start) > LOOP_BUDGET_MS) {
      out.stoppedByBudget = true
      break
    }
    if (!t.live.running()) throw new Error(`s0 sync (live) exited: ${t.live.stderrTail().slice(-2000)}`)
    const r = await one(rel, newContent(rng, `${label} ${rel}`))
    out.samplesMs.push(r.ms)
    out.writeMs.push(r.writeMs)
    if (r.timedOut) out.timeouts++
    await sleep(SETTLE_MS)
  }
  return out
}

/** Local write (writeFile: truncate and write, as an editor without atomic saves) → volume. */
export function localToVolume(t: PropagationTarget): Promise<PropagationResult> {
  return loop(t, 'local edit', (rel, content) =>
    sample(
      () => writeFile(path.join(t.dir, rel), content),
      async () => (await t.server.readFile(t.volumeId, rel))?.equals(content) ?? false,
    ),
  )
}

/** Files API write → local file. */
export function volumeToLocal(t: PropagationTarget): Promise<PropagationResult> {
  return loop(t, 'volume edit', (rel, content) =>
    sample(
      () => t.server.writeFile(t.volumeId, rel, content),
      async () => {
        const got = await readFile(path.join(t.dir, rel)).catch(() => undefined) // not there yet
        return got?.equals(content) ?? false
      },
    ),
  )
}

/** Nearest-rank percentile (`p` in 0..1). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(s.length * p) - 1))] as number
}
