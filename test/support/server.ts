// A listening s0 API server for a test file: fresh database, real chunk store and volume
// engine, a bootstrap API key. `build` passes options to buildServer (limits, extra plugins).
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { ensureBootstrap } from '../../src/accounts/index.js'
import { buildServer, type BuildOptions } from '../../src/api/server.js'
import { loadConfig } from '../../src/core/config.js'
import { silentLogger } from '../../src/core/log.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { openTestStore, type TestStore } from './store.js'

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

export async function startTestServer(opts: { build?: BuildOptions } = {}): Promise<TestServer> {
  const t = await openTestStore({ store: { diskCacheBytes: 0 } })
  const stateDir = await mkdtemp(path.join(os.tmpdir(), 's0-test-server-'))
  await ensureBootstrap(t.tdb.db, stateDir, silentLogger, { print: () => undefined })
  const token = (await readFile(path.join(stateDir, 'token'), 'utf8')).trim()
  const engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  const app = buildServer(
    {
      db: t.tdb.db,
      chunkStore: t.store,
      volumes: engine,
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
      ...opts.env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  for (let i = 0; i < 300; i++) {
    const up = await fetch(`http://127.0.0.1:${opts.port}/readyz`).then(
      (r) => r.ok,
      () => false,
    )
    if (up) return child
    await new Promise((r) => setTimeout(r, 100))
  }
  child.kill('SIGKILL')
  throw new Error('server did not become ready')
}
