// The SDK quickstart on gVisor (runsc, ptrace platform): the same API over the strongest driver,
// including files written on the host side of the overlay and read inside, and the reverse; and
// the lifecycle on it: pause / resume with files, a snapshot of a running sandbox (frozen), and
// a pause that keeps process memory (runsc checkpoint / restore).
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

  const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }

  it('pauses and resumes with files, and snapshots a running sandbox', async () => {
    const sb = await client.sandboxes.claim('busybox')
    await sb.cmd(`sh -c 'echo hello > /root/h.txt'`)
    await client.sandboxes.pauseAndWait(sb.id, quick)
    await client.sandboxes.resumeAndWait(sb.id, quick)
    const again = client.sandbox(sb.id)
    expect((await again.cmd('cat /root/h.txt')).stdout).toBe('hello\n')
    await again.cmd(`sh -c 'echo v1 > /root/v'`)
    const snap = await client.sandboxes.createRootFSSnapshot(sb.id)
    await again.cmd(`sh -c 'echo v2 > /root/v'`) // it runs on after the snapshot
    const fromSnap = await client.sandboxes.claim('busybox', { snapshotId: snap.id })
    expect((await fromSnap.cmd('cat /root/v /root/h.txt')).stdout).toBe('v1\nhello\n')
    await client.sandboxes.delete(fromSnap.id)
    await client.sandboxes.deleteRootFSSnapshot(snap.id)
    await client.sandboxes.delete(sb.id)
  }, 120_000)

  it('keeps process memory across a pause with keep_memory=true', async () => {
    const sb = await client.sandboxes.claim('busybox')
    // A process of the sandbox's own (not a context: contexts end with their generation), whose
    // state is only in memory: a counter it writes out every 100 ms. Written to a temporary file
    // and renamed, so a read never sees the file empty between truncate and write (it once read 0).
    await sb.cmd(
      `sh -c 'i=0; while :; do i=$((i+1)); echo $i > /root/counter.tmp; mv /root/counter.tmp /root/counter; sleep 0.1; done > /dev/null 2>&1 < /dev/null &'`,
    )
    await new Promise((r) => setTimeout(r, 1_000))
    const before = Number((await sb.cmd('cat /root/counter')).stdout)
    expect(before).toBeGreaterThan(3)
    const res = await fetch(`${server.url}/api/v1/sandboxes/${sb.id}/pause?keep_memory=true`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}` },
    })
    expect(res.status).toBe(200)
    await client.sandboxes.waitForLifecycle(sb.id, (s) => s.status === 'paused', quick)
    await new Promise((r) => setTimeout(r, 1_000)) // nothing counts while paused
    await client.sandboxes.resumeAndWait(sb.id, quick)
    const again = client.sandbox(sb.id)
    const a = Number((await again.cmd('cat /root/counter')).stdout)
    await new Promise((r) => setTimeout(r, 600))
    const b = Number((await again.cmd('cat /root/counter')).stdout)
    // The loop runs again (b > a) and counted on from where it was, not from 0.
    expect(a).toBeGreaterThanOrEqual(before)
    expect(b).toBeGreaterThan(a)
    const raw = (await (
      await fetch(`${server.url}/api/v1/sandboxes/${sb.id}`, {
        headers: { authorization: `Bearer ${server.token}` },
      })
    ).json()) as { data: { status_reason?: string } }
    expect(raw.data.status_reason ?? '').toBe('')
    // A plain pause does not keep them: the counter stops.
    await client.sandboxes.pauseAndWait(sb.id, quick)
    await client.sandboxes.resumeAndWait(sb.id, quick)
    const c = Number((await client.sandbox(sb.id).cmd('cat /root/counter')).stdout)
    await new Promise((r) => setTimeout(r, 400))
    expect(Number((await client.sandbox(sb.id).cmd('cat /root/counter')).stdout)).toBe(c)
    await client.sandboxes.delete(sb.id)
  }, 120_000)
})
