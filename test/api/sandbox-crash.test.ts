// kill -9 of a real `s0 server` while sandboxes run, pause and sit paused. After a restart:
// a plain running sandbox is adopted (its processes and /tmp still there); running sandboxes
// that depended on the dead process (a volume mounted, a checkpoint under their root) and one
// killed mid-pause come back paused with every file; a paused one resumes with its files; and
// nothing leaks: no mounts, network namespaces or containers beyond the adopted sandbox's.
import { createHash } from 'node:crypto'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serverProcesses, type ServerProcesses } from '../support/server.js'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'

const run = promisify(execFile)
let servers: ServerProcesses
let stateDir: string

/** Mount points under the server's state directory. */
async function mountsUnderState(): Promise<string[]> {
  const text = await readFile('/proc/self/mounts', 'utf8')
  return text
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m.startsWith(stateDir + '/'))
}

/** Network namespaces of this server (named after its identity, see server-command.ts). */
async function serverNetns(): Promise<string[]> {
  const hash = createHash('sha256').update(`${os.hostname()}:${stateDir}`).digest('hex').slice(0, 16)
  const prefix = `s0${hash.slice(-6)}-`
  const { stdout } = await run('ip', ['netns', 'list'])
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix))
}

async function containers(): Promise<string[]> {
  const { stdout } = await run('runc', [
    '--root',
    path.join(stateDir, 'runtime', 'runc', 'runc'),
    'list',
    '-q',
  ])
  return stdout.split('\n').filter(Boolean)
}

beforeAll(async () => {
  servers = await serverProcesses({
    prefix: 's0-sbx-crash-',
    env: { S0_RUNTIMES: 'runc', S0_TEMPLATE_DIR: TEMPLATE_CACHE_DIR },
  })
  stateDir = servers.stateDir
})
afterAll(async () => {
  await servers?.close()
})

const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }

describe('sandboxes across kill -9 of the server', () => {
  it('adopts, pauses with files, resumes, and leaks nothing', async () => {
    await servers.start()
    const client = new Client({ token: await servers.token(), baseUrl: servers.url })
    const volume = await client.volumes.create({})

    const plain = await client.sandboxes.claim('busybox')
    await plain.cmd(`sh -c 'echo a > /root/a.txt; echo proc > /tmp/alive'`)

    const withVolume = await client.sandboxes.claim('busybox', {
      mounts: [{ sandboxvolumeId: volume.id, mountPoint: '/data' }],
    })
    await withVolume.cmd(`sh -c 'echo vol > /data/b.txt; echo root > /root/b.txt'`)
    // A session lives in Postgres: its journal survives the crash, and the resume restarts it.
    const session = await withVolume.createSession({ command: ['sh', '-c', 'echo sess-run; sleep 600'] })
    const sessionOutput = async (): Promise<string> =>
      (await client.sandbox(withVolume.id).listSessionEvents(session.id, { limit: 1000 })).events
        .filter((e) => e.type === 'output')
        .map((e) => Buffer.from(e.dataBase64 ?? '', 'base64').toString('utf8'))
        .join('')
    for (let i = 0; i < 100 && !(await sessionOutput()).includes('sess-run'); i++)
      await new Promise((r) => setTimeout(r, 100))
    expect(await sessionOutput()).toContain('sess-run')

    const paused = await client.sandboxes.claim('busybox')
    await paused.cmd(`sh -c 'echo c > /root/c.txt'`)
    await client.sandboxes.pauseAndWait(paused.id, quick)

    const stacked = await client.sandboxes.claim('busybox')
    await stacked.cmd(`sh -c 'echo d1 > /root/d1.txt'`)
    await client.sandboxes.pauseAndWait(stacked.id, quick)
    await client.sandboxes.resumeAndWait(stacked.id, quick)
    await client.sandbox(stacked.id).cmd(`sh -c 'echo d2 > /root/d2.txt; rm /root/d1.txt'`)

    // Killed while it pauses: 40 MB to capture.
    const midPause = await client.sandboxes.claim('busybox')
    await midPause.cmd(
      `sh -c 'dd if=/dev/urandom of=/root/big bs=1M count=40 2>/dev/null; sha256sum /root/big > /root/big.sum'`,
    )
    const sum = (await midPause.cmd('cat /root/big.sum')).stdout
    // The server dies under this request: its answer (a reset) is not what the test checks.
    servers.api(`/api/v1/sandboxes/${midPause.id}/pause`, { method: 'POST' }).catch(() => undefined)
    await new Promise((r) => setTimeout(r, 150))
    await servers.kill('SIGKILL')

    await servers.start()
    const after = async (id: string): Promise<{ status: string; reason: string; gen: number }> => {
      const r = await servers.api(`/api/v1/sandboxes/${id}`)
      const d = (
        (await r.json()) as { data: { status: string; status_reason?: string; runtime_generation: number } }
      ).data
      return { status: d.status, reason: d.status_reason ?? '', gen: d.runtime_generation }
    }
    // Events acknowledged before the crash are all there, still verified with the kept key.
    const before = await client
      .sandbox(stacked.id)
      .listObservabilityEvents({ eventType: 'lifecycle', limit: 1000 })
    expect(before.events.filter((e) => e.phase === 'result').map((e) => e.action)).toEqual(
      expect.arrayContaining(['sandbox.claim', 'sandbox.pause', 'sandbox.resume']),
    )
    expect(before.events.every((e) => e.integrity.signatureStatus === 'verified')).toBe(true)
    // Adopted: the same processes (its /tmp is a tmpfs in its own mount namespace).
    expect(await after(plain.id)).toMatchObject({ status: 'running', gen: 1 })
    expect((await client.sandbox(plain.id).cmd('cat /tmp/alive /root/a.txt')).stdout).toBe('proc\na\n')
    // Depended on the dead process: paused with its files.
    expect(await after(withVolume.id)).toMatchObject({
      status: 'paused',
      reason: expect.stringMatching(/restarted/),
    })
    expect(await after(stacked.id)).toMatchObject({ status: 'paused' })
    expect((await after(midPause.id)).status).toBe('paused')
    expect((await after(paused.id)).status).toBe('paused')
    // Nothing left of the old process but the adopted sandbox.
    expect(await containers()).toEqual([plain.id])
    expect(await serverNetns()).toHaveLength(1)
    expect((await mountsUnderState()).every((m) => m.includes(`/${plain.id}/`))).toBe(true)

    expect((await client.sandbox(withVolume.id).getSession(session.id)).id).toBe(session.id)
    expect(await sessionOutput()).toContain('sess-run')
    await client.sandboxes.resumeAndWait(withVolume.id, quick)
    for (let i = 0; i < 100 && (await sessionOutput()).split('sess-run').length < 3; i++)
      await new Promise((r) => setTimeout(r, 100))
    expect((await sessionOutput()).split('sess-run').length - 1).toBe(2)
    expect((await client.sandbox(withVolume.id).cmd('cat /data/b.txt /root/b.txt')).stdout).toBe(
      'vol\nroot\n',
    )
    await client.sandboxes.resumeAndWait(paused.id, quick)
    expect((await client.sandbox(paused.id).cmd('cat /root/c.txt')).stdout).toBe('c\n')
    await client.sandboxes.resumeAndWait(stacked.id, quick)
    expect((await client.sandbox(stacked.id).cmd(`sh -c 'cat /root/d2.txt; ls /root'`)).stdout).toBe(
      'd2\nd2.txt\n',
    )
    // The cursor continues where it was: only what happened since.
    const since = await client
      .sandbox(stacked.id)
      .listObservabilityEvents({ eventType: 'lifecycle', cursor: before.watermark! })
    expect(since.events.map((e) => `${e.action}/${e.phase}`)).toEqual([
      'sandbox.resume/attempt',
      'sandbox.resume/result',
    ])
    expect(since.events.every((e) => e.integrity.signatureStatus === 'verified')).toBe(true)
    await client.sandboxes.resumeAndWait(midPause.id, quick)
    expect((await client.sandbox(midPause.id).cmd('sha256sum /root/big')).stdout).toBe(sum)

    for (const id of [plain.id, withVolume.id, paused.id, stacked.id, midPause.id])
      await client.sandboxes.delete(id)
    expect(await containers()).toEqual([])
    expect(await serverNetns()).toEqual([])
    expect(await mountsUnderState()).toEqual([])
  }, 300_000)
})
