// Figures puts_per_gib_written and gets_per_gib_read: object store requests per GiB in the
// put/get runs vs restic's pack writes and pack reads for the same corpus.
import { GiB, MiB, figure, median, round, spread, type Figure } from '../lib.js'
import { RESTORE_BATCH_BYTES } from './env.js'
import type { IngestOutcome } from './ingest-dedup.js'
import type { PutGetRun } from './put-get.js'

export function requestFigures(
  local: { perRun: PutGetRun[] } | undefined,
  s3: { perRun: PutGetRun[]; sliceBytes: number } | { error: string },
  corpusBytes: number,
  ingest: IngestOutcome,
): Figure[] {
  const perGiB = (n: number, bytes: number): number => n / (bytes / GiB)
  const puts = local ? local.perRun.map((r) => perGiB(r.puts, corpusBytes)) : []
  const gets = local ? local.perRun.map((r) => perGiB(r.gets, corpusBytes)) : []
  const s3Detail =
    'perRun' in s3
      ? {
          s3PutsPerGiB: s3.perRun.map((r) => round(perGiB(r.puts, s3.sliceBytes))),
          s3GetsPerGiB: s3.perRun.map((r) => round(perGiB(r.gets, s3.sliceBytes))),
        }
      : { s3: s3.error }
  const rp = ingest.resticPacksPerGiB
  const rg = ingest.resticGetsPerGiB
  return [
    figure({
      name: 'puts_per_gib_written',
      value: median(puts),
      unit: 'PUT/GiB',
      baseline:
        'error' in rp
          ? { name: 'restic backup: pack files per GiB', error: rp.error }
          : {
              name: 'restic backup: pack files (PUTs) per GiB of the same corpus',
              value: round(rp.value),
              unit: 'PUT/GiB',
            },
      higherIsBetter: false,
      target: { value: 64 },
      detail: {
        ...spread(puts),
        method:
          'ResilientObjectStore.stats.puts of the local put runs / GiB of corpus bytes offered (one writer + finish per file, 8 in flight)',
        puts: local?.perRun.map((r) => r.puts) ?? [],
        ...s3Detail,
        restic: 'error' in rp ? null : rp.detail,
      },
    }),
    figure({
      name: 'gets_per_gib_read',
      value: median(gets),
      unit: 'GET/GiB',
      baseline:
        'error' in rg
          ? { name: 'restic restore: pack reads per GiB', error: rg.error }
          : {
              name: 'restic restore: pack reads (GETs) per GiB of the same corpus',
              value: round(rg.value),
              unit: 'GET/GiB',
            },
      higherIsBetter: false,
      target: { value: 128 },
      detail: {
        ...spread(gets),
        method:
          'ResilientObjectStore.stats.gets of the cold local get runs / GiB read; the restore is one planned read (ChunkStore.readPlanned: by pack, by offset, merged ranges up to a whole pack)',
        gets: local?.perRun.map((r) => r.gets) ?? [],
        batchedReadManyGetsPerGiB:
          local?.perRun.map((r) => round(perGiB(r.batchedGets ?? NaN, corpusBytes))) ?? [],
        batchedReadManyMethod: `the same cold restore the way this bench did it before the planner: files by first chunk location, ${RESTORE_BATCH_BYTES / MiB} MiB batches, one readMany each`,
        ...s3Detail,
        restic: 'error' in rg ? null : rg.detail,
      },
    }),
  ]
}
