// The sync suite on the 100k tree of small files: a live `s0 sync` keeps it in sync with a volume
// while single edits go each way (sync_edit_propagation_*), then, with everything in sync and
// committed, a pass with nothing to do vs `git status` on the same tree (sync_noop_rescan).
import { rm } from 'node:fs/promises'
import path from 'node:path'
import { Rng } from '../corpus.js'
import { errorMessage, figure, median, MiB, note, round, spread, type Figure } from '../lib.js'
import type { LiveSync, OnceRun } from './client.js'
import { flush, mismatches, unavailable, type SyncBenchContext } from './context.js'
import { GitPeer } from './peers.js'
import {
  localToVolume,
  percentile,
  POLL_INTERVAL_MS,
  SAMPLE_TIMEOUT_MS,
  SETTLE_MS,
  volumeToLocal,
  type PropagationResult,
} from './propagation.js'
import { smallTreeSpec, writeTree, type TreeFile, type TreeSpec } from './tree.js'

const FILES = 100_000
const SEED = 0x100000
const VERIFY_FILES = 12
const TARGET_P50_MS = 1000
const TARGET_P99_MS = 2000

/** 2n distinct files of the tree, picked from the seed: n per direction. */
function pickFiles(tree: TreeSpec, n: number): { up: string[]; down: string[] } {
  const rng = new Rng(SEED + 7)
  const picked = new Set<number>()
  const want = Math.min(2 * n, tree.files.length)
  while (picked.size < want) picked.add(rng.int(0, tree.files.length))
  const rels = [...picked].map((i) => (tree.files[i] as TreeFile).path)
  return { up: rels.slice(0, n), down: rels.slice(n) }
}

interface LivePhase {
  volumeId?: string
  readySeconds?: number
  up?: PropagationResult
  down?: PropagationResult
  stopExit?: string
  error?: string
}

async function runLive(ctx: SyncBenchContext, tree: TreeSpec, dir: string): Promise<LivePhase> {
  const out: LivePhase = {}
  let live: LiveSync | undefined
  try {
    out.volumeId = await ctx.server.createVolume()
    await flush()
    note(`sync live: initial pass of ${tree.files.length} files`)
    live = await ctx.client.live(dir, out.volumeId)
    const started = live
    ctx.defer(async () => void (await started.stop())) // on a signal; stopping twice is harmless
    out.readySeconds = live.readySeconds
    const step = Math.max(1, Math.floor(tree.files.length / VERIFY_FILES))
    const check = tree.files.filter((_, i) => i % step === 0)
    const bad = await mismatches(ctx, dir, out.volumeId, check.map((f) => f.path).slice(0, VERIFY_FILES))
    if (bad.length > 0)
      throw new Error(`after the initial pass the volume differs from the tree: ${bad.join(', ')}`)
    const files = pickFiles(tree, ctx.knobs.samples)
    const target = { dir, volumeId: out.volumeId, server: ctx.server, live }
    note(`sync live: ${files.up.length} local edits → volume`)
    out.up = await localToVolume({ ...target, files: files.up, seed: SEED + 1 })
    note(`sync live: ${files.down.length} files API writes → local`)
    out.down = await volumeToLocal({ ...target, files: files.down, seed: SEED + 2 })
  } catch (err) {
    out.error = errorMessage(err).slice(0, 1000)
  } finally {
    if (live) {
      const { code, signal } = await live.stop()
      out.stopExit = signal ?? String(code)
      if (out.error === undefined && code !== 0) out.error = `s0 sync (live) exited ${out.stopExit} on SIGINT`
    }
  }
  return out
}

function propagationFigures(ctx: SyncBenchContext, phase: LivePhase, tree: TreeSpec): Figure[] {
  const common = {
    files: tree.files.length,
    treeBytes: tree.bytes,
    scale: ctx.knobs.scale,
    cli: ctx.client.mode,
    pollIntervalMs: POLL_INTERVAL_MS,
    sampleTimeoutMs: SAMPLE_TIMEOUT_MS,
    settleMs: SETTLE_MS,
    ...(phase.readySeconds !== undefined ? { initialPassSeconds: round(phase.readySeconds) } : {}),
  }
  const make = (name: string, r: PropagationResult | undefined, p: number, what: string): Figure => {
    const target = { value: p === 0.5 ? TARGET_P50_MS : TARGET_P99_MS }
    const f = {
      name,
      unit: 'ms',
      higherIsBetter: false,
      baseline: { name: `no peer: ${what}, polled every ${POLL_INTERVAL_MS} ms` },
      target,
      detail: {
        ...common,
        ...(r
          ? {
              samples: r.samplesMs.length,
              timeouts: r.timeouts,
              stoppedByBudget: r.stoppedByBudget,
              p50Ms: round(percentile(r.samplesMs, 0.5)),
              p99Ms: round(percentile(r.samplesMs, 0.99)),
              maxMs: round(Math.max(...r.samplesMs)),
              writeP50Ms: round(percentile(r.writeMs, 0.5)),
            }
          : {}),
      },
    }
    if (!r || r.samplesMs.length === 0) return unavailable(f, phase.error ?? ctx.oursError ?? 'no samples')
    return figure({ ...f, value: percentile(r.samplesMs, p) })
  }
  const up = 'local write until GET /api/v1/sandboxvolumes/{id}/files returns the new bytes'
  const down = 'files API write until the local file has the new bytes'
  return [
    make('sync_edit_propagation_p50', phase.up, 0.5, up),
    make('sync_edit_propagation_p99', phase.up, 0.99, up),
    make('sync_edit_propagation_to_local_p50', phase.down, 0.5, down),
    make('sync_edit_propagation_to_local_p99', phase.down, 0.99, down),
  ]
}

async function noopFigure(
  ctx: SyncBenchContext,
  dir: string,
  git: GitPeer,
  phase: LivePhase,
  files: number,
): Promise<Figure> {
  note(`sync_noop_rescan: s0 sync --once vs git status, ${ctx.knobs.runs} runs each`)
  // A live phase that got past its initial pass leaves a synced tree (the warm-up pass below
  // reconciles what a failed sample left): the rescan is measured even if propagation failed.
  let oursError = ctx.oursError ?? (phase.readySeconds === undefined ? phase.error : undefined)
  const ours: OnceRun[] = []
  const gitSeconds: number[] = []
  let gitError: string | undefined
  let gitChanged = 0
  let warmup: OnceRun | undefined
  try {
    await git.status() // warm, as a user's second status
  } catch (err) {
    gitError = errorMessage(err).slice(0, 500)
  }
  if (oursError === undefined && phase.volumeId !== undefined) {
    try {
      warmup = await ctx.client.once(dir, phase.volumeId)
    } catch (err) {
      oursError = errorMessage(err).slice(0, 1000)
    }
  }
  for (let run = 0; run < ctx.knobs.runs; run++) {
    if (oursError === undefined && phase.volumeId !== undefined) {
      try {
        const r = await ctx.client.once(dir, phase.volumeId)
        if (r.report.pushed_files + r.report.pulled_files > 0)
          throw new Error(`a pass with nothing to do transferred files: ${JSON.stringify(r.report)}`)
        ours.push(r)
      } catch (err) {
        oursError = errorMessage(err).slice(0, 1000)
      }
    }
    if (gitError === undefined) {
      try {
        const s = await git.status()
        gitSeconds.push(s.seconds)
        gitChanged = s.changed
      } catch (err) {
        gitError = errorMessage(err).slice(0, 500)
      }
    }
  }
  const f = {
    name: 'sync_noop_rescan',
    unit: 's',
    higherIsBetter: false,
    baseline:
      gitError === undefined
        ? {
            name: 'git status --porcelain on the same tree (all committed, warm)',
            value: round(median(gitSeconds), 4),
            unit: 's',
          }
        : { name: 'git status', error: gitError },
    target: { ratio: 1 },
    detail: {
      files,
      cli: ctx.client.mode,
      cliStartupSeconds: round(ctx.cliStartupSeconds, 3),
      oursSpread: spread(ours.map((r) => r.wallSeconds)),
      oursClientSeconds: ours.map((r) => round(r.report.seconds, 3)),
      gitSpread: spread(gitSeconds),
      gitChangedPaths: gitChanged,
      ...(warmup ? { warmupReport: warmup.report } : {}),
      note: 'ours: wall time of `s0 sync <tree> <volume> --once --json` after a warm-up pass; git dir outside the tree',
    },
  }
  return oursError === undefined && ours.length > 0
    ? figure({ ...f, value: median(ours.map((r) => r.wallSeconds)) })
    : unavailable(f, oursError ?? 'did not run')
}

export async function liveAndNoopFigures(ctx: SyncBenchContext): Promise<Figure[]> {
  const count = Math.max(2 * ctx.knobs.samples, Math.round(FILES * ctx.knobs.scale))
  const tree = smallTreeSpec(count, SEED)
  const dir = path.join(ctx.work, 'tree100k')
  note(`sync: writing the small-file tree (${count} files, ${round(tree.bytes / MiB)} MiB)`)
  await writeTree(dir, tree)
  const git = new GitPeer(dir, path.join(ctx.work, 'tree100k.git'))
  await git.init()

  const phase: LivePhase = ctx.oursError === undefined ? await runLive(ctx, tree, dir) : {}
  const figures = propagationFigures(ctx, phase, tree)
  // Committed after the live phase, so the edits both ways are in the commit too.
  note('sync: committing the small-file tree to git')
  await git.commitAll('bench tree')
  await flush()
  figures.push(await noopFigure(ctx, dir, git, phase, count))
  await rm(dir, { recursive: true, force: true })
  return figures
}
