// The lifecycle cases of the official SDK (sandboxes-lifecycle-cases.ts) against one s0 server.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandboxServer, type Json, type SandboxTestServer } from './sandbox-fixture.js'
import { lifecycleSdkCases } from './sandboxes-lifecycle-cases.js'

let server: SandboxTestServer | undefined

beforeAll(async () => {
  server = await startSandboxServer()
})
afterAll(async () => {
  await server?.close()
})

lifecycleSdkCases(() => server)

const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }

describe('sandbox0 SDK 0.9.5: a paused sandbox waking up (a server of its own)', () => {
  it('answers a call to a paused sandbox with 503 "waking up" while it resumes, and wakes it', async () => {
    const other = await startSandboxServer({ autoResumeWaitMs: 0 })
    try {
      const c = new Client({ token: other.token, baseUrl: other.url })
      const sb = await c.sandboxes.claim('busybox')
      await sb.cmd(`sh -c 'echo kept > /root/k'`)
      await c.sandboxes.pauseAndWait(sb.id, quick)
      const first = await fetch(`${other.url}/api/v1/sandboxes/${sb.id}/contexts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${other.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'cmd', cmd: { command: ['cat', '/root/k'] }, wait_until_done: true }),
      })
      expect(first.status).toBe(503)
      expect(first.headers.get('retry-after')).toBe('1')
      expect(((await first.json()) as Json).error).toMatchObject({
        code: 'unavailable',
        message: expect.stringContaining('waking up'),
      })
      const s = await c.sandboxes.waitForLifecycle(sb.id, (x) => x.status === 'running', quick)
      expect(s.runtimeGeneration).toBe(2)
      expect((await c.sandbox(sb.id).cmd('cat /root/k')).stdout).toBe('kept\n')
      // auto_resume off: the call says the sandbox is paused, and it stays so.
      await c.sandboxes.update(sb.id, { config: { autoResume: false } })
      await c.sandboxes.pauseAndWait(sb.id, quick)
      const off = await fetch(`${other.url}/api/v1/sandboxes/${sb.id}/files?path=/root/k`, {
        headers: { authorization: `Bearer ${other.token}` },
      })
      expect(off.status).toBe(409)
      expect((await c.sandboxes.get(sb.id)).status).toBe('paused')
      await c.sandboxes.delete(sb.id)
    } finally {
      await other.close()
    }
  }, 120_000)
})
