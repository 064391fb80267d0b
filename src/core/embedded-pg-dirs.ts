// Where the embedded Postgres keeps its files, and who owns them. As root the server runs as the
// `postgres` OS user, which must reach its data directory and socket; the user's state directory
// (often `mktemp -d`, mode 0700) is never opened up for that: the files move somewhere it can reach.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chmod, chown, lstat, mkdir, readlink, rm, symlink } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { S0Error } from './errors.js'
import { randomHexId } from './ids.js'
import type { Logger } from './log.js'

const execFileAsync = promisify(execFile)

/** The uid/gid the server runs as; undefined when it runs as this process's user. */
export type ServerUser = { uid: number; gid: number } | undefined

/**
 * Postgres homes moved out of state directories the `postgres` user cannot enter, one per state
 * directory (a random id, linked from `$S0_STATE_DIR/pg/home`).
 */
export const RELOCATED_HOMES_DIR = '/var/lib/s0/pg'
/** Short socket directories for homes whose path would make the socket path too long (root). */
const ROOT_SOCKET_BASE = '/run/s0'
/** sun_path is 108 bytes with its NUL: Postgres refuses a longer socket path. */
const SOCKET_PATH_BYTES_MAX = 107
/** Paths Postgres's unix_socket_directories takes unquoted (a comma separates entries). */
const PLAIN_PATH = /^[\w./+@-]+$/

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

/** As root: the `postgres` user's ids, creating the user (a system user, no login) if missing. */
export async function serverUser(): Promise<ServerUser> {
  if (!isRoot()) return undefined
  const existing = await userIds('postgres')
  if (existing) return existing
  await execFileAsync('groupadd', ['-f', '--system', 'postgres'])
  await execFileAsync('useradd', [
    '--system',
    '--gid',
    'postgres',
    '--home-dir',
    '/nonexistent',
    '--no-create-home',
    '--shell',
    '/usr/sbin/nologin',
    'postgres',
  ])
  const made = await userIds('postgres')
  if (!made) throw new S0Error('config_invalid', 'could not create the postgres OS user')
  return made
}

async function userIds(name: string): Promise<ServerUser> {
  try {
    const { stdout: uid } = await execFileAsync('id', ['-u', name])
    const { stdout: gid } = await execFileAsync('id', ['-g', name])
    return { uid: Number(uid.trim()), gid: Number(gid.trim()) }
  } catch {
    return undefined // `id` exits 1 for an unknown user: the caller creates it
  }
}

/** Whether `user` can search `dir` (and so reach what is under it): every ancestor included. */
export async function canEnter(user: ServerUser, dir: string): Promise<boolean> {
  if (!user) return true
  // `test` answers with its exit status: any failure means "cannot", and the caller then picks
  // a place it can (a wrong "cannot" costs only a relocation, never access).
  return execFileAsync('/usr/bin/test', ['-x', dir], user).then(
    () => true,
    () => false,
  )
}

/**
 * The directory the server owns (data/, postgres.log, usually its socket). `dir` itself, as
 * before, unless we are root and the `postgres` user cannot reach it: then a fresh directory
 * under RELOCATED_HOMES_DIR, recorded as the symlink `dir/home` so the choice never changes.
 */
export async function serverHome(dir: string, user: ServerUser, log: Logger): Promise<string> {
  if (!user) return dir
  const link = path.join(dir, 'home')
  const recorded = await readlink(link).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (recorded !== undefined) return recorded
  // A database made in place by an earlier start stays there; so does a new one it can reach.
  if (existsSync(path.join(dir, 'data', 'PG_VERSION')) || (await canEnter(user, path.dirname(dir)))) {
    await chown(dir, user.uid, user.gid)
    return dir
  }
  const home = path.join(RELOCATED_HOMES_DIR, randomHexId(8))
  await traversableDir(RELOCATED_HOMES_DIR)
  await ownedDir(home, user)
  try {
    await symlink(home, link)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    // Another process starting on the same state directory linked its own first: use that.
    await rm(home, { recursive: true, force: true })
    return readlink(link)
  }
  log.info('the postgres user cannot enter the state directory; embedded postgres lives outside it', {
    home,
    link,
  })
  return home
}

/**
 * The socket directory: the home itself when the socket path fits in sun_path and needs no
 * quoting, else a short directory derived from the home (the same one at every start).
 */
export async function socketDir(home: string, port: number, user: ServerUser): Promise<string> {
  if (fitsSocket(home, port) && PLAIN_PATH.test(home)) return home
  const base = user ? ROOT_SOCKET_BASE : os.tmpdir()
  const dir = path.join(base, `s0-pg-${createHash('sha256').update(home).digest('hex').slice(0, 16)}`)
  if (!fitsSocket(dir, port) || !PLAIN_PATH.test(dir))
    throw new S0Error(
      'config_invalid',
      `no usable socket directory for the embedded postgres: ${dir} is too long or unusual (set TMPDIR)`,
    )
  if (user) await traversableDir(base)
  await ownedDir(dir, user)
  return dir
}

function fitsSocket(dir: string, port: number): boolean {
  return Buffer.byteLength(path.join(dir, `.s.PGSQL.${port}`)) <= SOCKET_PATH_BYTES_MAX
}

/**
 * A root-owned directory of ours the `postgres` user must pass through to reach its own
 * subdirectory: mode 0711, search without read, so it cannot list the other instances there.
 */
async function traversableDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o711 })
  const st = await lstat(dir)
  if (!st.isDirectory() || st.uid !== 0)
    throw new S0Error('config_invalid', `${dir} must be a directory owned by root`)
  if ((st.mode & 0o7777) !== 0o711) await chmod(dir, 0o711)
}

/**
 * A directory only the server's user may use (0700). It may live in a shared place (/tmp), so
 * one found there already must be a real directory of that user, writable by nobody else.
 */
async function ownedDir(dir: string, user: ServerUser): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err
  })
  const uid = user?.uid ?? process.getuid?.()
  if (user) {
    const st = await lstat(dir)
    if (st.isDirectory() && st.uid === 0) await chown(dir, user.uid, user.gid)
  }
  const st = await lstat(dir)
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0)
    throw new S0Error(
      'config_invalid',
      `${dir} must be a directory of uid ${uid} with mode 0700 (it is used for the embedded postgres)`,
    )
}
