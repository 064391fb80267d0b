// The disk limit end to end (official SDK, runc): `resources.ephemeralStorage` of the template,
// the claim's override, the server's default (S0_SANDBOX_DISK_BYTES) when neither says; `df /`
// inside shows it; a files-API upload past it is a 413 `storage_limit_exceeded` that leaves no
// temp file; a sandbox near its limit pauses and resumes with its files.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { loadConfig } from '../../src/core/config.js'
import { sdkError } from '../support/sdk.js'
import { apiCall, startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

const MiB = 1024 * 1024
const DEFAULT_BYTES = 48 * MiB

let server: SandboxTestServer
let client: Client

const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }

beforeAll(async () => {
  // The server's default comes from S0_SANDBOX_DISK_BYTES, as `s0 server` reads it.
  const config = loadConfig({ S0_SANDBOX_DISK_BYTES: String(DEFAULT_BYTES) })
  server = await startSandboxServer({ diskBytesDefault: config.sandboxDiskBytes })
  client = new Client({ token: server.token, baseUrl: server.url })
  await client.templates.create({
    templateId: 'disk-64',
    spec: {
      mainContainer: { image: 's0/busybox', resources: { memory: '256Mi', ephemeralStorage: '64Mi' } },
    } as never,
  })
}, 300_000)

afterAll(async () => {
  await server?.close()
})

/** The size `df` reports for `/` inside, in KiB. */
async function dfRootKiB(sb: { cmd(c: string): Promise<{ stdout: string }> }): Promise<number> {
  const out = (await sb.cmd('df -k /')).stdout
  return Number(out.split('\n')[1]?.split(/\s+/)[1])
}

describe('the root file system is bounded by resources.ephemeralStorage', () => {
  it('template, claim override and server default each set it; df / inside shows it', async () => {
    const fromTemplate = await client.sandboxes.claim('disk-64')
    expect(await dfRootKiB(fromTemplate)).toBe(64 * 1024)
    const got = await apiCall(server, 'GET', `/sandboxes/${fromTemplate.id}`)
    expect(got.json.data.resources).toMatchObject({ memory: '256Mi', ephemeralStorage: '64Mi' })

    const claimed = await apiCall(server, 'POST', '/sandboxes', {
      template: 'disk-64',
      config: { resources: { ephemeralStorage: '32Mi' } },
    })
    expect(claimed.status).toBe(201)
    expect(await dfRootKiB(client.sandbox(claimed.json.data.sandbox_id))).toBe(32 * 1024)

    const byDefault = await client.sandboxes.claim('busybox')
    expect(await dfRootKiB(byDefault)).toBe(DEFAULT_BYTES / 1024)
    for (const id of [fromTemplate.id, claimed.json.data.sandbox_id, byDefault.id])
      await client.sandboxes.delete(id)
  })

  it('a claim asking for another size than its template’s never takes a warm sandbox', async () => {
    await client.templates.create({
      templateId: 'disk-pool',
      spec: {
        mainContainer: { image: 's0/busybox', resources: { memory: '256Mi', ephemeralStorage: '64Mi' } },
        pool: { minIdle: 1, maxIdle: 1 },
      } as never,
    })
    const idle = async (): Promise<number> =>
      (
        await server.t.tdb.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM sandboxes WHERE template_id = 'disk-pool' AND status = 'idle'`,
        )
      ).rows[0]?.n ?? 0
    for (let i = 0; i < 300 && (await idle()) === 0; i++) await new Promise((r) => setTimeout(r, 100))
    expect(await idle()).toBe(1)
    const other = await apiCall(server, 'POST', '/sandboxes', {
      template: 'disk-pool',
      config: { resources: { ephemeralStorage: '32Mi' } },
    })
    expect(await dfRootKiB(client.sandbox(other.json.data.sandbox_id))).toBe(32 * 1024)
    expect(await idle()).toBe(1) // the warm one is still there
    const same = await client.sandboxes.claim('disk-pool')
    expect(await dfRootKiB(same)).toBe(64 * 1024)
    for (const id of [other.json.data.sandbox_id, same.id]) await client.sandboxes.delete(id)
    await client.templates.delete('disk-pool')
  })

  it('refuses malformed or out-of-range sizes, naming the field', async () => {
    const bad = (() => {
      try {
        return loadConfig({ S0_SANDBOX_DISK_BYTES: '1024' })
      } catch (err) {
        return err
      }
    })()
    expect(isS0Error(bad, 'config_invalid')).toBe(true)
    for (const [value, re] of [
      ['lots', /resources\.ephemeralStorage.*not a size/],
      ['1Mi', /resources\.ephemeralStorage.*outside/],
      ['2Ti', /resources\.ephemeralStorage.*outside/],
    ] as const) {
      const r = await apiCall(server, 'POST', '/sandboxes', {
        template: 'busybox',
        config: { resources: { ephemeralStorage: value } },
      })
      expect(r.status).toBe(400)
      expect(r.json.error.code).toBe('invalid_request')
      expect(r.json.error.message).toMatch(re)
    }
    const t = await apiCall(server, 'POST', '/templates', {
      template_id: 'disk-bad',
      spec: { mainContainer: { image: 's0/busybox', resources: { memory: '256Mi', ephemeralStorage: '9' } } },
    })
    expect(t.status).toBe(400)
    expect(t.json.error.message).toMatch(/mainContainer\.resources\.ephemeralStorage/)
  })

  it('an upload over the remaining space is a 413 storage_limit_exceeded and leaves no temp file', async () => {
    const sb = await client.sandboxes.claim('disk-64')
    // ~40 MiB used of 64: a 30 MiB upload cannot fit.
    expect((await sb.cmd('dd if=/dev/zero of=/root/fill bs=1M count=40')).exitCode).toBe(0)
    const err = await sdkError(sb.writeFile('/root/upload.bin', Buffer.alloc(30 * MiB, 7)))
    expect(err.statusCode).toBe(413)
    expect(err.code).toBe('storage_limit_exceeded')
    expect(err.message).toMatch(/67108864 bytes \(64 MiB\), resources\.ephemeralStorage/)
    const ls = await sb.cmd('ls -a /root')
    expect(ls.stdout).not.toMatch(/\.s0-upload-|upload\.bin/)
    // What fits still goes in.
    await sb.writeFile('/root/small.txt', 'fits')
    expect((await sb.cmd('cat /root/small.txt')).stdout).toBe('fits')
    await client.sandboxes.delete(sb.id)
  })

  it('a sandbox near its limit pauses and resumes with its files, and its next generation has the limit again', async () => {
    const sb = await client.sandboxes.claim('disk-64')
    const w = await sb.cmd(
      `sh -c 'dd if=/dev/urandom of=/root/data bs=1M count=44 2>/dev/null && sha256sum /root/data && echo note > /root/note'`,
    )
    expect(w.exitCode).toBe(0)
    const sum = w.stdout.split(' ')[0]
    // Past the limit inside: ENOSPC.
    const over = await sb.cmd(`sh -c 'dd if=/dev/zero of=/root/more bs=1M count=30'`)
    expect(over.stdout + over.stderr).toMatch(/No space left on device/)

    await client.sandboxes.pauseAndWait(sb.id, quick)
    await client.sandboxes.resumeAndWait(sb.id, quick)
    const again = client.sandbox(sb.id)
    const r = await again.cmd(`sh -c 'sha256sum /root/data; cat /root/note'`)
    expect(r.stdout).toBe(`${sum}  /root/data\nnote\n`)
    expect(await dfRootKiB(again)).toBe(64 * 1024)
    await client.sandboxes.delete(sb.id)
  })
})
