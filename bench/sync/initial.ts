// The sync suite on the mixed 20k tree (~1 GiB): the initial sync from an empty start, ours vs
// unison and rclone bisync into an empty local directory (sync_initial_20k), then 1 % of the
// bytes changed in place and the bytes each side sends for it, ours vs rsync's delta transfer
// against a copy of the old state (sync_bytes_for_1pct_change).
import { rm } from 'node:fs/promises'
import path from 'node:path'
import {
  errorMessage,
  figure,
  median,
  MiB,
  mustSucceed,
  note,
  round,
  runCmd,
  spread,
  type Figure,
} from '../lib.js'
import type { OnceRun } from './client.js'
import { flush, forgetState, mismatches, unavailable, type SyncBenchContext } from './context.js'
import { rcloneInitial, rsyncDelta, unisonInitial } from './peers.js'
import { applyEdits, mixedTreeSpec, planEdits, treeStats, writeTree, type TreeSpec } from './tree.js'

const FILES = 20_000
const SEED = 0x20000
const CHANGE_FRACTION = 0.01
/** Files whose bytes are compared between the tree and the volume after each pass of ours. */
const VERIFY_FILES = 12
const MTIME_SEPARATION_MS = 1100

interface PeerTimes {
  seconds: number[]
  error?: string
}

async function timePeer(
  run: () => Promise<number>,
  into: PeerTimes,
  cleanup: () => Promise<void>,
): Promise<void> {
  if (into.error !== undefined) return
  try {
    await flush()
    into.seconds.push(await run())
  } catch (err) {
    into.error = errorMessage(err).slice(0, 500)
  } finally {
    await cleanup()
  }
}

/** The largest files and a spread of others: a pass that skipped files shows here. */
function verifySet(tree: TreeSpec): string[] {
  const bySize = [...tree.files].sort((a, b) => b.size - a.size)
  const step = Math.max(1, Math.floor(tree.files.length / VERIFY_FILES))
  const spreadOut = tree.files.filter((_, i) => i % step === 0).slice(0, VERIFY_FILES - 2)
  return [...new Set([...bySize.slice(0, 2), ...spreadOut].map((f) => f.path))]
}

export async function initialAndDeltaFigures(ctx: SyncBenchContext): Promise<Figure[]> {
  const count = Math.max(100, Math.round(FILES * ctx.knobs.scale))
  const tree = mixedTreeSpec(count, SEED)
  const dir = path.join(ctx.work, 'tree20k')
  note(`sync: writing the mixed tree (${count} files, ${round(tree.bytes / MiB)} MiB)`)
  await writeTree(dir, tree)
  const treeDetail = { files: count, bytes: tree.bytes, scale: ctx.knobs.scale, classes: treeStats(tree) }

  const unison: PeerTimes = { seconds: [] }
  const rclone: PeerTimes = { seconds: [] }
  const ours: OnceRun[] = []
  let oursError = ctx.oursError
  let volumeId: string | undefined
  for (let run = 0; run < ctx.knobs.initialRuns; run++) {
    note(`sync_initial: run ${run + 1}/${ctx.knobs.initialRuns}: unison, rclone bisync, s0 sync --once`)
    const dst = path.join(ctx.work, 'peer-dst')
    const home = path.join(ctx.work, 'peer-home')
    const clean = async (): Promise<void> => {
      await rm(dst, { recursive: true, force: true })
      await rm(home, { recursive: true, force: true })
    }
    await timePeer(() => unisonInitial(dir, dst, home), unison, clean)
    await timePeer(() => rcloneInitial(dir, dst, home), rclone, clean)
    if (oursError !== undefined) continue
    try {
      await forgetState(dir)
      volumeId = await ctx.server.createVolume()
      await flush()
      ours.push(await ctx.client.once(dir, volumeId, { initFrom: 'local' }))
      const bad = await mismatches(ctx, dir, volumeId, verifySet(tree))
      if (bad.length > 0)
        throw new Error(`after the initial pass the volume differs from the tree: ${bad.join(', ')}`)
    } catch (err) {
      oursError = errorMessage(err).slice(0, 1000)
    }
  }
  const oursSeconds = ours.map((r) => r.wallSeconds)
  const last = ours[ours.length - 1]
  const oursDetail = {
    ...treeDetail,
    cli: ctx.client.mode,
    cliStartupSeconds: round(ctx.cliStartupSeconds, 3),
    oursSpread: spread(oursSeconds),
    ...(last ? { oursReport: last.report } : {}),
    unisonSeconds: unison.error ?? round(median(unison.seconds)),
    rcloneSeconds: rclone.error ?? round(median(rclone.seconds)),
    note: 'tree just written: in the page cache for every side; dirty pages flushed before each run',
  }
  const initialFigure = (name: string, peer: string, cmd: string, p: PeerTimes): Figure => {
    const f = {
      name,
      unit: 's',
      higherIsBetter: false,
      baseline:
        p.error === undefined
          ? {
              name: `${cmd} (${peer}, into an empty local directory)`,
              value: round(median(p.seconds), 4),
              unit: 's',
            }
          : { name: cmd, error: p.error },
      target: { ratio: 1 },
      detail: { ...oursDetail, peerSpread: spread(p.seconds) },
    }
    return oursError === undefined ? figure({ ...f, value: median(oursSeconds) }) : unavailable(f, oursError)
  }
  const figures = [
    initialFigure('sync_initial_20k', 'unison', 'unison -batch -auto <tree> <empty>', unison),
    initialFigure('sync_initial_20k_vs_rclone', 'rclone', 'rclone bisync <tree> <empty> --resync', rclone),
  ]
  figures.push(await deltaFigure(ctx, tree, dir, oursError === undefined ? volumeId : undefined, oursError))
  await rm(dir, { recursive: true, force: true })
  return figures
}

async function deltaFigure(
  ctx: SyncBenchContext,
  tree: TreeSpec,
  dir: string,
  volumeId: string | undefined,
  oursErrorBefore: string | undefined,
): Promise<Figure> {
  note(
    `sync_bytes_for_1pct_change: ${CHANGE_FRACTION * 100} % of ${round(tree.bytes / MiB)} MiB changed in place`,
  )
  // rsync's receiver: the old state, mtimes kept (a quick check that sees only the edited files).
  const old = path.join(ctx.work, 'old-state')
  mustSucceed(await runCmd('cp', ['-a', dir, old]), 'cp -a')
  await forgetState(old)
  // Edits land at least a second after every old mtime: a quick check comparing whole seconds
  // (size + mtime) must see every edited file, however small the run.
  await new Promise((r) => setTimeout(r, MTIME_SEPARATION_MS))
  const edits = planEdits(tree, CHANGE_FRACTION, SEED + 1)
  const editStats = await applyEdits(dir, edits, SEED + 2)
  await flush()

  let oursError = oursErrorBefore
  let ours: OnceRun | undefined
  if (oursError === undefined && volumeId !== undefined) {
    try {
      ours = await ctx.client.once(dir, volumeId)
      const edited = [...new Set(edits.map((e) => e.file.path))]
      const sample = edited.filter((_, i) => i % Math.max(1, Math.floor(edited.length / VERIFY_FILES)) === 0)
      const bad = await mismatches(ctx, dir, volumeId, sample)
      if (bad.length > 0)
        throw new Error(`after the change the volume differs from the tree: ${bad.join(', ')}`)
    } catch (err) {
      oursError = errorMessage(err).slice(0, 1000)
    }
  } else oursError ??= 'no volume from the initial sync'
  let rsync: { bytesSent: number; seconds: number } | undefined
  let rsyncError: string | undefined
  try {
    rsync = await rsyncDelta(dir, old)
  } catch (err) {
    rsyncError = errorMessage(err).slice(0, 500)
  }
  await rm(old, { recursive: true, force: true })
  const f = {
    name: 'sync_bytes_for_1pct_change',
    unit: 'MiB',
    higherIsBetter: false,
    baseline: rsync
      ? {
          name: 'rsync -a --no-whole-file --stats <tree>/ <copy of the old state>/: Total bytes sent',
          value: round(rsync.bytesSent / MiB, 4),
          unit: 'MiB',
        }
      : { name: 'rsync -a --no-whole-file', error: rsyncError ?? 'did not run' },
    target: { ratio: 1 },
    detail: {
      files: tree.files.length,
      treeBytes: tree.bytes,
      edits: editStats,
      ...(ours ? { oursReport: ours.report, oursWallSeconds: round(ours.wallSeconds) } : {}),
      ...(rsync ? { rsyncBytesSent: rsync.bytesSent, rsyncSeconds: round(rsync.seconds) } : {}),
      note: 'ours: bytes_sent of `s0 sync --once --json`',
    },
  }
  return ours && oursError === undefined
    ? figure({ ...f, value: ours.report.bytes_sent / MiB })
    : unavailable(f, oursError ?? 'did not run')
}
