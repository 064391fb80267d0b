// End to end with the official SDK (npm sandbox0@0.9.5), unchanged, against a listening s0 server
// running real sandboxes (runc, the Debian `default` template): the quickstart calls, contexts,
// streaming and files.
import { APIError, Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'
import { quickstartSdkCases } from './sandboxes-quickstart-cases.js'

let server: SandboxTestServer
let client: Client

beforeAll(async () => {
  server = await startSandboxServer({ execTimeoutMs: 1_500 })
  client = new Client({ token: server.token, baseUrl: server.url + '/' })
})

afterAll(async () => {
  await server?.close()
})

quickstartSdkCases(() => server)

describe('sandbox0 SDK 0.9.5: sandboxes', () => {
  it('keeps bash state, times out /exec with 408, and recovers after a signal', async () => {
    const sandbox = await client.sandboxes.claim('default', { ttl: 600, hardTtl: 3600 })
    await sandbox.run('bash', 'cd /tmp && FOO=7')
    expect((await sandbox.run('bash', 'echo $FOO $PWD')).outputRaw).toBe('7 /tmp\n')
    // A syntax error does not end the shell.
    expect((await sandbox.run('bash', 'echo (')).outputRaw).toContain('syntax error')
    expect((await sandbox.run('bash', 'echo still')).outputRaw).toBe('still\n')

    const slow = await sandbox.run('python', 'import time; time.sleep(30)').catch((e: unknown) => e)
    expect(slow).toBeInstanceOf(APIError)
    expect((slow as APIError).statusCode).toBe(408)
    expect((slow as APIError).code).toBe('exec_timeout')
    const contexts = await sandbox.listContexts()
    const py = contexts.find((c) => c.alias === 'python')
    expect(py?.running).toBe(true)
    await sandbox.contextSignal(py?.id as string, 'INT')
    expect((await sandbox.run('python', 'print("after")')).outputRaw).toBe('after\n')

    // The context WebSocket: REPL input with a request id streams its output.
    const ws = await sandbox.connectWsContext(py?.id as string)
    ws.sendInput('print(6 * 7)\n', 'req-1')
    // Output arrives in chunks of any size: collect per stream until the answer is complete.
    const seen = { stdout: '', stderr: '' }
    for await (const o of ws.outputs()) {
      if (o.source === 'stdout' || o.source === 'stderr') seen[o.source] += o.data
      if (seen.stdout.includes('42\n')) break
    }
    ws.close()
    expect(seen.stdout).toBe('42\n')
    // Nothing of the interrupt above leaks into this request (the signal waits for it to settle).
    expect(seen.stderr).toBe('')

    // restart: same id, fresh interpreter
    await sandbox.run('python', 'y = 1')
    await sandbox.restartContext(py?.id as string)
    expect((await sandbox.run('python', 'print("y" in dir())')).outputRaw).toBe('False\n')

    // input + resize + delete on a cmd context
    const cat = await sandbox.createContext({ type: 'cmd', cmd: { command: ['cat'] }, waitUntilDone: false })
    await sandbox.contextInput(cat.id, 'typed\n')
    await sandbox.contextResize(cat.id, 40, 120)
    await sandbox.deleteContext(cat.id)
    const missing = await sandbox.getContext(cat.id).catch((e: unknown) => e)
    expect((missing as APIError).code).toBe('context_not_found')

    const refreshed = await client.sandboxes.refresh(sandbox.id, { duration: 120 })
    expect(refreshed.expiresAt.getTime()).toBeGreaterThan(Date.now() + 100_000)
    const status = await client.sandboxes.status(sandbox.id)
    expect(status.status).toBe('running')
    await client.sandboxes.delete(sandbox.id)
  })
})
