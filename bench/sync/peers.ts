// The sync suite's peers, run on the same trees in the same run: unison and rclone bisync for an
// initial sync into an empty local directory, rsync's delta transfer for the bytes a change costs,
// git status for a no-change rescan. None of them sees our state directory (.s0sync).
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { mustSucceed, runCmd, type CmdResult } from '../lib.js'

export const STATE_DIR_NAME = '.s0sync'

/** `unison -batch -auto <tree> <empty>`; its archives go to `home` (not ~/.unison). */
export async function unisonInitial(tree: string, empty: string, home: string): Promise<number> {
  await mkdir(home, { recursive: true })
  await mkdir(empty, { recursive: true })
  const r = await runCmd('unison', ['-batch', '-auto', '-ignore', `Name ${STATE_DIR_NAME}`, tree, empty], {
    env: { ...process.env, UNISON: home },
    stdoutMaxBytes: 1024 * 1024,
  })
  return mustSucceed(r, 'unison').seconds
}

/** `rclone bisync <tree> <empty> --resync`; its listings go to `workdir` (not ~/.cache). */
export async function rcloneInitial(tree: string, empty: string, workdir: string): Promise<number> {
  await mkdir(workdir, { recursive: true })
  await mkdir(empty, { recursive: true })
  const r = await runCmd('rclone', [
    'bisync',
    tree,
    empty,
    '--resync',
    '--workdir',
    workdir,
    '--exclude',
    `/${STATE_DIR_NAME}/**`,
  ])
  return mustSucceed(r, 'rclone bisync').seconds
}

/** `rsync -a --no-whole-file --stats <tree>/ <old>/`: its "Total bytes sent" and wall time. */
export async function rsyncDelta(tree: string, old: string): Promise<{ bytesSent: number; seconds: number }> {
  const r = mustSucceed(
    await runCmd('rsync', [
      '-a',
      '--no-whole-file',
      '--stats',
      `--exclude=/${STATE_DIR_NAME}/`,
      `${tree}/`,
      `${old}/`,
    ]),
    'rsync',
  )
  const m = /^Total bytes sent:\s*([\d,.]+)/m.exec(r.stdout)
  if (!m?.[1]) throw new Error(`rsync --stats printed no "Total bytes sent": ${r.stdout.slice(-1000)}`)
  return { bytesSent: Number(m[1].replace(/[,.]/g, '')), seconds: r.seconds }
}

/**
 * A repository for `tree` whose git directory lives outside it (`gitDir`), everything committed:
 * the tree the sync client sees stays exactly the tree, with no .git in it.
 */
export class GitPeer {
  constructor(
    private readonly tree: string,
    private readonly gitDir: string,
  ) {}

  private git(args: string[]): Promise<CmdResult> {
    return runCmd('git', [`--git-dir=${this.gitDir}`, `--work-tree=${this.tree}`, ...args])
  }

  async init(): Promise<void> {
    mustSucceed(await runCmd('git', ['init', '-q', '--bare', this.gitDir]), 'git init')
    mustSucceed(await this.git(['config', 'core.bare', 'false']), 'git config')
    await writeFile(path.join(this.gitDir, 'info', 'exclude'), `/${STATE_DIR_NAME}/\n`)
  }

  async commitAll(message: string): Promise<void> {
    mustSucceed(await this.git(['add', '-A']), 'git add')
    const who = ['-c', 'user.email=bench@s0', '-c', 'user.name=bench']
    mustSucceed(await this.git([...who, 'commit', '-q', '--allow-empty', '-m', message]), 'git commit')
  }

  /** `git status --porcelain`: wall seconds and the number of changed paths it listed. */
  async status(): Promise<{ seconds: number; changed: number }> {
    const r = mustSucceed(await this.git(['status', '--porcelain']), 'git status')
    return { seconds: r.seconds, changed: r.stdout.split('\n').filter((l) => l.trim() !== '').length }
  }
}
