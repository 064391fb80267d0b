// Templates from a sandbox, end to end with the official SDK (sandbox0@0.9.5, unchanged): the
// sandbox's root file system beyond its template is captured (a rootfs snapshot, O(delta)) into a
// volume the new template owns; claims of the template are seeded from it, after the source
// sandbox is gone too.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sdkError } from '../support/sdk.js'
import { api, startTemplateServer, type TemplateTestServer } from './fixture.js'

let server: TemplateTestServer
let client: Client

beforeAll(async () => {
  server = await startTemplateServer()
  client = new Client({ token: server.token, baseUrl: server.url + '/' })
})

afterAll(async () => {
  await server?.close()
})

describe('templates.createFromSandbox (SDK)', () => {
  it('captures a busybox sandbox into a template whose claims see its files, after the source is deleted', async () => {
    const source = await client.sandboxes.claim('busybox')
    expect(
      (
        await source.cmd(
          'sh -c "echo captured > /root/note.txt; mkdir -p /opt/app; echo v1 > /opt/app/VERSION"',
        )
      ).exitCode,
    ).toBe(0)

    const request = {
      templateId: 'from-bb',
      sandboxId: source.id,
      specOverrides: { displayName: 'Captured busybox', tags: ['captured'] },
    }
    const t = await client.templates.createFromSandbox(request, {
      idempotencyKey: 'capture-1',
      wait: true,
      timeoutMs: 60_000,
      pollIntervalMs: 100,
    })
    expect(t.templateId).toBe('from-bb')
    expect(t.status?.creation?.state).toBe('ready')
    expect(t.status?.creation?.capturedAt).toBeDefined()
    expect(t.spec.displayName).toBe('Captured busybox')
    expect(t.spec.tags).toEqual(['captured'])
    expect(t.spec.mainContainer?.image).toBe('s0/busybox')

    // Same key and body: the same template, not a second one; another body: 409.
    const again = await client.templates.createFromSandbox(request, { idempotencyKey: 'capture-1' })
    expect(again.templateId).toBe('from-bb')
    expect(again.createdAt).toEqual(t.createdAt)
    const other = await sdkError(
      client.templates.createFromSandbox(
        { ...request, templateId: 'from-bb-2' },
        { idempotencyKey: 'capture-1' },
      ),
    )
    expect(other.statusCode).toBe(409)

    // The capture leaves no snapshot behind in the snapshots API: the template owns its volume.
    const snaps = await api(server, 'GET', `/sandboxes/${source.id}/snapshots`)
    expect((snaps.body['data'] as { count: number }).count).toBe(0)

    // A change after the capture is not in the template.
    await source.cmd('sh -c "echo later > /root/later.txt"')
    await client.sandboxes.delete(source.id)

    // The orphan sweep (every rootfs volume nothing refers to, past a grace) spares the
    // template's volume: run it with no grace at all.
    const host = (
      server.svc as unknown as { host: { checkpoints: { sweepOrphans(g: number): Promise<string[]> } } }
    ).host
    const base = await server.t.tdb.db.query<{ base_volume_id: string }>(
      `SELECT base_volume_id FROM sandbox_templates WHERE id = 'from-bb'`,
    )
    const swept = await host.checkpoints.sweepOrphans(0)
    expect(base.rows[0]?.base_volume_id).toBeTruthy()
    expect(swept).not.toContain(base.rows[0]?.base_volume_id)

    const a = await client.sandboxes.claim('from-bb')
    const b = await client.sandboxes.claim('from-bb')
    expect((await a.cmd('cat /root/note.txt /opt/app/VERSION')).stdout).toBe('captured\nv1\n')
    expect((await a.cmd('sh -c "test -e /root/later.txt && echo yes || echo no"')).stdout).toBe('no\n')
    // Each claim writes its own copy.
    await a.cmd('sh -c "echo changed-in-a > /root/note.txt"')
    expect((await b.cmd('cat /root/note.txt')).stdout).toBe('captured\n')
    await client.sandboxes.delete(a.id)
    await client.sandboxes.delete(b.id)

    // Deleting the template releases its volume.
    const { rows } = await server.t.tdb.db.query<{ base_volume_id: string }>(
      `SELECT base_volume_id FROM sandbox_templates WHERE id = 'from-bb'`,
    )
    const volume = rows[0]?.base_volume_id
    expect(volume).toBeTruthy()
    await client.templates.delete('from-bb')
    const left = await server.t.tdb.db.query(`SELECT 1 FROM volumes WHERE id = $1`, [volume])
    expect(left.rowCount).toBe(0)
  })

  it('another team’s sandbox is 404, and a bad body 400', async () => {
    const mine = await client.sandboxes.claim('busybox')
    const stranger = new Client({ token: server.strangerToken, baseUrl: server.url + '/' })
    const err = await sdkError(
      stranger.templates.createFromSandbox({ templateId: 'steal', sandboxId: mine.id }),
    )
    expect(err.statusCode).toBe(404)
    expect((await sdkError(stranger.templates.get('steal'))).statusCode).toBe(404)
    expect((await sdkError(client.templates.get('steal'))).statusCode).toBe(404)
    const noSandbox = await sdkError(
      client.templates.createFromSandbox({ templateId: 'x1', sandboxId: 'sb-000000000000' }),
    )
    expect(noSandbox.statusCode).toBe(404)
    const badId = await sdkError(
      client.templates.createFromSandbox({ templateId: 'Bad_Id', sandboxId: mine.id }),
    )
    expect(badId.statusCode).toBe(400)
    const pool = await sdkError(
      client.templates.createFromSandbox({
        templateId: 'pooled',
        sandboxId: mine.id,
        specOverrides: { pool: { minIdle: 1, maxIdle: 1 } },
      }),
    )
    expect(pool.statusCode).toBe(400)
    await client.sandboxes.delete(mine.id)
  })

  it('a capture interrupted by a restart before its snapshot fails clearly instead of staying creating', async () => {
    const src = await client.sandboxes.claim('busybox')
    const t = await client.templates.createFromSandbox(
      { templateId: 'interrupted', sandboxId: src.id },
      { wait: true, timeoutMs: 60_000 },
    )
    expect(t.status?.creation?.state).toBe('ready')
    // What a crash during the capture leaves: the row creating, no snapshot recorded.
    await server.t.tdb.db.query(
      `UPDATE sandbox_templates SET creation = jsonb_build_object('state', 'creating', 'stage', 'capturing', 'startedAt', now()::text),
         base_volume_id = NULL WHERE id = 'interrupted'`,
    )
    await server.svc.templateBuilds.resume() // what the next start does
    const after = await client.templates.get('interrupted')
    expect(after.status?.creation?.state).toBe('failed')
    expect(after.status?.creation?.reason).toBe('Interrupted')
    expect((await sdkError(client.sandboxes.claim('interrupted'))).code).toBe('template_not_ready')
    await client.templates.delete('interrupted')
    await client.sandboxes.delete(src.id)
  })
})
