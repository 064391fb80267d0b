// The SDK quickstart on gVisor (runsc, ptrace platform): the same API over the strongest driver,
// including files written on the host side of the overlay and read inside, and the reverse.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
let client: Client

beforeAll(async () => {
  server = await startSandboxServer({ driver: 'runsc' })
  client = new Client({ token: server.token, baseUrl: server.url })
})

afterAll(async () => {
  await server?.close()
})

describe('sandbox0 SDK 0.9.5 on runsc', () => {
  it('claims, keeps REPL state, runs commands and moves files both ways', async () => {
    const sb = await client.sandboxes.claim('default')
    expect(await server.t.tdb.db.query('SELECT driver FROM sandboxes WHERE id = $1', [sb.id])).toMatchObject({
      rows: [{ driver: 'runsc' }],
    })
    await sb.run('python', 'x = 41')
    expect((await sb.run('python', 'print(x + 1)')).outputRaw).toBe('42\n')
    const c = await sb.cmd('sh -c "echo out; echo err >&2; exit 2"')
    expect(c).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 2, state: 'crashed' })
    await sb.writeFile('/root/h.txt', 'host-written')
    expect((await sb.cmd('cat /root/h.txt')).stdout).toBe('host-written')
    await sb.writeFile('/root/h.txt', 'host-rewritten')
    expect((await sb.cmd('cat /root/h.txt')).stdout).toBe('host-rewritten')
    await sb.cmd('sh -c "echo inside > /root/i.txt"')
    expect(Buffer.from(await sb.readFile('/root/i.txt')).toString()).toBe('inside\n')
    await client.sandboxes.delete(sb.id)
  })
})
