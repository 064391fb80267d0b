// A listening s0 server for the template tests: the sandbox service on runc (no sandbox network:
// these tests only run commands), a fresh database, the shared built-in template cache, and a
// directory of its own for pulled images (so every run pulls for real and the shared cache does
// not grow); registry credentials sealed with the state directory's secret key.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { createApiKey } from '../../src/accounts/index.js'
import { buildServer } from '../../src/api/server.js'
import { loadConfig } from '../../src/core/config.js'
import { asTeamId } from '../../src/core/ids.js'
import { silentLogger } from '../../src/core/log.js'
import { CredentialSourceService, loadSecretKey } from '../../src/egress/credentials/index.js'
import { MountManager } from '../../src/fuse/mounts.js'
import { removeEmptyParent } from '../../src/runtime/cgroups.js'
import { DRIVER_NAMES } from '../../src/runtime/driver.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import { SandboxService } from '../../src/sandboxes/index.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'
import { bootstrappedStateDir } from '../support/server.js'
import { openTestStore, type TestStore } from '../support/store.js'

export interface TemplateTestServer {
  t: TestStore
  svc: SandboxService
  url: string
  /** The bootstrap (admin) key of the first team. */
  token: string
  /** A member (non-admin) key of the same team. */
  memberToken: string
  /** An admin key of another team. */
  strangerToken: string
  imagesDir: string
  app: FastifyInstance
  close(): Promise<void>
}

export async function startTemplateServer(): Promise<TemplateTestServer> {
  const t = await openTestStore({ store: { diskCacheBytes: 0 } })
  const { stateDir, token } = await bootstrappedStateDir(t.tdb.db, 's0-tpl-server-')
  const imagesDir = await mkdtemp(path.join(tmpdir(), 's0-tpl-images-'))
  const tag = randomBytes(3).toString('hex')
  const cgroupPrefix = `s0test-${tag}`
  const engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  const mounts = new MountManager({ engine, log: silentLogger, rootDir: path.join(stateDir, 'mounts') })
  const key = await loadSecretKey({ stateDir })
  const credentials = new CredentialSourceService({ db: t.tdb.db, key, log: silentLogger })
  const svc = await SandboxService.open({
    log: silentLogger,
    mounts,
    credentials: credentials.resolver,
    db: t.tdb.db,
    templates: new TemplateStore({ dir: TEMPLATE_CACHE_DIR }),
    images: { dir: imagesDir, key },
    stateDir: path.join(stateDir, 'runtime'),
    hostId: `test-${tag}`,
    preference: ['runc'],
    cgroupPrefix,
    netnsPrefix: `s0t${tag}-`,
    sweepIntervalMs: 200,
  })
  const app = buildServer({
    db: t.tdb.db,
    chunkStore: t.store,
    sandboxes: svc,
    volumes: engine,
    mounts,
    credentials,
    config: loadConfig({ S0_STATE_DIR: stateDir }),
    log: silentLogger,
  })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const { rows } = await t.tdb.db.query<{ team_id: string }>('SELECT team_id FROM api_keys LIMIT 1')
  const teamId = asTeamId((rows[0] as { team_id: string }).team_id)
  const memberToken = (await createApiKey(t.tdb.db, { teamId, name: 'member', role: 'member' })).key
  const other = asTeamId('team-stranger')
  await t.tdb.db.query(`INSERT INTO teams (id, name) VALUES ($1, 'stranger')`, [other])
  const strangerToken = (await createApiKey(t.tdb.db, { teamId: other, name: 'x', role: 'admin' })).key
  return {
    t,
    svc,
    url,
    token,
    memberToken,
    strangerToken,
    imagesDir,
    app,
    close: async () => {
      await app.close()
      await svc.close({ stopSandboxes: true })
      await mounts.close()
      await engine.close()
      for (const d of DRIVER_NAMES) await removeEmptyParent(`${cgroupPrefix}-${d}`)
      await t.close()
      await rm(stateDir, { recursive: true, force: true })
      await rm(imagesDir, { recursive: true, force: true })
    },
  }
}

/** A raw API call (the parts of /registry/credentials the SDK has no method for). */
export async function api(
  s: TemplateTestServer,
  method: string,
  p: string,
  body?: unknown,
  token: string = s.token,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${s.url}/api/v1${p}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers }
}
