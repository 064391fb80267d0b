// Figures ingest_vs_restic and dedup_second_write_bytes: a tree stored into a fresh store vs
// `restic backup` of it, then 1 % of its files changed and the whole tree stored again. Also
// measures restic's packs and restore reads for the request figures (requests.ts).
import { rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { kindStats, modifyFiles, type Corpus } from '../corpus.js'
import {
  GiB,
  commandExists,
  errorMessage,
  figure,
  median,
  note,
  round,
  runCmd,
  secondsSince,
  spread,
  type Figure,
} from '../lib.js'
import {
  RESTIC,
  countFiles,
  resticBackup,
  resticInit,
  resticRestoreGets,
  type ResticSummary,
} from '../peers/restic.js'
import {
  TEAM,
  WRITE_CONCURRENCY,
  dropStore,
  openLocalStore,
  statsDelta,
  withRetry,
  type BenchStore,
  type Env,
} from './env.js'
import { diskSources, storeTree } from './trees.js'

export interface IngestOutcome {
  figures: Figure[]
  resticPacksPerGiB: { value: number; detail: Record<string, unknown> } | { error: string }
  resticGetsPerGiB: { value: number; detail: Record<string, unknown> } | { error: string }
}

export async function benchIngestAndDedup(
  env: Env,
  corpus: Corpus,
  corpusDir: string,
  runs: number,
): Promise<IngestOutcome> {
  const ours: number[] = []
  const theirs: number[] = []
  const oursDetail: Array<Record<string, unknown>> = []
  let resticError: string | undefined = (await commandExists(RESTIC)) ? undefined : `${RESTIC} not found`
  let last: BenchStore | undefined
  let lastRepo: string | undefined
  const repos: string[] = []
  let firstSnapshot: string | undefined
  const resticAdded: number[] = []
  const storeErrors: string[] = []
  let firstBackupPacks: { files: number; bytes: number } | undefined

  for (let r = 0; r < runs; r++) {
    const isLast = r === runs - 1
    const oursFirst = r % 2 === 0
    const runOurs = async (): Promise<void> => {
      const got = await withRetry(`ingest run ${r + 1}`, storeErrors, async () => {
        const s = await openLocalStore(env, `ingest${r}`)
        try {
          const t0 = process.hrtime.bigint()
          const sources = await diskSources(corpusDir)
          await storeTree(s.store, sources, WRITE_CONCURRENCY)
          return { s, seconds: secondsSince(t0) }
        } catch (err) {
          await dropStore(env, s).catch(() => undefined) // the store's own error is the one to keep
          throw err
        }
      })
      if (!got) return
      const { s, seconds } = got
      ours.push(seconds)
      const idx = await s.store.index.stats(TEAM)
      const copies = await s.db.query<{ n: number }>(
        `SELECT coalesce(sum(chunk_count), 0)::bigint AS n FROM packs WHERE team_id = $1`,
        [TEAM],
      )
      oursDetail.push({
        seconds: round(seconds, 3),
        puts: s.objects.stats.puts,
        putBytes: s.objects.stats.putBytes,
        packs: idx.packs,
        chunks: idx.chunks,
        uniqueChunkBytes: idx.rawBytes,
        packBytesNotLive: idx.packBytes - idx.liveBytes,
        chunkCopiesInPacks: copies.rows[0]?.n ?? null,
        counters: { ...s.store.counters },
      })
      note(`ingest run ${r + 1}: ours ${round(seconds, 2)} s, ${s.objects.stats.puts} puts`)
      if (isLast) last = s
      else await dropStore(env, s)
    }
    const runRestic = async (): Promise<void> => {
      if (resticError !== undefined) return
      const repo = path.join(env.work, `restic-${r}`)
      try {
        await resticInit(repo)
        const b = await resticBackup(repo, corpusDir)
        theirs.push(b.seconds)
        resticAdded.push(b.summary.data_added)
        note(
          `ingest run ${r + 1}: restic ${round(b.seconds, 2)} s (restic's own total_duration ${round(b.summary.total_duration, 2)} s)`,
        )
        // Every repo is kept for the dedup step: restic picks a random chunker polynomial per
        // repository, so its dedup result varies from repo to repo.
        repos.push(repo)
        if (isLast) {
          lastRepo = repo
          firstSnapshot = b.summary.snapshot_id
          firstBackupPacks = await countFiles(path.join(repo, 'data'))
        }
      } catch (err) {
        resticError = errorMessage(err)
      }
    }
    if (oursFirst) {
      await runOurs()
      await runRestic()
    } else {
      await runRestic()
      await runOurs()
    }
  }

  const figures: Figure[] = []
  figures.push(
    figure({
      name: 'ingest_vs_restic',
      value: median(ours),
      unit: 's',
      baseline:
        resticError !== undefined
          ? { name: 'restic backup', error: resticError }
          : {
              name: 'restic backup --compression off --no-cache (local repo)',
              value: round(median(theirs), 3),
              unit: 's',
            },
      higherIsBetter: false,
      target: { ratio: 1 },
      detail: {
        ...spread(ours, 3),
        bytes: corpus.bytes,
        files: corpus.files.length,
        method: `walk the tree on disk (page cache warm), read each file, writer(team).write + finish per file, ${WRITE_CONCURRENCY} files in flight, then flush; local-directory object store (fsync per pack), fresh database + directory per run; runs alternate which of the two goes first`,
        ours: oursDetail,
        storeErrors,
        restic: theirs.length
          ? {
              ...spread(theirs, 3),
              dataAdded: resticAdded,
              version: '0.14.0 (Debian), repo v2, --compression off since s0 stores chunks uncompressed',
            }
          : null,
      },
    }),
  )

  // Dedup: change 1 % of the files in place, store the whole tree again into the same store/repo.
  const mods = modifyFiles(corpus, 0.01)
  for (const m of mods) await writeFile(path.join(corpusDir, ...m.file.path.split('/')), m.file.data)
  await runCmd('sync', ['-f', corpusDir])
  const insertedBytes = mods.reduce((s, m) => s + m.insertedBytes, 0)
  const modDetail = {
    modifiedFiles: mods.length,
    byKind: kindStats(mods.map((m) => m.file)),
    insertedBytes,
    method: 'insert 64-512 bytes in the middle of 1 % of the files of each kind (at least one per kind)',
  }
  let dedupFigure: Figure | undefined
  const s = last
  let dedupError: string | undefined = s ? undefined : 'our ingest did not complete'
  if (s) {
    try {
      const before = { ...s.objects.stats }
      const c0 = { ...s.store.counters }
      const idx0 = await s.store.index.stats(TEAM)
      const t0 = process.hrtime.bigint()
      await storeTree(s.store, await diskSources(corpusDir), WRITE_CONCURRENCY)
      const seconds = secondsSince(t0)
      const d = statsDelta(s.objects.stats, before)
      const idx1 = await s.store.index.stats(TEAM)
      const restic: Array<{ seconds: number; summary: ResticSummary }> = []
      if (resticError === undefined) {
        try {
          for (const repo of repos) restic.push(await resticBackup(repo, corpusDir))
        } catch (err) {
          resticError = errorMessage(err)
        }
      }
      const resticAddedSecond = restic.map((b) => b.summary.data_added)
      note(
        `dedup: ours ${d.putBytes} pack bytes in ${d.puts} puts; restic data_added ${resticAddedSecond.join(', ') || '-'}`,
      )
      dedupFigure = figure({
        name: 'dedup_second_write_bytes',
        value: d.putBytes,
        unit: 'bytes',
        baseline:
          resticError === undefined && restic.length > 0
            ? {
                name: `restic backup --json data_added (same change; median over ${restic.length} repositories)`,
                value: median(resticAddedSecond),
                unit: 'bytes',
              }
            : { name: 'restic backup data_added', error: resticError ?? 'restic did not run' },
        higherIsBetter: false,
        target: { ratio: 1 },
        detail: {
          runs: 1,
          min: d.putBytes,
          max: d.putBytes,
          ...modDetail,
          valueIs:
            'pack object bytes PUT by the second store of the whole tree (ResilientObjectStore.stats.putBytes delta, includes pack trailers)',
          counterBytesWrittenDelta: s.store.counters.bytesWritten - c0.bytesWritten,
          counterChunksWrittenDelta: s.store.counters.chunksWritten - c0.chunksWritten,
          newUniqueChunkBytes: idx1.rawBytes - idx0.rawBytes,
          newChunks: idx1.chunks - idx0.chunks,
          puts: d.puts,
          secondStoreSeconds: round(seconds, 3),
          resticDataAdded: resticAddedSecond,
          resticNote:
            'restic draws a random chunker polynomial per repository, so its figure varies between repositories; ours is deterministic (fixed gear table)',
          resticSecondBackupSeconds: restic.map((b) => round(b.seconds, 3)),
          resticFilesChanged: restic[0]?.summary.files_changed ?? null,
        },
      })
    } catch (err) {
      dedupError = errorMessage(err)
      storeErrors.push(`dedup second store: ${dedupError}`)
      note(`ERROR dedup second store: ${dedupError}`)
    }
    await dropStore(env, s)
  }
  figures.push(
    dedupFigure ??
      figure({
        name: 'dedup_second_write_bytes',
        value: NaN,
        unit: 'bytes',
        baseline: { name: 'restic backup data_added', error: 'not compared: our store failed' },
        higherIsBetter: false,
        target: { ratio: 1 },
        detail: { runs: 0, ...modDetail, error: dedupError },
      }),
  )
  // Undo the change in memory so later figures use the original corpus bytes.
  for (const m of mods) m.file.data = m.before

  // restic's requests for the same corpus: packs written by the first backup, packs opened by a restore.
  let resticPacksPerGiB: IngestOutcome['resticPacksPerGiB'] = { error: resticError ?? 'restic did not run' }
  let resticGetsPerGiB: IngestOutcome['resticGetsPerGiB'] = { error: resticError ?? 'restic did not run' }
  if (resticError === undefined && lastRepo && firstSnapshot && firstBackupPacks) {
    try {
      resticPacksPerGiB = {
        value: firstBackupPacks.files / (corpus.bytes / GiB),
        detail: {
          packs: firstBackupPacks.files,
          packBytes: firstBackupPacks.bytes,
          method: 'files under data/ of the repository after the first backup of the last ingest run',
        },
      }
      resticGetsPerGiB = await resticRestoreGets(env.work, lastRepo, firstSnapshot, corpus.bytes)
    } catch (err) {
      resticPacksPerGiB = { error: errorMessage(err) }
      resticGetsPerGiB = { error: errorMessage(err) }
    }
  }
  for (const repo of repos) await rm(repo, { recursive: true, force: true })
  return { figures, resticPacksPerGiB, resticGetsPerGiB }
}
