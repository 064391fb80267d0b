// The embedded Postgres every command opens (openDatabase): servers with different state
// directories run side by side (a Unix socket each, no TCP port unless S0_PG_PORT), a state
// directory made by `mktemp -d` (0700) works as it is, a deep one gets a short socket directory,
// a second opener adopts the running server, and S0_PG_PORT adds a TCP listener for psql.
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/core/config.js'
import { openDatabase, type Database } from '../../src/core/database.js'
import { openDb } from '../../src/core/db.js'
import { silentLogger } from '../../src/core/log.js'
import { freePort } from '../../tools/free-port.js'

let tmp: string
let privateState: string
let deepState: string
const open: Database[] = []

async function openAt(stateDir: string, env: NodeJS.ProcessEnv = {}): Promise<Database> {
  const database = await openDatabase(loadConfig({ S0_STATE_DIR: stateDir, ...env }), silentLogger)
  open.push(database)
  return database
}

async function setting(database: Database, name: string): Promise<string> {
  const { rows } = await database.db.query<{ v: string }>('SELECT current_setting($1) AS v', [name])
  return rows[0]?.v ?? ''
}

/** Where the server's files went: the state directory's pg/, or the home it links to. */
async function serverHomeOf(stateDir: string): Promise<string> {
  return readlink(path.join(stateDir, 'pg', 'home')).catch(() => path.join(stateDir, 'pg'))
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 's0-db-'))
  await chmod(tmp, 0o755)
  // What `mktemp -d` makes: mode 0700, owned by us (root here: postgres runs as another user).
  privateState = await mkdtemp(path.join(tmp, 'private-'))
  // Deep enough that <state>/pg/.s.PGSQL.5432 does not fit in a socket address (107 bytes).
  deepState = path.join(tmp, 'd'.repeat(60), 'e'.repeat(60))
  await mkdir(deepState, { recursive: true })
})

afterAll(async () => {
  for (const database of open.reverse()) await database.close({ stopServer: 'always' })
  for (const dir of [privateState, deepState]) {
    const home = await serverHomeOf(dir)
    if (!home.startsWith(tmp)) await rm(home, { recursive: true, force: true })
  }
  await rm(tmp, { recursive: true, force: true })
})

describe('embedded postgres', () => {
  it('runs two servers side by side: a 0700 state directory and a deep one', async () => {
    const [a, b] = await Promise.all([openAt(privateState), openAt(deepState)])
    expect(await setting(a, 'data_directory')).not.toBe(await setting(b, 'data_directory'))
    for (const database of [a, b]) {
      expect(await setting(database, 'listen_addresses')).toBe('')
      expect(new URL(database.url).hostname).toMatch(/^%2F/)
    }
    // The user's directory was not opened up for the postgres user.
    expect((await lstat(privateState)).mode & 0o777).toBe(0o700)
    const deepHome = await serverHomeOf(deepState)
    expect(Buffer.byteLength(path.join(deepHome, '.s.PGSQL.5432'))).toBeGreaterThan(107)
    expect(await setting(b, 'unix_socket_directories')).not.toBe(deepHome)

    // A second opener (a CLI command next to the server) adopts the running server.
    const again = await openAt(privateState)
    expect(await setting(again, 'data_directory')).toBe(await setting(a, 'data_directory'))
    await again.close({ stopServer: 'if-started' })
    open.splice(open.indexOf(again), 1)
    expect(await setting(a, 'listen_addresses')).toBe('')
  }, 180_000)

  it('also listens on 127.0.0.1:S0_PG_PORT when it is set', async () => {
    for (const database of open.splice(0)) await database.close({ stopServer: 'always' })
    const port = await freePort()
    const database = await openAt(privateState, { S0_PG_PORT: String(port) })
    expect(await setting(database, 'listen_addresses')).toBe('127.0.0.1')
    const password = (await readFile(path.join(privateState, 'pg', 'password'), 'utf8')).trim()
    const tcp = openDb(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`, {
      poolSize: 1,
    })
    try {
      const { rows } = await tcp.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migrations')
      expect(rows[0]?.n).toBeGreaterThan(0)
    } finally {
      await tcp.close()
    }
  }, 120_000)
})
