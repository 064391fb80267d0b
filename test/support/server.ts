// A listening s0 API server for a test file: fresh database, real chunk store and volume
// engine, a bootstrap API key. `build` passes options to buildServer (limits, extra plugins).
import { spawn, type ChildProcess } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { ensureBootstrap } from '../../src/accounts/index.js'
import { buildServer, type BuildOptions } from '../../src/api/server.js'
import { serverOwnerId, serverTag } from '../../src/cli/server-command.js'
import { loadConfig } from '../../src/core/config.js'
import type { Db } from '../../src/core/db.js'
import { silentLogger } from '../../src/core/log.js'
import { SandboxNetwork } from '../../src/runtime/network.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { CredentialSourceService, loadSecretKey } from '../../src/egress/credentials/index.js'
import { freePort } from '../../tools/free-port.js'
import { freshDb, type TestDb } from './db.js'
import { openTestStore, type TestStore } from './store.js'
import { testSandboxCidr } from './upstream.js'

export interface TestServer {
  t: TestStore
  engine: VolumeEngine
  app: FastifyInstance
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  url: string
  token: string
  stateDir: string
  close(): Promise<void>
}

/** A fresh state directory with the first start's bootstrap done: the default team and its admin key. */
export async function bootstrappedStateDir(
  db: Db,
  prefix = 's0-test-server-',
): Promise<{ stateDir: string; token: string }> {
  const stateDir = await mkdtemp(path.join(os.tmpdir(), prefix))
  await ensureBootstrap(db, stateDir, silentLogger, { print: () => undefined })
  const token = (await readFile(path.join(stateDir, 'token'), 'utf8')).trim()
  return { stateDir, token }
}

export async function startTestServer(opts: { build?: BuildOptions } = {}): Promise<TestServer> {
  const t = await openTestStore({ store: { diskCacheBytes: 0 } })
  const { stateDir, token } = await bootstrappedStateDir(t.tdb.db)
  const engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  const app = buildServer(
    {
      db: t.tdb.db,
      chunkStore: t.store,
      volumes: engine,
      credentials: new CredentialSourceService({
        db: t.tdb.db,
        key: await loadSecretKey({ stateDir }),
        log: silentLogger,
      }),
      config: loadConfig({ S0_STATE_DIR: stateDir }),
      log: silentLogger,
    },
    opts.build,
  )
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return {
    t,
    engine,
    app,
    url,
    token,
    stateDir,
    close: async () => {
      await app.close()
      await engine.close()
      await t.close()
      await rm(stateDir, { recursive: true, force: true })
    },
  }
}

const S0_MAIN = path.join(import.meta.dirname, 's0-main.ts')

/**
 * A real `s0 server` process (run from source) on `port`, for crash tests: resolves once
 * /readyz answers. `env` adds or overrides variables (runtimes, log level...).
 */
export async function spawnServer(opts: {
  stateDir: string
  port: number
  databaseUrl: string
  env?: NodeJS.ProcessEnv
}): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', S0_MAIN, 'server'], {
    env: {
      ...process.env,
      S0_STATE_DIR: opts.stateDir,
      S0_PORT: String(opts.port),
      DATABASE_URL: opts.databaseUrl,
      S0_LOG_LEVEL: 'warn',
      UV_THREADPOOL_SIZE: '64',
      // Any free port: several test servers (and a user's own on 2222) run side by side.
      S0_SSH_PORT: '0',
      ...opts.env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  // ~5 s on a quiet 2-core host (tsx, the driver probe, reconcile); seen over 30 s while the
  // whole suite runs beside it. A server that exits fails at once.
  const deadline = Date.now() + 120_000
  for (let i = 0; i < 1_200 && Date.now() < deadline; i++) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`server exited before it was ready (${child.exitCode ?? child.signalCode})`)
    // Refused or reset: not listening yet, ask again.
    const up = await fetch(`http://127.0.0.1:${opts.port}/readyz`).then(
      (r) => r.ok,
      () => false,
    )
    if (up) return child
    await new Promise((r) => setTimeout(r, 100))
  }
  child.kill('SIGKILL')
  throw new Error('server did not become ready within 120 s')
}

/**
 * `s0 server` as real processes over one fresh database and state directory, started and
 * killed at will (crash tests): the first start bootstraps the admin key (`token()`).
 */
export interface ServerProcesses {
  tdb: TestDb
  stateDir: string
  port: number
  /** `http://127.0.0.1:PORT`. */
  url: string
  /** The running server, if any. */
  readonly process: ChildProcess | undefined
  /** Starts the server (again); resolves once /readyz answers. */
  start(): Promise<ChildProcess>
  /** The admin API key the first start wrote to the state directory. */
  token(): Promise<string>
  /** fetch(url + path) with the admin key. */
  api(path: string, init?: RequestInit): Promise<Response>
  /** SIGKILL (a crash) or SIGTERM (a clean stop) of the running server; waits for its exit. */
  kill(signal: 'SIGKILL' | 'SIGTERM'): Promise<void>
  /** Stops a running server (SIGTERM), drops the database, removes the state directory. */
  close(): Promise<void>
}

export async function serverProcesses(
  opts: { prefix?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ServerProcesses> {
  const tdb = await freshDb()
  const stateDir = await mkdtemp(path.join(os.tmpdir(), opts.prefix ?? 's0-test-proc-'))
  // Mounts under it are entered by other users (allow_other: sandboxes, fusermount's checks).
  await chmod(stateDir, 0o755)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  // A sandbox address pool of its own: two servers on the default range refuse to start while the
  // other has sandboxes (their routes overlap), and test files run side by side.
  const pool =
    opts.env?.['S0_SANDBOX_NETWORK'] === 'false' || opts.env?.['S0_SANDBOX_CIDR']
      ? undefined
      : await testSandboxCidr()
  const env = { ...opts.env, ...(pool ? { S0_SANDBOX_CIDR: pool.cidr } : {}) }
  let current: ChildProcess | undefined
  let token: string | undefined
  const kill = async (signal: 'SIGKILL' | 'SIGTERM'): Promise<void> => {
    const child = current
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    child.kill(signal)
    await exited
    current = undefined
  }
  const fixture: ServerProcesses = {
    tdb,
    stateDir,
    port,
    url,
    get process() {
      return current
    },
    start: async () => {
      current = await spawnServer({
        stateDir,
        port,
        databaseUrl: tdb.url,
        env,
      })
      return current
    },
    token: async () => (token ??= (await readFile(path.join(stateDir, 'token'), 'utf8')).trim()),
    api: async (p, init = {}) =>
      fetch(url + p, {
        ...init,
        headers: { authorization: `Bearer ${await fixture.token()}`, ...(init.headers ?? {}) },
      }),
    kill,
    close: async () => {
      await kill('SIGTERM')
      // A server killed before (a crash test) left its veths and nftables table.
      await SandboxNetwork.remove(serverTag(serverOwnerId(stateDir)))
      await pool?.release()
      await tdb.drop()
      await rm(stateDir, { recursive: true, force: true })
    },
  }
  return fixture
}
