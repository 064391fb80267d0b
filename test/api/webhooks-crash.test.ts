// Webhooks across kill -9 of the server: events in the outbox (sandbox_events past the webhook's
// cursor) while the receiver is down are all delivered, in order and signed, by the restarted
// server; nothing acknowledged before the crash is lost from the order.
import { Client, verifyWebhookSignature } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serverOwnerId } from '../../src/cli/server-command.js'
import { EventLog } from '../../src/core/events.js'
import { silentLogger } from '../../src/core/log.js'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'
import { serverProcesses, type ServerProcesses } from '../support/server.js'
import { eventually } from '../support/eventually.js'
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js'

let servers: ServerProcesses
let rx: WebhookReceiver
const SECRET = 'crash-secret'

beforeAll(async () => {
  rx = await startWebhookReceiver()
  servers = await serverProcesses({
    prefix: 's0-webhook-crash-',
    env: { S0_RUNTIMES: 'runc', S0_TEMPLATE_DIR: TEMPLATE_CACHE_DIR, S0_SANDBOX_NETWORK: 'false' },
  })
}, 300_000)

afterAll(async () => {
  await servers?.close()
  await rx?.close()
})

describe('webhooks across kill -9', () => {
  it('delivers every event of the outbox after a restart, in order, signed', async () => {
    await servers.start()
    const client = new Client({ token: await servers.token(), baseUrl: servers.url })
    const sb = await client.sandboxes.claim('busybox', {
      config: { webhook: { url: `${rx.url}/hook`, secret: SECRET, watchDir: '/root' } },
    })
    const teamId = (await client.sandboxes.get(sb.id)).teamId
    // Events as the server's own event log writes them (its producer instance is the server's id).
    const events = new EventLog(servers.tdb.db, silentLogger, serverOwnerId(servers.stateDir))
    const append = (n: number): void =>
      void events.append({
        teamId,
        sandboxId: sb.id,
        occurredAt: new Date(),
        source: 'manager',
        eventType: 'lifecycle',
        phase: 'result',
        outcome: 'succeeded',
        actor: { kind: 'api_key' },
        action: `sandbox.step${n}`,
        resource: { type: 'sandbox', id: sb.id },
        attributes: { n },
      })
    append(1)
    await events.flush()
    await eventually(
      () => rx.received.some((r) => r.status === 200 && r.body.includes('sandbox.step1')) || undefined,
      'the first webhook',
    )

    // The receiver goes down: the next events fail and wait in the outbox; then kill -9.
    rx.respond = () => 503
    for (const n of [2, 3, 4]) append(n)
    await events.flush()
    await eventually(() => rx.received.some((r) => r.status === 503) || undefined, 'a failed attempt')
    await servers.kill('SIGKILL')
    rx.respond = () => 200
    await servers.start()

    const ok = await eventually(
      () => {
        const got = rx.received
          .filter((r) => r.status === 200)
          .map((r) => JSON.parse(r.body) as { type: string; data: { attributes: { n: number } } })
          // The server's own lifecycle events (sandbox.claim...) come too: only ours count here.
          .filter((b) => b.type.startsWith('sandbox.step'))
        return got.length >= 4 ? got : undefined
      },
      'all four events after the restart',
      90_000,
    )
    expect(ok.map((b) => b.data.attributes.n)).toEqual([1, 2, 3, 4])
    for (const r of rx.received)
      expect(verifyWebhookSignature(SECRET, r.body, String(r.headers['x-sandbox0-signature']))).toBe(true)
    await events.close()
    await client.sandboxes.delete(sb.id)
  }, 300_000)
})
