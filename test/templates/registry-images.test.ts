// Templates from registry images, end to end with the official SDK (sandbox0@0.9.5, unchanged):
// a loopback registry the test starts (one public, one behind basic auth), images pushed to it
// with skopeo, templates.create + waitUntilReady, claims that run a command from the image.
import { createServer, type Server, type Socket } from 'node:net'
import path from 'node:path'
import { Client, TemplateCreationFailedError } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'
import { missingPrerequisite } from '../runtime/template-cache.js'
import { sdkError } from '../support/sdk.js'
import { api, startTemplateServer, type TemplateTestServer } from './fixture.js'
import {
  freePort,
  REGISTRY_PASSWORD,
  REGISTRY_USER,
  registryMissing,
  startRegistry,
  type TestRegistry,
} from './registry.js'

const spec = (image: string): Record<string, unknown> => ({
  mainContainer: { image, resources: { memory: '256Mi' } },
})

describe.skipIf(missingPrerequisite(registryMissing()))('templates from registry images (SDK)', () => {
  let server: TemplateTestServer
  let client: Client
  let pub: TestRegistry
  let priv: TestRegistry
  const busybox = path.join(TEMPLATE_CACHE_DIR, 'busybox', 'rootfs')

  beforeAll(async () => {
    ;[server, pub, priv] = await Promise.all([
      startTemplateServer(),
      startRegistry(),
      startRegistry({ auth: true }),
    ])
    client = new Client({ token: server.token, baseUrl: server.url + '/' })
    await pub.push('s0test/bb', 'v1', busybox, 'public-marker')
    await priv.push('team/secret', '1.0', busybox, 'private-marker')
  })

  afterAll(async () => {
    await server?.close()
    await pub?.close()
    await priv?.close()
  })

  it('pulls a public image in the background, resolves its tag to a digest, and claims run from it', async () => {
    const image = `${pub.host}/s0test/bb:v1`
    const created = await client.templates.create({ templateId: 'bb-public', spec: spec(image) } as never)
    expect(created.status?.creation?.state).toBe('creating')
    expect(created.status?.creation?.startedAt).toBeDefined()
    const ready = await client.templates.waitUntilReady('bb-public', {
      timeoutMs: 60_000,
      pollIntervalMs: 100,
    })
    expect(ready.status?.creation?.state).toBe('ready')
    expect(ready.status?.creation?.outputImage).toMatch(
      new RegExp(`^${pub.host}/s0test/bb@sha256:[0-9a-f]{64}$`),
    )
    const sandbox = await client.sandboxes.claim('bb-public')
    const r = await sandbox.cmd('cat /marker.txt')
    expect(r.stdout).toBe('public-marker\n')
    await client.sandboxes.delete(sandbox.id)

    // The same image again, by tag and by the digest it resolved to: no blob is fetched twice.
    const puller = server.svc.catalog.images!.puller
    const blobs = await puller.blobCount()
    expect(blobs).toBeGreaterThanOrEqual(3) // manifest, config, one layer
    const digest = (ready.status?.creation?.outputImage ?? '').split('@')[1] ?? ''
    await client.templates.create({ templateId: 'bb-again', spec: spec(image) } as never)
    await client.templates.create({
      templateId: 'bb-pinned',
      spec: spec(`${pub.host}/s0test/bb@${digest}`),
    } as never)
    for (const id of ['bb-again', 'bb-pinned']) {
      const t = await client.templates.waitUntilReady(id, { timeoutMs: 60_000, pollIntervalMs: 100 })
      expect(t.status?.creation?.outputImage).toBe(ready.status?.creation?.outputImage)
    }
    expect(await puller.blobCount()).toBe(blobs)
    const again = await client.sandboxes.claim('bb-pinned')
    expect((await again.cmd('cat /marker.txt')).stdout).toBe('public-marker\n')
    await client.sandboxes.delete(again.id)

    // A pull interrupted by a restart is taken back at the next start.
    await server.t.tdb.db.query(
      `UPDATE sandbox_templates SET creation = jsonb_build_object('state', 'creating', 'stage', 'capturing', 'startedAt', now()::text)
        WHERE id = 'bb-again'`,
    )
    await server.svc.templateBuilds.resume()
    const resumed = await client.templates.waitUntilReady('bb-again', {
      timeoutMs: 60_000,
      pollIntervalMs: 100,
    })
    expect(resumed.status?.creation?.outputImage).toBe(ready.status?.creation?.outputImage)

    // Another team sees none of it.
    const stranger = new Client({ token: server.strangerToken, baseUrl: server.url + '/' })
    expect((await sdkError(stranger.templates.get('bb-public'))).statusCode).toBe(404)
    expect((await sdkError(stranger.sandboxes.claim('bb-public'))).statusCode).toBe(404)
  })

  it('a private image fails unauthorized without credentials, and is pulled with the team’s', async () => {
    const image = `${priv.host}/team/secret:1.0`
    await client.templates.create({ templateId: 'private', spec: spec(image) } as never)
    const failed = await client.templates
      .waitUntilReady('private', { timeoutMs: 60_000, pollIntervalMs: 100 })
      .then(
        () => undefined,
        (e: unknown) => e,
      )
    expect(failed).toBeInstanceOf(TemplateCreationFailedError)
    const t = await client.templates.get('private')
    expect(t.status?.creation?.state).toBe('failed')
    expect(t.status?.creation?.reason).toBe('Unauthorized')
    const refused = await sdkError(client.sandboxes.claim('private'))
    expect(refused.statusCode).toBe(409)
    expect(refused.code).toBe('template_not_ready')

    // A member key may store credentials and use registry images (only server-disk images are admin-only).
    const stored = await api(
      server,
      'POST',
      '/registry/credentials',
      { registry: priv.host, username: REGISTRY_USER, password: REGISTRY_PASSWORD },
      server.memberToken,
    )
    expect(stored.status).toBe(201)
    expect(JSON.stringify(stored.body)).not.toContain(REGISTRY_PASSWORD)
    const listed = await api(server, 'GET', '/registry/credentials')
    expect((listed.body['data'] as { credentials: unknown[] }).credentials).toEqual([
      expect.objectContaining({ registry: priv.host, username: REGISTRY_USER }),
    ])
    expect(JSON.stringify(listed.body)).not.toContain(REGISTRY_PASSWORD)
    // Sealed at rest: the password is nowhere in the row.
    const { rows } = await server.t.tdb.db.query<{ row: string }>(
      `SELECT row_to_json(r)::text AS row FROM registry_credentials r`,
    )
    expect(rows).toHaveLength(1)
    expect(rows[0]?.row).not.toContain(REGISTRY_PASSWORD)
    expect(rows[0]?.row).not.toContain(Buffer.from(REGISTRY_PASSWORD).toString('hex'))
    // The SDK's own call (push credentials for a registry of the platform) is not what s0 serves.
    const sdkShape = await api(server, 'POST', '/registry/credentials', { targetImage: 'x/y:1' })
    expect(sdkShape.status).toBe(501)

    // Another team's credentials are not used for its pulls.
    const strangerStore = await api(server, 'GET', '/registry/credentials', undefined, server.strangerToken)
    expect((strangerStore.body['data'] as { count: number }).count).toBe(0)

    // The update builds again, now with the credentials.
    const updated = await client.templates.update('private', { spec: spec(image) } as never)
    expect(updated.status?.creation?.state).toBe('creating')
    await client.templates.waitUntilReady('private', { timeoutMs: 60_000, pollIntervalMs: 100 })
    const sandbox = await client.sandboxes.claim('private')
    expect((await sandbox.cmd('cat /marker.txt')).stdout).toBe('private-marker\n')
    await client.sandboxes.delete(sandbox.id)
  })

  it('a claim while the image is still pulling is 409 template_not_ready with Retry-After', async () => {
    // A "registry" that accepts connections and never answers: the pull stays in its first stage
    // until the test closes it.
    const sockets = new Set<Socket>()
    const hang: Server = createServer((s) => sockets.add(s))
    const port = await freePort()
    await new Promise<void>((r) => hang.listen(port, '127.0.0.1', r))
    try {
      await client.templates.create({ templateId: 'slow', spec: spec(`127.0.0.1:${port}/x/y:1`) } as never)
      const err = await sdkError(client.sandboxes.claim('slow'))
      expect(err.statusCode).toBe(409)
      expect(err.code).toBe('template_not_ready')
      expect(Number(err.retryAfter)).toBeGreaterThan(0)
      const raw = await api(server, 'POST', '/sandboxes', { template: 'slow' })
      expect(raw.status).toBe(409)
      expect(Number(raw.headers.get('retry-after'))).toBeGreaterThan(0)
      // An update while it is creating is refused too.
      expect(
        (await sdkError(client.templates.update('slow', { spec: spec('s0/busybox') } as never))).statusCode,
      ).toBe(409)
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => hang.close(() => r()))
    }
    const failed = await client.templates
      .waitUntilReady('slow', { timeoutMs: 60_000, pollIntervalMs: 100 })
      .catch((e: unknown) => e)
    expect(failed).toBeInstanceOf(TemplateCreationFailedError)
    expect((await sdkError(client.sandboxes.claim('slow'))).code).toBe('template_not_ready')
    await client.templates.delete('slow')
  })

  it('refuses malformed references with 400 and the field', async () => {
    for (const image of [
      'UPPER/case:tag',
      'a:b:c',
      'repo@sha256:abc',
      'ghcr.io/org/app:',
      'http://x/y',
      'a b',
    ]) {
      const err = await sdkError(
        client.templates.create({ templateId: 'bad-ref', spec: spec(image) } as never),
      )
      expect(err.statusCode, image).toBe(400)
    }
    expect((await sdkError(client.templates.get('bad-ref'))).statusCode).toBe(404)
  })

  it('another team does not list a team’s registry templates', async () => {
    const stranger = new Client({ token: server.strangerToken, baseUrl: server.url + '/' })
    const list = await stranger.templates.list()
    expect(list.map((t) => t.templateId)).not.toContain('bb-public')
  })
})
