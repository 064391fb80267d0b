// Webhooks end to end: a sandbox claimed through the SDK (sandbox0@0.9.5, unchanged) with
// config.webhook; its lifecycle events and the file changes under watch_dir POSTed to a loopback
// receiver, signed so that the SDK's verifyWebhookSignature accepts them; retries with backoff,
// order per sandbox, a dead endpoint holding back only its own sandbox, dropping after the last
// attempt, and URL validation.
import { Client, verifyWebhookSignature } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SandboxEvent } from '../../src/core/events.js'
import { sdkError } from '../support/sdk.js'
import { eventually } from '../support/eventually.js'
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
let client: Client
let rx: WebhookReceiver
const SECRET = 'whsec-test'

beforeAll(async () => {
  rx = await startWebhookReceiver()
  server = await startSandboxServer({
    webhooks: { pollMs: 100, backoffFirstMs: 50, backoffMaxMs: 200, attemptsMax: 4 },
  })
  client = new Client({ token: server.token, baseUrl: server.url })
}, 300_000)

afterAll(async () => {
  await server?.close()
  await rx?.close()
})

/** A lifecycle event as the lead's lifecycle recording appends them (until it is on main). */
function lifecycle(teamId: string, sandboxId: string, action: string, n: number): SandboxEvent {
  return {
    teamId,
    sandboxId,
    occurredAt: new Date(),
    source: 'manager',
    eventType: 'lifecycle',
    phase: 'result',
    outcome: 'succeeded',
    actor: { kind: 'api_key' },
    action,
    resource: { type: 'sandbox', id: sandboxId },
    attributes: { n },
  }
}

const bodies = (
  path: string,
): Array<{
  event_id: string
  type: string
  data: { attributes?: { n?: number; path?: string; kind?: string } }
}> => rx.received.filter((r) => r.path === path && r.status === 200).map((r) => JSON.parse(r.body))

describe('webhooks', () => {
  it('delivers lifecycle events and watch_dir changes, signed, in order, retrying failures', async () => {
    const sb = await client.sandboxes.claim('busybox', {
      config: { webhook: { url: `${rx.url}/a`, secret: SECRET, watchDir: '/root/watched' } },
    })
    const teamId = (await client.sandboxes.get(sb.id)).teamId
    // The secret is never returned.
    const raw = await (
      await fetch(`${server.url}/api/v1/sandboxes/${sb.id}`, {
        headers: { authorization: `Bearer ${server.token}` },
      })
    ).text()
    expect(raw).not.toContain(SECRET)

    // The first two attempts of event 2 fail: it is retried, and event 3 waits for it.
    let failures = 0
    rx.respond = (r) => {
      const b = JSON.parse(r.body) as { data: { attributes?: { n?: number } } }
      if (r.path === '/a' && b.data.attributes?.n === 2 && failures < 2) {
        failures++
        return 503
      }
      return 200
    }
    for (const n of [1, 2, 3]) server.events.append(lifecycle(teamId, sb.id, `sandbox.test${n}`, n))
    await server.events.flush()
    await eventually(
      () => bodies('/a').filter((b) => b.type.startsWith('sandbox.test')).length >= 3 || undefined,
      'three lifecycle webhooks',
    )
    // The server's own lifecycle events (sandbox.claim) come too: only ours are counted here.
    const ours = (): ReturnType<typeof bodies> =>
      bodies('/a').filter((b) => b.type.startsWith('sandbox.test'))
    expect(ours().map((b) => b.data.attributes?.n)).toEqual([1, 2, 3])
    expect(failures).toBe(2)
    const attempts = rx.received
      .filter((r) => r.path === '/a' && r.body.includes('"sandbox.test'))
      .map((r) => r.headers['x-sandbox0-delivery-attempt'])
    expect(attempts).toEqual(['1', '1', '2', '3', '1'])
    for (const r of rx.received) {
      const sig = r.headers['x-sandbox0-signature']
      expect(typeof sig).toBe('string')
      expect(verifyWebhookSignature(SECRET, r.body, sig as string)).toBe(true)
      expect(verifyWebhookSignature('wrong', r.body, sig as string)).toBe(false)
      expect(r.headers['content-type']).toBe('application/json')
    }
    const first = ours()[0]!
    expect(first).toMatchObject({ type: 'sandbox.test1', data: { attributes: { n: 1 } } })
    expect(JSON.parse(rx.received[0]!.body)).toMatchObject({ sandbox_id: sb.id, team_id: teamId })

    // A file written under watch_dir (made after the claim: the watch opens once it exists).
    await sb.cmd(`sh -c "mkdir -p /root/watched"`)
    let i = 0
    await eventually(async () => {
      await sb.cmd(`sh -c "echo hi > /root/watched/f${i++}.txt"`)
      await new Promise((r) => setTimeout(r, 400))
      return bodies('/a').some((b) => b.type === 'file.change') || undefined
    }, 'a file.change webhook')
    const change = bodies('/a').find((b) => b.type === 'file.change')!
    expect(change.data.attributes?.path).toMatch(/^\/root\/watched\/f\d+\.txt$/)
    expect(typeof change.data.attributes?.kind).toBe('string')
    // A change outside watch_dir is not sent.
    const before = bodies('/a').length
    await sb.cmd(`sh -c "echo x > /root/outside.txt"`)
    await new Promise((r) => setTimeout(r, 800))
    expect(
      bodies('/a')
        .slice(before)
        .every((b) => b.data.attributes?.path?.startsWith('/root/watched/')),
    ).toBe(true)
    await client.sandboxes.delete(sb.id)
  }, 120_000)

  it('a dead endpoint holds back only its own sandbox, and drops after the last attempt', async () => {
    const dead = await client.sandboxes.claim('busybox', {
      config: { webhook: { url: `${rx.url}/dead`, secret: SECRET } },
    })
    const live = await client.sandboxes.claim('busybox', {
      config: { webhook: { url: `${rx.url}/live`, secret: SECRET } },
    })
    const teamId = (await client.sandboxes.get(dead.id)).teamId
    rx.respond = (r) => (r.path === '/dead' ? 500 : 200)
    server.events.append(lifecycle(teamId, dead.id, 'sandbox.one', 1))
    server.events.append(lifecycle(teamId, dead.id, 'sandbox.two', 2))
    server.events.append(lifecycle(teamId, live.id, 'sandbox.one', 1))
    await server.events.flush()
    await eventually(() => bodies('/live').length >= 1 || undefined, 'the live sandbox webhook')
    // attemptsMax 4: each of the dead sandbox's events is tried 4 times, in order, then dropped.
    await eventually(
      () =>
        rx.received.filter((r) => r.path === '/dead' && /"sandbox\.(one|two)"/.test(r.body)).length >= 8 ||
        undefined,
      'eight attempts',
    )
    const dead8 = rx.received
      .filter((r) => r.path === '/dead')
      .map((r) => (JSON.parse(r.body) as { type: string }).type)
      .filter((t) => t === 'sandbox.one' || t === 'sandbox.two')
    expect(dead8).toEqual([...Array(4).fill('sandbox.one'), ...Array(4).fill('sandbox.two')])
    await eventually(async () => {
      const r = await server.t.tdb.db.query<{ dropped: string }>(
        `SELECT dropped FROM sandbox_webhooks WHERE sandbox_id = $1`,
        [dead.id],
      )
      // Both of ours, after the server's own claim events (dropped first, in order).
      return Number(r.rows[0]?.dropped) >= 2 || undefined
    }, 'both events dropped')
    await client.sandboxes.delete(dead.id)
    await client.sandboxes.delete(live.id)
  }, 120_000)

  it("the server's own lifecycle events: claim, pause, resume, delete arrive signed and in order", async () => {
    rx.respond = () => 200
    const sb = await client.sandboxes.claim('busybox', {
      config: { webhook: { url: `${rx.url}/life`, secret: SECRET } },
    })
    await client.sandboxes.pause(sb.id)
    await client.sandboxes.resume(sb.id)
    await client.sandboxes.delete(sb.id)
    const types = await eventually(() => {
      const t = bodies('/life').map((b) => b.type)
      return t.includes('sandbox.delete') && t.includes('sandbox.resume') ? t : undefined
    }, 'the delete webhook')
    const order = ['sandbox.claim', 'sandbox.pause', 'sandbox.resume', 'sandbox.delete']
    const firsts = order.map((a) => types.indexOf(a))
    expect(firsts.every((i) => i >= 0)).toBe(true)
    expect([...firsts].sort((x, y) => x - y)).toEqual(firsts)
    for (const r of rx.received.filter((x) => x.path === '/life'))
      expect(verifyWebhookSignature(SECRET, r.body, String(r.headers['x-sandbox0-signature']))).toBe(true)
  }, 120_000)

  it('refuses a webhook that is not http(s), and an unknown field', async () => {
    for (const url of ['ftp://127.0.0.1/x', 'not a url', 'http://user:pw@127.0.0.1/']) {
      const err = await sdkError(client.sandboxes.claim('busybox', { config: { webhook: { url } } }))
      expect(err.statusCode, url).toBe(400)
    }
    const rel = await sdkError(
      client.sandboxes.claim('busybox', { config: { webhook: { url: rx.url, watchDir: 'relative/dir' } } }),
    )
    expect(rel.statusCode).toBe(400)
    expect(rel.message).toMatch(/watch_dir/)
    const r = await fetch(`${server.url}/api/v1/sandboxes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ template: 'busybox', config: { webhook: { url: rx.url, extra: 1 } } }),
    })
    expect(r.status).toBe(400)
  })
})
