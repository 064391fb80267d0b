// FUSE bench (`npm run bench -- fuse`): fio sequential and random I/O on our mount vs the native
// file system; ours on S3 (s3rver) vs `rclone mount` and `s3fs` on the same bucket; Sandbox0's
// V2 small-file standard and single-thread create / stat / delete rates vs a native directory;
// git clone and status of a 5,000-file repository vs native. Figures are the default (lowlevel)
// transport's; fuse-native's value of the same run is in each figure's detail.
// The load always runs in child processes (fio, bench/smallfiles.mjs): this process serves the
// mounts and must not load them itself.
import { mkdir, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises'
import path from 'node:path'
import { ChunkStore } from '../src/blockstore/chunk-store.js'
import { LocalObjectStore } from '../src/blockstore/local-object-store.js'
import type { ObjectStore } from '../src/blockstore/object-store.js'
import { ResilientObjectStore } from '../src/blockstore/resilient-object-store.js'
import { S3ObjectStore } from '../src/blockstore/s3-object-store.js'
import type { Db } from '../src/core/db.js'
import { asTeamId } from '../src/core/ids.js'
import { createLogger, type Logger } from '../src/core/log.js'
import { FuseMount, type MountOptions } from '../src/fuse/mount.js'
import type { TransportName } from '../src/fuse/transport.js'
import { VolumeEngine } from '../src/snapshots/engine.js'
import { startS3rver, S3RVER_CREDENTIALS } from '../tools/s3rver.js'
import {
  BENCH_DIR,
  benchDatabase,
  errorMessage,
  figure,
  gitCommit,
  machineInfo,
  MiB,
  mustSucceed,
  round,
  note,
  runCmd,
  type Figure,
  type SuiteResult,
} from './lib.js'

const TEAM = asTeamId('team-bench')
const SEQ_MIB = Number(process.env['S0_BENCH_FUSE_SEQ_MIB'] ?? 1024)
const S3_MIB = Number(process.env['S0_BENCH_FUSE_S3_MIB'] ?? 256)
const V2_FILES = Number(process.env['S0_BENCH_V2_FILES'] ?? 30_000)
const META_FILES = Number(process.env['S0_BENCH_META_FILES'] ?? 3_000)
const RAND_SECONDS = 15
const GIT_FILES = Number(process.env['S0_BENCH_GIT_FILES'] ?? 5_000)

interface Mounted {
  dir: string
  mount: FuseMount
  engine: VolumeEngine
  store: ChunkStore
  volumeId: string
}

/** A volume on its own engine and chunk store (fresh caches), mounted at `dir`. */
async function mountFresh(
  db: Db,
  objects: ObjectStore,
  log: Logger,
  dir: string,
  opts: MountOptions & { volumeId?: string } = {},
): Promise<Mounted> {
  const store = await ChunkStore.open({
    db,
    objects: new ResilientObjectStore(objects),
    log,
    diskCacheBytes: 0,
  })
  const engine = new VolumeEngine({ db, chunks: store, log })
  const volumeId = opts.volumeId ?? (await engine.create(TEAM)).id
  const mount = await FuseMount.mount(await engine.vfs(TEAM, volumeId), dir, opts, log)
  return { dir, mount, engine, store, volumeId }
}

async function unmount(m: Mounted): Promise<void> {
  await m.mount.unmount()
  await m.engine.close()
  await m.store.close()
}

async function dropCaches(): Promise<void> {
  mustSucceed(await runCmd('sync', []), 'sync')
  // Not root, or a container without it: the figures then include a warm page cache (both sides).
  await writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined)
}

interface FioResult {
  bytesPerSec: number
  iops: number
  seconds: number
}

async function fio(dir: string, args: string[]): Promise<FioResult> {
  const r = mustSucceed(
    await runCmd('fio', [
      '--name=s0',
      `--directory=${dir}`,
      '--output-format=json',
      '--ioengine=psync',
      '--filename=fio.dat',
      ...args,
    ]),
    `fio ${args.join(' ')}`,
  )
  const job = (
    JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as {
      jobs: Array<Record<'read' | 'write', { bw_bytes: number; iops: number; runtime: number }>>
    }
  ).jobs[0]
  if (!job) throw new Error('fio printed no job')
  const side = job.write.bw_bytes > 0 ? job.write : job.read
  return { bytesPerSec: side.bw_bytes, iops: side.iops, seconds: side.runtime / 1000 }
}

const seqWrite = (dir: string, mib: number): Promise<FioResult> =>
  fio(dir, ['--rw=write', '--bs=1M', `--size=${mib}M`, '--end_fsync=1'])
// fio drops a file's pages before each job unless told not to (invalidate=1): the cached runs
// keep them, so "cached" means the kernel page cache for native and mount alike.
const seqRead = (dir: string, mib: number, cached = false): Promise<FioResult> =>
  fio(dir, ['--rw=read', '--bs=1M', `--size=${mib}M`, ...(cached ? ['--invalidate=0'] : [])])
const randRead = (dir: string, mib: number): Promise<FioResult> =>
  fio(dir, [
    '--rw=randread',
    '--bs=4k',
    `--size=${mib}M`,
    '--time_based',
    `--runtime=${RAND_SECONDS}`,
    '--randrepeat=1',
    '--invalidate=0',
  ])

const mibs = (r: FioResult): number => r.bytesPerSec / MiB

interface Phase {
  opsPerSec: number
  p50Ms: number
  p95Ms: number
  seconds: number
}

async function smallFiles(args: string[]): Promise<Record<string, Phase> & { badFiles?: number }> {
  const r = mustSucceed(
    await runCmd(process.execPath, [path.join(BENCH_DIR, 'smallfiles.mjs'), ...args], {
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
    }),
    `smallfiles ${args.join(' ')}`,
  )
  return JSON.parse(r.stdout) as Record<string, Phase> & { badFiles?: number }
}

function opProfile(m: FuseMount): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [op, s] of m.opStats) out[op] = `${s.count} × ${Math.round(s.totalUs / Math.max(1, s.count))} µs`
  return out
}

async function benchSequential(db: Db, objects: ObjectStore, log: Logger, work: string): Promise<Figure[]> {
  const native = path.join(work, 'native-seq')
  await mkdir(native)
  const nw = await seqWrite(native, SEQ_MIB)
  await dropCaches()
  const nrCold = await seqRead(native, SEQ_MIB)
  const nrCached = await seqRead(native, SEQ_MIB, true)
  const nRand = await randRead(native, SEQ_MIB)

  const ours = async (transport: TransportName) => {
    const dir = path.join(work, `mnt-seq-${transport}`)
    let m = await mountFresh(db, objects, log, dir, { transport })
    const w = await seqWrite(dir, SEQ_MIB)
    const writeProfile = opProfile(m.mount)
    await unmount(m)
    // Cold: a new engine and chunk store (empty caches), kernel caches dropped.
    await dropCaches()
    m = await mountFresh(db, objects, log, dir, { volumeId: m.volumeId, transport })
    const rCold = await seqRead(dir, SEQ_MIB)
    const rCached = await seqRead(dir, SEQ_MIB, true)
    const rand = await randRead(dir, SEQ_MIB)
    await unmount(m)
    return { w, rCold, rCached, rand, writeProfile }
  }
  const o = await ours('lowlevel')
  const fn = await ours('fuse-native')
  const [ow, orCold, orCached, oRand, writeProfile] = [o.w, o.rCold, o.rCached, o.rand, o.writeProfile]
  const detail = { mib: SEQ_MIB, tool: 'fio psync bs=1M', durability: 'close', transport: 'lowlevel' }
  return [
    figure({
      name: 'seq_write_throughput',
      value: mibs(ow),
      unit: 'MiB/s',
      higherIsBetter: true,
      baseline: {
        name: 'fio seq write + fsync on the native file system (same disk)',
        value: mibs(nw),
        unit: 'MiB/s',
      },
      target: { ratio: 0.6 },
      detail: { ...detail, opProfile: writeProfile, fuseNativeMiBs: round(mibs(fn.w)) },
    }),
    figure({
      name: 'seq_read_throughput_cold',
      value: mibs(orCold),
      unit: 'MiB/s',
      higherIsBetter: true,
      baseline: { name: 'fio seq read, native, after drop_caches', value: mibs(nrCold), unit: 'MiB/s' },
      target: {},
      detail: { ...detail, fuseNativeMiBs: round(mibs(fn.rCold)) },
    }),
    figure({
      name: 'seq_read_throughput',
      value: mibs(orCached),
      unit: 'MiB/s',
      higherIsBetter: true,
      baseline: { name: 'fio seq read, native, page cache warm', value: mibs(nrCached), unit: 'MiB/s' },
      target: { ratio: 0.9 },
      detail: {
        ...detail,
        note: 'second read: pages kept across opens (lowlevel: FOPEN_KEEP_CACHE; fuse-native: auto_cache)',
        fuseNativeMiBs: round(mibs(fn.rCached)),
      },
    }),
    figure({
      name: 'rand_read_4k_iops',
      value: oRand.iops,
      unit: 'IOPS',
      higherIsBetter: true,
      baseline: { name: 'fio randread 4k, native, page cache warm', value: nRand.iops, unit: 'IOPS' },
      target: {},
      detail: { ...detail, seconds: RAND_SECONDS, fuseNativeIops: round(fn.rand.iops) },
    }),
  ]
}

async function benchS3Peers(db: Db, log: Logger, work: string): Promise<Figure[]> {
  const s3 = await startS3rver({ bucket: 's0' })
  const figures: Figure[] = []
  try {
    const endpoint = s3.config.endpoint as string
    const objects = new S3ObjectStore({ ...s3.config, prefix: 's0/' })
    const ours = path.join(work, 'mnt-s3')
    let m = await mountFresh(db, objects, log, ours)
    const ow = await seqWrite(ours, S3_MIB)
    await unmount(m)
    await dropCaches()
    m = await mountFresh(db, objects, log, ours, { volumeId: m.volumeId })
    const or = await seqRead(ours, S3_MIB)
    await unmount(m)

    const peers: Record<string, { write?: number; read?: number; error?: string }> = {}
    // rclone mount on the same bucket. Without a VFS cache rclone refuses fio's read-write open
    // (EPERM); `writes` is its documented mode for such programs (uploads after close).
    const rdir = path.join(work, 'mnt-rclone')
    await mkdir(rdir)
    // rclone's S3 backend fails on AWS_CA_BUNDLE with a custom transport; s3rver is plain HTTP.
    const { AWS_CA_BUNDLE: _ca, ...baseEnv } = process.env
    const rcloneEnv = {
      ...baseEnv,
      RCLONE_CONFIG_S3R_TYPE: 's3',
      RCLONE_CONFIG_S3R_PROVIDER: 'Other',
      RCLONE_CONFIG_S3R_ENDPOINT: endpoint,
      RCLONE_CONFIG_S3R_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      RCLONE_CONFIG_S3R_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    }
    peers.rclone = await peerRun(
      'rclone',
      ['mount', 's3r:s0/rclone', rdir, '--daemon', '--allow-non-empty', '--vfs-cache-mode', 'writes'],
      rcloneEnv,
      rdir,
    )
    // s3fs (path-style requests to s3rver).
    const sdir = path.join(work, 'mnt-s3fs')
    await mkdir(sdir)
    const passwd = path.join(work, 's3fs.passwd')
    await writeFile(passwd, `${S3RVER_CREDENTIALS.accessKeyId}:${S3RVER_CREDENTIALS.secretAccessKey}\n`, {
      mode: 0o600,
    })
    peers.s3fs = await peerRun(
      's3fs',
      [
        's0:/s3fs',
        sdir,
        '-o',
        `url=${endpoint}`,
        '-o',
        'use_path_request_style',
        '-o',
        `passwd_file=${passwd}`,
      ],
      process.env,
      sdir,
    )
    for (const [peer, r] of Object.entries(peers)) {
      figures.push(
        figure({
          name: `s3_seq_write_vs_${peer}`,
          value: mibs(ow),
          unit: 'MiB/s',
          higherIsBetter: true,
          baseline:
            r.write !== undefined
              ? {
                  name: `${peer} mount on the same s3rver bucket, fio seq write + fsync`,
                  value: r.write,
                  unit: 'MiB/s',
                }
              : { name: `${peer} mount`, error: r.error ?? 'did not run' },
          target: { ratio: 1 },
          detail: { mib: S3_MIB },
        }),
        figure({
          name: `s3_seq_read_vs_${peer}`,
          value: mibs(or),
          unit: 'MiB/s',
          higherIsBetter: true,
          baseline:
            r.read !== undefined
              ? {
                  name: `${peer} mount on the same s3rver bucket, fio seq read after drop_caches`,
                  value: r.read,
                  unit: 'MiB/s',
                }
              : { name: `${peer} mount`, error: r.error ?? 'did not run' },
          target: { ratio: 1 },
          detail: { mib: S3_MIB, ours: 'cold: new engine and chunk store, kernel caches dropped' },
        }),
      )
    }
  } finally {
    await s3.stop()
  }
  return figures
}

/** Mounts a peer file system, runs the sequential write and cold read on it, unmounts. */
async function peerRun(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  dir: string,
): Promise<{ write?: number; read?: number; error?: string }> {
  try {
    mustSucceed(await runCmd(cmd, args, { env }), `${cmd} mount`)
    for (let i = 0; i < 50; i++) {
      const mounted = await runCmd('mountpoint', ['-q', dir])
      if (mounted.code === 0) break
      await new Promise((r) => setTimeout(r, 100))
    }
    const w = await seqWrite(dir, S3_MIB)
    await dropCaches()
    const r = await seqRead(dir, S3_MIB)
    return { write: mibs(w), read: mibs(r) }
  } catch (err) {
    return { error: errorMessage(err).slice(0, 500) }
  } finally {
    await runCmd('fusermount', ['-uz', dir])
  }
}

async function benchSmallFiles(db: Db, objects: ObjectStore, log: Logger, work: string): Promise<Figure[]> {
  const native = path.join(work, 'native-v2')
  await mkdir(native)
  const nv2 = await smallFiles(['v2', native, String(V2_FILES), '8', '128'])
  const nmeta = await smallFiles(['meta', native, String(META_FILES)])
  interface Run {
    v2: Awaited<ReturnType<typeof smallFiles>>
    meta: Awaited<ReturnType<typeof smallFiles>>
    profile: Record<string, string>
    /** getattr + lookup requests per V2 operation (4 per file: write, read, list+stat, remove). */
    requestsPerOp: number
  }
  const runs: Record<string, Run> = {}
  const variants: Array<{ key: string; opts: MountOptions }> = [
    { key: 'close', opts: { durability: 'close', transport: 'lowlevel' } },
    { key: 'fsync', opts: { durability: 'fsync', transport: 'lowlevel' } },
    { key: 'native-close', opts: { durability: 'close', transport: 'fuse-native' } },
    // The kernel's write-back cache, measured rather than assumed (docs/ARCHITECTURE.md).
    { key: 'writeback-close', opts: { durability: 'close', transport: 'lowlevel', writebackCache: true } },
  ]
  for (const { key, opts } of variants) {
    const dir = path.join(work, `mnt-v2-${key}`)
    const m = await mountFresh(db, objects, log, dir, opts)
    const v2 = await smallFiles(['v2', dir, String(V2_FILES), '8', '128'])
    const count = (op: string): number => m.mount.opStats.get(op)?.count ?? 0
    const requestsPerOp = (count('getattr') + count('lookup')) / (4 * V2_FILES)
    const meta = await smallFiles(['meta', dir, String(META_FILES)])
    runs[key] = { v2, meta, profile: opProfile(m.mount), requestsPerOp }
    await unmount(m)
  }
  const close = runs.close as Run
  const fsync = runs.fsync as Run
  const fuseNative = runs['native-close'] as Run
  const writeback = runs['writeback-close'] as Run
  const v2Figure = (name: string, key: string, target?: number): Figure => {
    const o = close.v2[key] as Phase
    const n = nv2[key] as Phase
    const f = fsync.v2[key] as Phase
    return figure({
      name,
      value: o.opsPerSec,
      unit: 'ops/s',
      higherIsBetter: true,
      baseline: {
        name: 'same harness on a native directory (8 workers, 128 files per directory)',
        value: n.opsPerSec,
        unit: 'ops/s',
      },
      target: target !== undefined ? { ratio: target } : {},
      detail: {
        files: V2_FILES,
        durability: 'close (default)',
        p50Ms: o.p50Ms,
        p95Ms: o.p95Ms,
        nativeP50Ms: n.p50Ms,
        nativeP95Ms: n.p95Ms,
        fsyncModeOpsPerSec: f.opsPerSec,
        fsyncModeP50Ms: f.p50Ms,
        fsyncModeP95Ms: f.p95Ms,
        fuseNativeOpsPerSec: (fuseNative.v2[key] as Phase).opsPerSec,
        writebackCacheOpsPerSec: (writeback.v2[key] as Phase).opsPerSec,
        ...(key === 'verifiedRead'
          ? { badFiles: close.v2.badFiles, fsyncModeBadFiles: fsync.v2.badFiles }
          : {}),
      },
    })
  }
  const metaFigure = (name: string, key: string, target?: number): Figure => {
    const o = close.meta[key] as Phase
    const n = nmeta[key] as Phase
    return figure({
      name,
      value: o.opsPerSec,
      unit: 'ops/s',
      higherIsBetter: true,
      baseline: {
        name: 'same single-thread harness on a native directory',
        value: n.opsPerSec,
        unit: 'ops/s',
      },
      target: target !== undefined ? { ratio: target } : {},
      detail: {
        files: META_FILES,
        p50Ms: o.p50Ms,
        nativeP50Ms: n.p50Ms,
        fsyncModeOpsPerSec: (fsync.meta[key] as Phase).opsPerSec,
        fuseNativeOpsPerSec: (fuseNative.meta[key] as Phase).opsPerSec,
      },
    })
  }
  const figures = [
    v2Figure('v2_write_ops', 'write', 0.5),
    v2Figure('v2_verified_read_ops', 'verifiedRead', 0.7),
    v2Figure('v2_list_stat_ops', 'listStat', 0.7),
    v2Figure('v2_remove_ops', 'remove', 0.2),
    metaFigure('file_create_rate', 'create', 0.2),
    metaFigure('file_stat_rate', 'stat', 0.5),
    metaFigure('file_delete_rate', 'delete'),
    figure({
      name: 'fuse_requests_per_file_op',
      value: close.requestsPerOp,
      unit: 'requests/op',
      higherIsBetter: false,
      baseline: {
        name: 'fuse-native transport, same V2 run (getattr + lookup per operation)',
        value: fuseNative.requestsPerOp,
        unit: 'requests/op',
      },
      target: { value: 1.5 },
      detail: { files: V2_FILES, operationsPerFile: 4, transport: 'lowlevel' },
    }),
  ]
  ;(figures[0] as Figure).detail = {
    ...(figures[0] as Figure).detail,
    opProfileClose: close.profile,
    opProfileFsync: fsync.profile,
    opProfileFuseNative: fuseNative.profile,
  }
  return figures
}

/** A local repository of GIT_FILES files (about 44 MB at 5,000) on the native disk. */
async function makeRepo(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  mustSucceed(await runCmd('git', ['init', '-q', dir]), 'git init')
  for (let d = 0; d < 50; d++) {
    const sub = path.join(dir, `pkg${d}`)
    await mkdir(sub)
    for (let f = 0; f < GIT_FILES / 50; f++) {
      // ~8.8 KB each, compressible like source code, distinct per file.
      const line = `export const value_${d}_${f} = ${(d * 7919 + f * 104729) % 1000003} // pkg ${d} file ${f}\n`
      await writeFile(path.join(sub, `file${f}.ts`), line.repeat(1 + ((d + f) % 160)))
    }
  }
  mustSucceed(await runCmd('git', ['-C', dir, 'add', '-A']), 'git add')
  mustSucceed(
    await runCmd('git', ['-C', dir, '-c', 'user.email=b@s0', '-c', 'user.name=b', 'commit', '-qm', 'init']),
    'git commit',
  )
}

async function timed(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now()
  mustSucceed(await runCmd(cmd, args), `${cmd} ${args.join(' ')}`)
  return (performance.now() - t0) / 1000
}

async function benchGit(db: Db, objects: ObjectStore, log: Logger, work: string): Promise<Figure[]> {
  const repo = path.join(work, 'git-src')
  await makeRepo(repo)
  const native = path.join(work, 'git-native')
  const nClone = await timed('git', ['clone', '-q', '--no-hardlinks', repo, native])
  await timed('git', ['-C', native, 'status', '--porcelain']) // warm, as a user's second status
  const nStatus = await timed('git', ['-C', native, 'status', '--porcelain'])
  const results: Record<string, { clone: number; status: number }> = {}
  for (const transport of ['lowlevel', 'fuse-native'] as const) {
    const dir = path.join(work, `mnt-git-${transport}`)
    const m = await mountFresh(db, objects, log, dir, { transport })
    const clone = await timed('git', ['clone', '-q', '--no-hardlinks', repo, path.join(dir, 'clone')])
    await timed('git', ['-C', path.join(dir, 'clone'), 'status', '--porcelain'])
    const status = await timed('git', ['-C', path.join(dir, 'clone'), 'status', '--porcelain'])
    results[transport] = { clone, status }
    await unmount(m)
  }
  const ll = results.lowlevel as { clone: number; status: number }
  const fn = results['fuse-native'] as { clone: number; status: number }
  const detail = { files: GIT_FILES, durability: 'close', transport: 'lowlevel' }
  return [
    figure({
      name: 'git_clone_5k',
      value: ll.clone,
      unit: 's',
      higherIsBetter: false,
      baseline: {
        name: 'git clone of the same local repository onto the native disk',
        value: nClone,
        unit: 's',
      },
      target: { ratio: 5 },
      detail: { ...detail, fuseNativeSeconds: round(fn.clone) },
    }),
    figure({
      name: 'git_status_5k',
      value: ll.status,
      unit: 's',
      higherIsBetter: false,
      baseline: { name: 'git status in the native clone (second run)', value: nStatus, unit: 's' },
      target: { ratio: 3 },
      detail: { ...detail, fuseNativeSeconds: round(fn.status) },
    }),
  ]
}

export async function runFuseSuite(): Promise<SuiteResult> {
  const startedAt = new Date().toISOString()
  // On the same disk as the native baselines: /var/tmp, not a tmpfs.
  const work = await mkdtemp(path.join('/var/tmp', 's0-bench-fuse-'))
  await chmod(work, 0o755) // as root, the embedded Postgres runs as `postgres` and must enter it
  const log = createLogger('warn')
  const { db, close } = await benchDatabase(work, log, TEAM)
  const figures: Figure[] = []
  try {
    const objects = await LocalObjectStore.open(path.join(work, 'objects'))
    note(`sequential and random I/O, ${SEQ_MIB} MiB, vs native`)
    figures.push(...(await benchSequential(db, objects, log, work)))
    note(`V2 small files (${V2_FILES}) and create / stat / delete (${META_FILES}), vs native`)
    figures.push(...(await benchSmallFiles(db, objects, log, work)))
    note(`git clone and status of a ${GIT_FILES}-file repository, vs native`)
    figures.push(...(await benchGit(db, objects, log, work)))
    note(`on S3 (s3rver), ${S3_MIB} MiB, vs rclone mount and s3fs`)
    figures.push(...(await benchS3Peers(db, log, work)))
  } finally {
    await close()
    await rm(work, { recursive: true, force: true })
  }
  return { suite: 'fuse', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
