// The restic peer: `restic backup` and `restic restore` of the same tree into a local repository
// (compression off, no cache), with restic's own summary and its pack reads counted under strace.
import { open, readFile, readdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { GiB, commandExists, mustSucceed, round, runCmd } from '../lib.js'

export const RESTIC = '/usr/bin/restic'
const RESTIC_ENV = { ...process.env, RESTIC_PASSWORD: 's0-bench', RESTIC_PROGRESS_FPS: '0.2' }

export interface ResticSummary {
  data_added: number
  total_duration: number
  files_new: number
  files_changed: number
  files_unmodified: number
  total_bytes_processed: number
  snapshot_id: string
}

export async function resticInit(repo: string): Promise<void> {
  mustSucceed(
    await runCmd(RESTIC, ['-r', repo, '--no-cache', 'init', '-q'], { env: RESTIC_ENV }),
    'restic init',
  )
}

export async function resticBackup(
  repo: string,
  tree: string,
): Promise<{ seconds: number; summary: ResticSummary }> {
  const r = mustSucceed(
    await runCmd(
      RESTIC,
      ['-r', repo, '--no-cache', 'backup', '--json', '--compression', 'off', '--host', 'bench', '.'],
      {
        env: RESTIC_ENV,
        cwd: tree,
      },
    ),
    'restic backup',
  )
  const line = r.stdout
    .split('\n')
    .reverse()
    .find((l) => l.includes('"message_type":"summary"'))
  if (!line) throw new Error(`restic backup printed no summary: ${r.stdout.slice(-500)}`)
  return { seconds: r.seconds, summary: JSON.parse(line) as ResticSummary }
}

export async function countFiles(dir: string): Promise<{ files: number; bytes: number }> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  let files = 0
  let bytes = 0
  for (const e of entries) {
    if (!e.isFile()) continue
    files++
    const fh = await open(path.join(e.parentPath, e.name), 'r')
    bytes += (await fh.stat()).size
    await fh.close()
  }
  return { files, bytes }
}

export async function resticRestoreGets(
  /** Scratch space for the restored tree and the trace. */
  work: string,
  repo: string,
  snapshot: string,
  bytes: number,
): Promise<{ value: number; detail: Record<string, unknown> } | { error: string }> {
  if (!(await commandExists('strace')))
    return { error: 'strace is not installed (needed to count restic pack reads)' }
  const target = path.join(work, 'restic-restore')
  const trace = path.join(work, 'restic-restore.strace')
  try {
    const r = mustSucceed(
      await runCmd(
        'strace',
        [
          '-f',
          '-qq',
          '-e',
          'trace=openat',
          '-o',
          trace,
          RESTIC,
          '-r',
          repo,
          '--no-cache',
          'restore',
          snapshot,
          '--target',
          target,
        ],
        { env: RESTIC_ENV },
      ),
      'restic restore',
    )
    const lines = (await readFile(trace, 'utf8')).split('\n')
    const dataDir = path.join(repo, 'data') + '/'
    const opens = lines.filter((l) => l.includes(dataDir) && !/= -1 /.test(l)).length
    const restored = await countFiles(target)
    return {
      value: opens / (bytes / GiB),
      detail: {
        packOpens: opens,
        restoredBytes: restored.bytes,
        restoredFiles: restored.files,
        seconds: round(r.seconds, 2),
        method:
          'restic restore under strace -e openat; each open of a data/ pack file is one backend Load (GET)',
      },
    }
  } finally {
    await rm(target, { recursive: true, force: true })
    await rm(trace, { force: true })
  }
}
