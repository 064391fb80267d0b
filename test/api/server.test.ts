// The API skeleton against a real Postgres and a real chunk store: health, readiness, metrics,
// bearer auth with bootstrap/created/revoked keys, the error envelope and the request limits.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  TOKEN_FILE_NAME,
  authenticate,
  createApiKey,
  ensureBootstrap,
  generateApiKey,
  listApiKeys,
  revokeApiKey,
} from '../../src/accounts/index.js'
import { buildServer, ok } from '../../src/api/server.js'
import { ChunkStore } from '../../src/blockstore/chunk-store.js'
import { LocalObjectStore } from '../../src/blockstore/local-object-store.js'
import { ResilientObjectStore } from '../../src/blockstore/resilient-object-store.js'
import { assert } from '../../src/core/assert.js'
import { loadConfig } from '../../src/core/config.js'
import { openDb } from '../../src/core/db.js'
import { S0Error } from '../../src/core/errors.js'
import type { TeamId } from '../../src/core/ids.js'
import { limits } from '../../src/core/limits.js'
import { silentLogger } from '../../src/core/log.js'
import { freshDb, type TestDb } from '../support/db.js'

let tdb: TestDb
let dir: string
let store: ChunkStore
let app: FastifyInstance
let adminKey: string
let teamId: TeamId
const printed: string[] = []

beforeAll(async () => {
  tdb = await freshDb()
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-api-'))
  const objects = new ResilientObjectStore(await LocalObjectStore.open(path.join(dir, 'objects')))
  store = await ChunkStore.open({ db: tdb.db, objects, log: silentLogger })
  const stateDir = path.join(dir, 'state')
  const boot = await ensureBootstrap(tdb.db, stateDir, silentLogger, { print: (line) => printed.push(line) })
  if (!boot.created) throw new Error('bootstrap did not run on an empty database')
  adminKey = boot.created.key
  teamId = boot.created.teamId
  app = buildServer(
    {
      db: tdb.db,
      chunkStore: store,
      config: loadConfig({ S0_STATE_DIR: stateDir }),
      log: silentLogger,
    },
    { apiPlugins: [testRoutes], onBug: (err) => bugs.push(err) },
  )
  await app.ready()
})

afterAll(async () => {
  await app?.close()
  await store?.close()
  await tdb?.drop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

const bugs: Error[] = []

// Routes that exist only in this test, to reach the error paths no production route hits yet.
async function testRoutes(a: FastifyInstance): Promise<void> {
  a.post('/test/echo', async (request) => ok({ length: JSON.stringify(request.body).length }))
  a.post(
    '/test/validated',
    { schema: { body: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } } },
    async () => ok({}),
  )
  a.get('/test/conflict', async () => {
    throw new S0Error('conflict', 'sandbox is busy', { details: { busy: true } })
  })
  a.get('/test/bug', async () => {
    throw new Error('secret internal detail')
  })
  a.get('/test/assertion', async () => {
    assert(false, 'an invariant broke')
  })
  a.delete('/test/empty', async (_request, reply) => reply.code(204).send())
}

const bearer = (key: string): Record<string, string> => ({ authorization: `Bearer ${key}` })

describe('health, readiness and metrics', () => {
  it('healthz answers 200 without auth and carries a request id', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ status: 'ok' })
    expect(res.headers['x-request-id']).toMatch(/^req-[0-9a-f]{16}$/)
  })

  it('echoes a well-formed client request id', async () => {
    const res = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'trace-42' } })
    expect(res.headers['x-request-id']).toBe('trace-42')
  })

  it('readyz is 200 while Postgres answers and 503 in the envelope when it does not', async () => {
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200)
    const dead = openDb(tdb.url, { poolSize: 1 })
    await dead.close()
    const down = buildServer({
      db: dead,
      chunkStore: store,
      config: loadConfig({ S0_STATE_DIR: dir }),
      log: silentLogger,
    })
    try {
      const res = await down.inject({ method: 'GET', url: '/readyz' })
      expect(res.statusCode).toBe(503)
      expect(res.json()).toMatchObject({ success: false, error: { code: 'unavailable' } })
      expect(res.headers['x-request-id']).toBeTruthy()
    } finally {
      await down.close()
    }
  })

  it('metrics is Prometheus text with process, http, chunk store, object store and cache metrics', async () => {
    await store.put(teamId, Buffer.from('metrics test data'))
    await app.inject({ method: 'GET', url: '/healthz' })
    const res = await app.inject({ method: 'GET', url: '/metrics' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = res.body
    expect(text).toMatch(/^s0_process_uptime_seconds \d+(\.\d+)?$/m)
    expect(text).toMatch(/^s0_http_requests_total\{method="GET",route="\/healthz",status="200"\} [1-9]\d*$/m)
    expect(text).toMatch(/^s0_chunk_store_chunks_written_total [1-9]\d*$/m)
    expect(text).toMatch(/^s0_chunk_store_bytes_written_total [1-9]\d*$/m)
    expect(text).toMatch(/^s0_object_store_puts_total [1-9]\d*$/m)
    expect(text).toMatch(/^s0_chunk_cache_bytes\{tier="memory"\} \d+$/m)
    expect(text).toMatch(/^s0_chunk_cache_bytes\{tier="disk"\} \d+$/m)
    expect(text).toContain('# TYPE s0_http_requests_total counter')
  })
})

describe('bootstrap', () => {
  it('prints the admin key once and writes it to the token file with mode 0600', async () => {
    expect(printed.join('')).toContain(`admin API key: ${adminKey}`)
    const tokenFile = path.join(dir, 'state', TOKEN_FILE_NAME)
    expect((await readFile(tokenFile, 'utf8')).trim()).toBe(adminKey)
    expect((await stat(tokenFile)).mode & 0o777).toBe(0o600)
    expect(adminKey).toMatch(/^s0_[A-Za-z0-9_-]{43}$/)
  })

  it('is idempotent: a second start creates nothing and keeps the token', async () => {
    const again = await ensureBootstrap(tdb.db, path.join(dir, 'state'), silentLogger, {
      print: (l) => printed.push(l),
    })
    expect(again.created).toBeUndefined()
    expect(printed).toHaveLength(1)
    expect((await readFile(path.join(dir, 'state', TOKEN_FILE_NAME), 'utf8')).trim()).toBe(adminKey)
    const { rows } = await tdb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM teams')
    expect(rows[0]?.n).toBe(1)
  })

  it('stores only the hash and a short prefix of the key', async () => {
    const { rows } = await tdb.db.query<{ key_hash: Buffer; key_prefix: string }>(
      'SELECT key_hash, key_prefix FROM api_keys',
    )
    expect(rows).toHaveLength(1)
    expect(rows[0]?.key_hash).toHaveLength(32)
    expect(adminKey.startsWith(rows[0]?.key_prefix ?? 'x')).toBe(true)
    expect(rows[0]?.key_prefix.length).toBeLessThan(16)
  })
})

describe('authentication', () => {
  it('refuses /api/v1 without a key, with a malformed key and with an unknown key', async () => {
    const cases: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer nope' },
      { authorization: `Basic ${adminKey}` },
      bearer(generateApiKey()),
    ]
    for (const headers of cases) {
      const res = await app.inject({ method: 'GET', url: '/api/v1/me', headers })
      expect(res.statusCode).toBe(401)
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      expect(res.headers['x-request-id']).toBeTruthy()
      const body = res.json()
      expect(body).toMatchObject({ success: false, error: { code: 'unauthorized' } })
      expect(typeof body.error.message).toBe('string')
    }
  })

  it('accepts the bootstrap key and says who the caller is', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/me', headers: bearer(adminKey) })
    expect(res.statusCode).toBe(200)
    const body = res.json()
    expect(body.success).toBe(true)
    expect(body.data).toMatchObject({ team_id: teamId, role: 'admin' })
    expect(body.data.key_id).toMatch(/^key-/)
  })

  it('collapses duplicate slashes (the SDK sends //api/v1 when baseUrl ends with /)', async () => {
    for (const url of ['//api/v1/me', '/api//v1/me']) {
      const res = await app.inject({ method: 'GET', url, headers: bearer(adminKey) })
      expect(res.statusCode).toBe(200)
      expect(res.json().data.team_id).toBe(teamId)
    }
    const anon = await app.inject({ method: 'GET', url: '//api/v1/me' })
    expect(anon.statusCode).toBe(401)
  })

  it('a created member key works, is listed without its secret, and is refused at once when revoked', async () => {
    const { id, key } = await createApiKey(tdb.db, { teamId, name: 'ci', role: 'member' })
    const me = await app.inject({ method: 'GET', url: '/api/v1/me', headers: bearer(key) })
    expect(me.json().data).toEqual({ team_id: teamId, key_id: id, role: 'member' })

    const listed = (await listApiKeys(tdb.db, teamId)).find((k) => k.id === id)
    expect(listed).toMatchObject({
      name: 'ci',
      role: 'member',
      keyPrefix: key.slice(0, listed?.keyPrefix.length),
      revokedAt: null,
    })
    expect(JSON.stringify(listed)).not.toContain(key)
    expect(listed?.lastUsedAt).toBeInstanceOf(Date)

    const revoked = await revokeApiKey(tdb.db, id)
    expect(revoked.revokedAt).toBeInstanceOf(Date)
    const after = await app.inject({ method: 'GET', url: '/api/v1/me', headers: bearer(key) })
    expect(after.statusCode).toBe(401)
    expect(after.json().error.code).toBe('unauthorized')
    // Revoking again is harmless; an unknown id is not_found.
    expect((await revokeApiKey(tdb.db, id)).revokedAt?.getTime()).toBe(revoked.revokedAt?.getTime())
    await expect(revokeApiKey(tdb.db, 'key-0000000000000000')).rejects.toMatchObject({ code: 'not_found' })
  })

  it(
    'a key revoked by another process is refused within the cache TTL',
    async () => {
      const { id, key } = await createApiKey(tdb.db, { teamId, name: 'elsewhere', role: 'member' })
      await authenticate(tdb.db, key) // now cached in this process
      const other = openDb(tdb.url, { poolSize: 1 }) // stands in for `s0 apikey revoke` in another process
      try {
        await revokeApiKey(other, id)
      } finally {
        await other.close()
      }
      await new Promise((r) => setTimeout(r, limits.authCacheTtlMs + 100))
      const res = await app.inject({ method: 'GET', url: '/api/v1/me', headers: bearer(key) })
      expect(res.statusCode).toBe(401)
    },
    limits.authCacheTtlMs + 20_000,
  )

  it('createApiKey refuses an unknown team', async () => {
    await expect(
      createApiKey(tdb.db, { teamId: 'team-nope' as TeamId, name: 'x', role: 'admin' }),
    ).rejects.toMatchObject({
      code: 'not_found',
    })
  })
})

describe('errors and limits', () => {
  it('an unknown route is a 404 envelope, with or without /api/v1', async () => {
    for (const url of ['/api/v1/nope', '/nope']) {
      const res = await app.inject({ method: 'GET', url, headers: bearer(adminKey) })
      expect(res.statusCode).toBe(404)
      expect(res.json()).toMatchObject({ success: false, error: { code: 'not_found' } })
      expect(res.headers['x-request-id']).toBeTruthy()
    }
  })

  it('an S0Error maps to its catalogue status and envelope, with details', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/test/conflict', headers: bearer(adminKey) })
    expect(res.statusCode).toBe(409)
    expect(res.json()).toEqual({
      success: false,
      error: { code: 'conflict', message: 'sandbox is busy', details: { busy: true } },
    })
  })

  it('schema validation failures and malformed JSON are 400 bad_request', async () => {
    const invalid = await app.inject({
      method: 'POST',
      url: '/api/v1/test/validated',
      headers: bearer(adminKey),
      payload: {},
    })
    expect(invalid.statusCode).toBe(400)
    expect(invalid.json().error.code).toBe('bad_request')
    const malformed = await app.inject({
      method: 'POST',
      url: '/api/v1/test/echo',
      headers: { ...bearer(adminKey), 'content-type': 'application/json' },
      payload: '{"oops',
    })
    expect(malformed.statusCode).toBe(400)
    expect(malformed.json().error.code).toBe('bad_request')
  })

  it('an unexpected error is a 500 internal_error that does not leak its message', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/test/bug', headers: bearer(adminKey) })
    expect(res.statusCode).toBe(500)
    expect(res.json().error.code).toBe('internal_error')
    expect(res.body).not.toContain('secret internal detail')
  })

  it('a failed assertion is a bug: no error answer at all, it goes to onBug (by default the process crashes)', async () => {
    const before = bugs.length
    const outcome = await app
      .inject({ method: 'GET', url: '/api/v1/test/assertion', headers: bearer(adminKey) })
      .then(
        (r) => r.statusCode,
        (e: unknown) => (e as Error).message,
      )
    expect(outcome).not.toBe(500)
    expect(bugs.slice(before).map((e) => e.message)).toEqual(['an invariant broke'])
  })

  it('never answers 204 or an empty body', async () => {
    const res = await app.inject({ method: 'DELETE', url: '/api/v1/test/empty', headers: bearer(adminKey) })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ success: true, data: {} })
  })

  it('a body over requestBodyBytesMax is 413 payload_too_large', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/test/echo',
      headers: { ...bearer(adminKey), 'content-type': 'text/plain' },
      payload: Buffer.alloc(limits.requestBodyBytesMax + 1, 0x61),
    })
    expect(res.statusCode).toBe(413)
    expect(res.json()).toMatchObject({ success: false, error: { code: 'payload_too_large' } })
  })

  it('a body within the limit is accepted', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/test/echo',
      headers: bearer(adminKey),
      payload: { a: 1 },
    })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ success: true, data: { length: 7 } })
  })
})
