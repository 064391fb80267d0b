// `s0 sync`: bidirectional workspace sync between a local folder and a volume directory of a
// running server (docs/SYNC.md). Foreground with one status line by default; `--daemon` in the
// background with a log; `list | status | stop | conflicts | resolve` manage sessions. A
// session's state lives in `<dir>/.s0sync/`; the list of sessions in the user's state directory.
import { spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { ApiClient, resolveConnection } from './api-client.js'
import { parseFlags } from './flags.js'
import type { ModeOptions, SyncMode } from './sync/reconcile.js'
import { SyncRemote } from './sync/remote.js'
import { SyncError, SyncSession, type SessionStatus } from './sync/session.js'
import { SyncState } from './sync/state.js'

const USAGE = `usage: s0 sync <local-dir> <volume-id>[:/path] [options]
       s0 sync list
       s0 sync status|stop|conflicts [<local-dir>]
       s0 sync resolve <path> --keep local|remote|both
       s0 sync resolve --confirm-deletes [<local-dir>]

Keeps <local-dir> and the volume directory in sync both ways, live, until Ctrl-C.
  --mode two-way-safe        (default) a change the other side has not seen is never overwritten;
                             a conflict keeps both versions (the remote one as
                             <name>.conflict-remote-<time>) and is listed by \`s0 sync conflicts\`
  --mode two-way-resolved --winner local|remote
  --mode one-way-replica --from local|remote
  --init-from local|remote   first sync when both sides have content: who wins where both have a path
  --include-vcs              sync .git/ too (excluded by default; .gitignore, .git/info/exclude
                             and .s0ignore always apply)
  --confirm-deletes          apply a change deleting more than half of the tree (or 1,000 entries)
                             without pausing to ask
  --once                     one full pass, then exit;  --json: its figures as one JSON object
  --daemon                   run in the background (log: <local-dir>/.s0sync/log)
Server and token: S0_API_URL and S0_TOKEN (or S0_STATE_DIR of \`s0 server\`).
`

interface Registered {
  dir: string
  volume: string
  pid: number
}

function registryFile(): string {
  const base = process.env['XDG_STATE_HOME'] || path.join(os.homedir(), '.local', 'state')
  return path.join(base, 's0', 'syncs.json')
}

async function registry(): Promise<Registered[]> {
  return JSON.parse(await readFile(registryFile(), 'utf8').catch(() => '[]')) as Registered[]
}

async function register(r: Registered | { dir: string; remove: true }): Promise<void> {
  const list = (await registry()).filter((x) => x.dir !== r.dir)
  if (!('remove' in r)) list.push(r)
  await mkdir(path.dirname(registryFile()), { recursive: true })
  const tmp = `${registryFile()}.${process.pid}`
  await writeFile(tmp, JSON.stringify(list, null, 1))
  await rename(tmp, registryFile())
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The synced folder holding `p` (the nearest parent with a .s0sync/). */
async function syncRootOf(p: string): Promise<string> {
  let d = path.resolve(p)
  for (;;) {
    if (
      await stat(SyncState.stateDir(d)).then(
        () => true,
        () => false,
      )
    )
      return d
    const up = path.dirname(d)
    if (up === d) throw new S0Error('not_found', `${p} is not inside a synced folder (no .s0sync/ above it)`)
    d = up
  }
}

function statusLine(s: SessionStatus): string {
  const mb = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`
  const parts = [
    s.phase,
    `↑${s.pendingUp} ↓${s.pendingDown} pending`,
    `sent ${mb(s.bytesUp)} received ${mb(s.bytesDown)}`,
    `conflicts ${s.conflicts}`,
  ]
  if (s.lastChange) parts.push(`last change ${s.lastChange.slice(11, 19)}`)
  return parts.join(' · ')
}

function modeOf(flags: Record<string, unknown>): ModeOptions {
  const mode = (flags['mode'] as string | undefined) ?? 'two-way-safe'
  if (!['two-way-safe', 'two-way-resolved', 'one-way-replica'].includes(mode))
    throw new S0Error('bad_request', '--mode must be two-way-safe, two-way-resolved or one-way-replica')
  const side = (name: string): 'local' | 'remote' | undefined => {
    const v = flags[name] as string | undefined
    if (v !== undefined && v !== 'local' && v !== 'remote')
      throw new S0Error('bad_request', `--${name} must be local or remote`)
    return v
  }
  const winner = side('winner')
  const from = side('from')
  if (mode === 'two-way-resolved' && !winner)
    throw new S0Error('bad_request', '--mode two-way-resolved needs --winner local|remote')
  if (mode === 'one-way-replica' && !from)
    throw new S0Error('bad_request', '--mode one-way-replica needs --from local|remote')
  if (mode === 'two-way-safe' && (winner || from))
    throw new S0Error('bad_request', '--winner and --from go with the other modes')
  const m = mode as SyncMode
  return m === 'two-way-resolved'
    ? { mode: m, winner: winner as 'local' | 'remote' }
    : m === 'one-way-replica'
      ? { mode: m, winner: from as 'local' | 'remote' }
      : { mode: m }
}

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    boolean: ['once', 'json', 'daemon', 'include-vcs', 'confirm-deletes', 'help'],
    string: ['mode', 'winner', 'from', 'init-from', 'keep'],
  })
  if (flags.help) {
    process.stdout.write(USAGE)
    return 0
  }
  const [first, second] = flags._
  switch (first) {
    case 'list':
      return list()
    case 'status':
      return status(second ?? '.')
    case 'stop':
      return stop(second ?? '.')
    case 'conflicts':
      return conflicts(second ?? '.')
    case 'resolve':
      return resolveCmd(second, flags)
  }
  if (!first || !second || flags._.length > 2) {
    process.stderr.write(USAGE)
    return 2
  }
  const localDir = path.resolve(first)
  const colon = second.indexOf(':')
  const volumeId = colon < 0 ? second : second.slice(0, colon)
  const remoteRoot = colon < 0 ? '/' : second.slice(colon + 1) || '/'
  if (!remoteRoot.startsWith('/'))
    throw new S0Error('bad_request', 'the volume path is absolute: <volume-id>:/path')
  const mode = modeOf(flags)
  const initFrom = flags['init-from'] as string | undefined
  if (initFrom !== undefined && initFrom !== 'local' && initFrom !== 'remote')
    throw new S0Error('bad_request', '--init-from must be local or remote')
  const st = await stat(localDir).catch(() => null)
  if (!st) await mkdir(localDir, { recursive: true })
  else if (!st.isDirectory()) throw new S0Error('path_not_directory', `${localDir} is not a directory`)

  if (flags.daemon) return daemonize(localDir, volumeId, args)

  const conn = await resolveConnection()
  const remote = new SyncRemote(new ApiClient(conn), volumeId, remoteRoot, flags.once ? 30_000 : 60 * 60_000)
  const tty = process.stderr.isTTY && !flags.json
  let lastWrite = 0
  const statusFile = path.join(SyncState.stateDir(localDir), 'status.json')
  const session = new SyncSession({
    localRoot: localDir,
    remote,
    mode,
    ...(initFrom ? { initFrom: initFrom as 'local' | 'remote' } : {}),
    includeVcs: flags['include-vcs'] === true,
    confirmDeletes: flags['confirm-deletes'] === true,
    log: (line) => process.stderr.write(`${tty ? '\r\x1b[K' : ''}s0 sync: ${line}\n`),
    onStatus: (s) => {
      const now = Date.now()
      if (now - lastWrite < 200 && s.phase !== 'paused') return
      lastWrite = now
      if (tty) process.stderr.write(`\r\x1b[K${statusLine(s)}`)
      void writeFile(
        statusFile,
        JSON.stringify({ ...s, pid: process.pid, volume: `${volumeId}:${remoteRoot}` }),
      ).catch(() => undefined)
    },
  })
  const started = Date.now()
  try {
    await session.open()
    if (flags.once) {
      const r = await session.fullPass()
      const t = session.totals
      if (flags.json)
        process.stdout.write(
          JSON.stringify({
            pushed_files: r.pushedFiles,
            pulled_files: r.pulledFiles,
            bytes_sent: t.bytesSent,
            bytes_received: t.bytesReceived,
            conflicts: r.conflicts,
            seconds: (Date.now() - started) / 1000,
          }) + '\n',
        )
      else
        process.stderr.write(
          `${tty ? '\r\x1b[K' : ''}s0 sync: pushed ${r.pushedFiles} files (${t.bytesSent} bytes sent), pulled ${r.pulledFiles} files (${t.bytesReceived} bytes received), ${r.conflicts} conflicts\n`,
        )
      return 0
    }
    await register({ dir: localDir, volume: `${volumeId}:${remoteRoot}`, pid: process.pid })
    const stopOn = (): void => session.stop()
    process.once('SIGINT', stopOn)
    process.once('SIGTERM', stopOn)
    await session.live(() => process.stderr.write(`${tty ? '\r\x1b[K' : ''}s0 sync: live\n`))
    process.stderr.write(`${tty ? '\r\x1b[K' : ''}s0 sync: stopped\n`)
    await register({ dir: localDir, remove: true })
    return 0
  } catch (err) {
    if (err instanceof SyncError) {
      process.stderr.write(`${tty ? '\r\x1b[K' : ''}s0 sync: ${err.message} [${err.code}]\n`)
      return 1
    }
    throw err
  } finally {
    await session.close()
  }
}

async function daemonize(localDir: string, volume: string, args: string[]): Promise<number> {
  const stateDir = SyncState.stateDir(localDir)
  await mkdir(stateDir, { recursive: true })
  const pidFile = path.join(stateDir, 'pid')
  const old = Number(await readFile(pidFile, 'utf8').catch(() => '0'))
  if (old && alive(old))
    throw new S0Error(
      'conflict',
      `a sync of ${localDir} already runs (pid ${old}); \`s0 sync stop ${localDir}\``,
    )
  const logFd = openSync(path.join(stateDir, 'log'), 'a')
  const child = spawn(
    process.execPath,
    [...process.execArgv, process.argv[1] as string, 'sync', ...args.filter((a) => a !== '--daemon')],
    {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: process.env,
    },
  )
  closeSync(logFd)
  child.unref()
  await writeFile(pidFile, String(child.pid))
  await register({ dir: localDir, volume, pid: child.pid as number })
  process.stdout.write(
    `s0 sync: running in the background (pid ${child.pid}); log ${path.join(stateDir, 'log')}\n`,
  )
  return 0
}

async function list(): Promise<number> {
  const all = await registry()
  if (all.length === 0) {
    process.stdout.write('no sync sessions\n')
    return 0
  }
  for (const r of all)
    process.stdout.write(`${r.dir}\t${r.volume}\tpid ${r.pid}\t${alive(r.pid) ? 'running' : 'stopped'}\n`)
  return 0
}

async function status(dir: string): Promise<number> {
  const root = await syncRootOf(dir)
  const s = JSON.parse(
    await readFile(path.join(SyncState.stateDir(root), 'status.json'), 'utf8').catch(() => 'null'),
  ) as (SessionStatus & { pid: number; volume: string }) | null
  if (!s) {
    process.stdout.write(`${root}: never ran live\n`)
    return 0
  }
  const running = alive(s.pid)
  process.stdout.write(`${root} ⇄ ${s.volume}: ${running ? statusLine(s) : 'stopped'}\n`)
  if (s.pausedReason && running) process.stdout.write(`${s.pausedReason}\n`)
  return 0
}

async function stop(dir: string): Promise<number> {
  const root = await syncRootOf(dir)
  const reg = (await registry()).find((r) => r.dir === root)
  const pid =
    reg?.pid ?? Number(await readFile(path.join(SyncState.stateDir(root), 'pid'), 'utf8').catch(() => '0'))
  if (!pid || !alive(pid)) {
    process.stdout.write(`${root}: not running\n`)
    await register({ dir: root, remove: true })
    return 0
  }
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100))
  await register({ dir: root, remove: true })
  process.stdout.write(`${root}: stopped\n`)
  return 0
}

interface ListedConflict {
  path: string
  reason: string
  copy?: string
  at: string
}

async function conflictList(root: string): Promise<ListedConflict[]> {
  return JSON.parse(
    await readFile(path.join(SyncState.stateDir(root), 'conflicts.json'), 'utf8').catch(() => '[]'),
  ) as ListedConflict[]
}

async function conflicts(dir: string): Promise<number> {
  const root = await syncRootOf(dir)
  const list = await conflictList(root)
  if (list.length === 0) process.stdout.write('no conflicts\n')
  for (const c of list)
    process.stdout.write(`${c.path}\t${c.reason}${c.copy ? `\tother version: ${c.copy}` : ''}\t${c.at}\n`)
  return 0
}

async function resolveCmd(target: string | undefined, flags: Record<string, unknown>): Promise<number> {
  if (flags['confirm-deletes']) {
    const root = await syncRootOf(target ?? '.')
    await writeFile(path.join(SyncState.stateDir(root), 'confirm-deletes'), new Date().toISOString())
    process.stdout.write(`${root}: the pending deletions will be applied at the next pass\n`)
    return 0
  }
  const keep = flags['keep'] as string | undefined
  if (!target || !keep || !['local', 'remote', 'both'].includes(keep)) {
    process.stderr.write(USAGE)
    return 2
  }
  const root = await syncRootOf(path.dirname(path.resolve(target)))
  const rel = path.relative(root, path.resolve(target)).split(path.sep).join('/')
  const list = await conflictList(root)
  const mine = list.filter((c) => c.path === rel)
  if (mine.length === 0) throw new S0Error('not_found', `no conflict listed for ${rel}`)
  for (const c of mine) {
    if (!c.copy) continue
    const copy = path.join(root, ...c.copy.split('/'))
    // The copy is an ordinary synced file: removing or moving it here syncs like any edit.
    if (keep === 'local') await unlink(copy).catch(() => undefined)
    if (keep === 'remote') await rename(copy, path.join(root, ...rel.split('/'))).catch(() => undefined)
  }
  await writeFile(
    path.join(SyncState.stateDir(root), 'conflicts.json'),
    JSON.stringify(
      list.filter((c) => c.path !== rel),
      null,
      1,
    ),
  )
  process.stdout.write(`${rel}: kept ${keep}\n`)
  return 0
}
