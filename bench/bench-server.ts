// The s0 server the sandbox benches measure: embedded Postgres, a local object store, the volume
// engine with FUSE mounts (root-filesystem checkpoints), the sandbox service on the shared
// template cache, by default with the sandbox network (veth, address, egress proxy) as `s0
// server` runs it, and the HTTP API on a loopback port.
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { ensureBootstrap } from '../src/accounts/index.js'
import { buildServer } from '../src/api/server.js'
import { ChunkStore } from '../src/blockstore/chunk-store.js'
import { LocalObjectStore } from '../src/blockstore/local-object-store.js'
import { ResilientObjectStore } from '../src/blockstore/resilient-object-store.js'
import { loadConfig } from '../src/core/config.js'
import { openDb, type Db } from '../src/core/db.js'
import { startEmbeddedPg, type EmbeddedPg } from '../src/core/embedded-pg.js'
import { EventLog } from '../src/core/events.js'
import { createLogger } from '../src/core/log.js'
import { migrate } from '../src/core/migrate.js'
import { CredentialSourceService, loadSecretKey } from '../src/egress/credentials/index.js'
import { MountManager } from '../src/fuse/mounts.js'
import { removeCgroup, removeEmptyParent } from '../src/runtime/cgroups.js'
import { DRIVER_NAMES } from '../src/runtime/driver.js'
import { TemplateStore } from '../src/runtime/templates.js'
import { EgressStack, SandboxService } from '../src/sandboxes/index.js'
import { VolumeEngine } from '../src/snapshots/engine.js'
import { testSandboxCidr } from '../test/support/upstream.js'
import { freePort, note } from './lib.js'
import type { Env } from './sandbox-api.js'

/** Shared with the tests, so the Debian template (~1 min to build) is built once per machine. */
export const TEMPLATE_DIR = process.env['S0_BENCH_TEMPLATE_DIR'] ?? '/var/tmp/s0-test-templates'

export interface BenchServer {
  env: Env
  templates: TemplateStore
  egress: EgressStack | undefined
  events: EventLog
  withNetwork: boolean
  close(): Promise<void>
}

/**
 * Starts the server under test in a fresh work directory. S0_BENCH_NETWORK=false runs the
 * sandboxes without a network (loopback only).
 */
export async function openBenchServer(
  prefix: string,
  /** `record: false`: no event log and no output logs (the observability bench's "off" side). */
  opts: { record?: boolean } = {},
): Promise<BenchServer> {
  const work = await mkdtemp(path.join(os.tmpdir(), prefix))
  await chmod(work, 0o755) // as root, the embedded Postgres runs as `postgres` and must enter it
  const log = createLogger('warn')
  const tag = randomBytes(3).toString('hex')
  const withNetwork = process.env['S0_BENCH_NETWORK'] !== 'false'
  let pg: EmbeddedPg | undefined
  let db: Db | undefined
  let svc: SandboxService | undefined
  let app: FastifyInstance | undefined
  let store: ChunkStore | undefined
  let engine: VolumeEngine | undefined
  let mounts: MountManager | undefined
  let egress: EgressStack | undefined
  let events: EventLog | undefined
  let pool: { cidr: string; release(): Promise<void> } | undefined
  const close = async (): Promise<void> => {
    await app?.close()
    await svc?.close({ stopSandboxes: true })
    await egress?.close({ removeAll: true })
    await pool?.release()
    await events?.close()
    await mounts?.close()
    await engine?.close()
    // Empty cgroup parents: one left (a process still in it) is harmless and named by this run.
    for (const d of DRIVER_NAMES) await removeEmptyParent(`s0bench-${tag}-${d}`).catch(() => undefined)
    await removeCgroup(`/s0bench-${tag}-bare`).catch(() => undefined)
    await store?.close()
    await db?.close()
    await pg?.stop()
    await rm(work, { recursive: true, force: true })
  }
  try {
    pg = await startEmbeddedPg({ dir: path.join(work, 'pg'), port: await freePort(), log })
    db = openDb(pg.url, { applicationName: 's0-bench' })
    await migrate(db, log)
    const stateDir = path.join(work, 'state')
    await mkdir(stateDir, { recursive: true })
    await ensureBootstrap(db, stateDir, log, { print: () => undefined })
    const token = (await readFile(path.join(stateDir, 'token'), 'utf8')).trim()
    const templates = new TemplateStore({ dir: TEMPLATE_DIR })
    note(`templates in ${TEMPLATE_DIR} (the Debian one is built if missing or stale)`)
    await templates.ensure('default')
    const runtimeDir = path.join(stateDir, 'runtime')
    store = await ChunkStore.open({
      db,
      objects: new ResilientObjectStore(await LocalObjectStore.open(path.join(work, 'objects'))),
      log,
      diskCacheDir: path.join(work, 'cache'),
    })
    engine = new VolumeEngine({ db, chunks: store, log })
    mounts = new MountManager({ engine, log, rootDir: path.join(work, 'mounts') })
    const key = await loadSecretKey({ stateDir })
    const credentials = new CredentialSourceService({ db, key, log })
    events = new EventLog(db, log, `bench-${tag}`)
    if (withNetwork) {
      pool = await testSandboxCidr()
      egress = await EgressStack.open({
        db,
        key,
        events,
        credentials: credentials.resolver,
        stateDir: path.join(stateDir, 'egress'),
        tag: tag.slice(0, 6),
        cidr: pool.cidr,
        // Loopback where nothing listens: no sandbox of the bench resolves anything.
        resolverUpstream: `127.0.0.1:${await freePort()}`,
        log,
      })
    }
    note(`sandbox network: ${withNetwork ? `on (${pool?.cidr})` : 'off (S0_BENCH_NETWORK=false)'}`)
    svc = await SandboxService.open({
      ...(egress ? { network: { network: egress.network, egress: egress.egress } } : {}),
      credentials: credentials.resolver,
      ...(opts.record === false ? { recordOutput: false } : { events }),
      db,
      templates,
      stateDir: runtimeDir,
      hostId: `bench-${tag}`,
      cgroupPrefix: `s0bench-${tag}`,
      netnsPrefix: `s0b${tag}-`,
      mounts,
      sweepIntervalMs: 100,
      log,
    })
    app = buildServer({
      db,
      chunkStore: store,
      sandboxes: svc,
      volumes: engine,
      mounts,
      config: loadConfig({ S0_STATE_DIR: stateDir }),
      log,
    })
    const url = await app.listen({ host: '127.0.0.1', port: 0 })
    return {
      env: { db, url, token, svc, runtimeDir, work, tag },
      templates,
      egress,
      events,
      withNetwork,
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}
