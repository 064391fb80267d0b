// A listening s0 API server with the sandbox service on a real OCI runtime (runc), a fresh
// database, the shared template cache, and cgroup / netns prefixes of its own.
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { EgressStack, SandboxService, type SandboxServiceOptions } from '../../src/sandboxes/index.js'
import { EventLog } from '../../src/core/events.js'
import { testSandboxCidr } from '../support/upstream.js'
import { buildServer, type BuildOptions } from '../../src/api/server.js'
import { loadConfig } from '../../src/core/config.js'
import { createLogger, silentLogger } from '../../src/core/log.js'
import { removeEmptyParent } from '../../src/runtime/cgroups.js'
import { DRIVER_NAMES, type DriverName } from '../../src/runtime/driver.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import { MountManager } from '../../src/fuse/mounts.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { CredentialSourceService, loadSecretKey } from '../../src/egress/credentials/index.js'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'
import { bootstrappedStateDir } from '../support/server.js'
import { openTestStore, type TestStore } from '../support/store.js'

export interface SandboxTestServer {
  t: TestStore
  svc: SandboxService
  engine: VolumeEngine
  mounts: MountManager
  app: FastifyInstance
  url: string
  token: string
  stateDir: string
  hostId: string
  cgroupPrefix: string
  netnsPrefix: string
  /** With `network`: the egress stack (proxy, resolver, sandbox network) and the event log. */
  egress?: EgressStack
  events: EventLog
  close(): Promise<void>
}

export async function startSandboxServer(
  opts: {
    driver?: DriverName
    execTimeoutMs?: number
    sweepIntervalMs?: number
    autoResumeWaitMs?: number
    /** S0_SANDBOX_DISK_BYTES: a sandbox's root when neither template nor claim sets one. */
    diskBytesDefault?: number
    /** buildServer options (extra plugins, bug handling). */
    build?: BuildOptions
    /**
     * Sandboxes get a network through the egress proxy: a pool of the test's own, names from
     * `hostsFile`, `resolver` as upstream DNS, `upstreamCaFile` trusted for re-originated TLS.
     */
    network?: { hostsFile: string; resolver: string; upstreamCaFile?: string }
    /** Where registry images are pulled (default: under the shared template cache). */
    imagesDir?: string
    /** Metrics sampling and webhook delivery (the service's options; tests shorten them). */
    metrics?: SandboxServiceOptions['metrics']
    webhooks?: SandboxServiceOptions['webhooks']
  } = {},
): Promise<SandboxTestServer> {
  const t = await openTestStore({ store: { diskCacheBytes: 0 } })
  const { stateDir, token } = await bootstrappedStateDir(t.tdb.db, 's0-sbx-server-')
  const tag = randomBytes(3).toString('hex')
  const cgroupPrefix = `s0test-${tag}`
  const netnsPrefix = `s0t${tag}-`
  const hostId = `test-${tag}`
  const driver = opts.driver ?? 'runc'
  // The volume engine, its API and FUSE mounts: volumes at claim and root-filesystem state.
  const engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  const mounts = new MountManager({ engine, log: silentLogger, rootDir: path.join(stateDir, 'mounts') })
  // S0_TEST_LOG=debug shows what the sandbox service, the proxy and the resolver decided.
  const log = process.env['S0_TEST_LOG'] ? createLogger(process.env['S0_TEST_LOG'] as 'debug') : silentLogger
  const key = await loadSecretKey({ stateDir })
  const events = new EventLog(t.tdb.db, silentLogger, hostId)
  const credentials = new CredentialSourceService({ db: t.tdb.db, key, log: silentLogger })
  const pool = opts.network ? await testSandboxCidr() : undefined
  const egress =
    opts.network && pool
      ? await EgressStack.open({
          db: t.tdb.db,
          key,
          events,
          credentials: credentials.resolver,
          stateDir: path.join(stateDir, 'egress'),
          tag,
          cidr: pool.cidr,
          resolverUpstream: opts.network.resolver,
          hostsFile: opts.network.hostsFile,
          upstreamCaFile: opts.network.upstreamCaFile,
          log,
        })
      : undefined
  const svc = await SandboxService.open({
    log,
    mounts,
    ...(egress ? { network: { network: egress.network, egress: egress.egress } } : {}),
    credentials: credentials.resolver,
    events,
    ...(opts.autoResumeWaitMs !== undefined ? { autoResumeWaitMs: opts.autoResumeWaitMs } : {}),
    ...(opts.diskBytesDefault !== undefined ? { diskBytesDefault: opts.diskBytesDefault } : {}),
    db: t.tdb.db,
    templates: new TemplateStore({ dir: TEMPLATE_CACHE_DIR }),
    // Registry credentials sealed with the state directory's secret key.
    images: { key, ...(opts.imagesDir ? { dir: opts.imagesDir } : {}) },
    stateDir: path.join(stateDir, 'runtime'),
    hostId,
    preference: [driver],
    cgroupPrefix,
    netnsPrefix,
    sweepIntervalMs: opts.sweepIntervalMs ?? 200,
    ...(opts.execTimeoutMs ? { execTimeoutMs: opts.execTimeoutMs } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
    ...(opts.webhooks ? { webhooks: opts.webhooks } : {}),
  })
  const app = buildServer(
    {
      db: t.tdb.db,
      chunkStore: t.store,
      sandboxes: svc,
      volumes: engine,
      mounts,
      credentials,
      config: loadConfig({ S0_STATE_DIR: stateDir }),
      log: silentLogger,
    },
    opts.build,
  )
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return {
    t,
    svc,
    engine,
    mounts,
    app,
    url,
    token,
    stateDir,
    hostId,
    cgroupPrefix,
    netnsPrefix,
    ...(egress ? { egress } : {}),
    events,
    close: async () => {
      await app.close()
      await svc.close({ stopSandboxes: true })
      await egress?.close({ removeAll: true })
      await pool?.release()
      await events.close()
      await mounts.close()
      await engine.close()
      for (const d of DRIVER_NAMES) await removeEmptyParent(`${cgroupPrefix}-${d}`)
      await t.close()
      await rm(stateDir, { recursive: true, force: true })
    },
  }
}

// Response bodies are checked field by field in the tests; their shape is the API contract's.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any

/**
 * A raw call to the server's `/api/v1` (what the SDK hides: statuses, headers, extensions): a
 * JSON body, or a string sent as octet-stream; the answer parsed as JSON when it is JSON.
 */
export async function apiCall(
  server: { url: string; token: string },
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Json }> {
  const res = await fetch(`${server.url}/api/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${server.token}`,
      ...(body !== undefined && typeof body !== 'string' ? { 'content-type': 'application/json' } : {}),
      ...(typeof body === 'string' ? { 'content-type': 'application/octet-stream' } : {}),
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let json: Json
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { status: res.status, json }
}
