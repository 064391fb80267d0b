// Volumes at claim, through the official SDK: a volume FUSE-mounted on the host and bind-mounted
// into the sandbox; writes inside are seen through the volume files API and the other way round;
// one writer per volume; unmounted when the sandbox goes, the data staying in the volume.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'

// Response bodies are checked field by field below; their shape is the API contract's.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any

let server: SandboxTestServer
let client: Client

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }> {
  const res = await fetch(`${server.url}/api/v1${path}`, {
    method,
    headers: {
      authorization: `Bearer ${server.token}`,
      ...(body !== undefined && typeof body !== 'string' ? { 'content-type': 'application/json' } : {}),
      ...(typeof body === 'string' ? { 'content-type': 'application/octet-stream' } : {}),
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  let json: Json
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { status: res.status, json }
}

beforeAll(async () => {
  server = await startSandboxServer()
  client = new Client({ token: server.token, baseUrl: server.url + '/' })
})
afterAll(async () => {
  await server?.close()
})

describe('volumes at claim', () => {
  it('mounts a volume into a sandbox, shares its files with the volume API, and releases it', async () => {
    const volume = (await api('POST', '/sandboxvolumes', {})).json.data as { id: string }
    expect(
      (await api('POST', `/sandboxvolumes/${volume.id}/files?path=/from-api.txt`, 'written by the API\n'))
        .status,
    ).toBe(200)

    const sandbox = await client.sandboxes.claim('busybox', {
      mounts: [{ sandboxvolumeId: volume.id, mountPoint: '/workspace/data' }],
    })
    const id = sandbox.id
    expect(sandbox.bootstrapMounts).toMatchObject([
      { sandboxvolumeId: volume.id, mountPoint: '/workspace/data', state: 'mounted' },
    ])
    expect((await sandbox.cmd('cat /workspace/data/from-api.txt')).outputRaw).toBe('written by the API\n')
    await sandbox.cmd("sh -c 'echo written in the sandbox > /workspace/data/from-sandbox.txt'")
    const read = await api('GET', `/sandboxvolumes/${volume.id}/files?path=/from-sandbox.txt`)
    expect(read.json).toBe('written in the sandbox\n')

    // One writer at a time: a second claim of the same volume is a conflict, and starts nothing.
    const second = await api('POST', '/sandboxes', {
      template: 'busybox',
      mounts: [{ sandboxvolume_id: volume.id, mount_point: '/data' }],
    })
    expect(second.status).toBe(409)
    // Bad mount points and another team's (or no) volume are clear errors.
    const bad = await api('POST', '/sandboxes', {
      template: 'busybox',
      mounts: [{ sandboxvolume_id: volume.id, mount_point: 'relative/../x' }],
    })
    expect(bad.status).toBe(400)
    const missing = await api('POST', '/sandboxes', {
      template: 'busybox',
      mounts: [{ sandboxvolume_id: '00000000-0000-4000-8000-000000000000', mount_point: '/data' }],
    })
    expect(missing.status).toBe(404)

    await client.sandboxes.delete(id)
    expect((await api('GET', `/sandboxvolumes/${volume.id}/mounts`)).json.data).toEqual([])
    const after = await api('GET', `/sandboxvolumes/${volume.id}/files?path=/from-sandbox.txt`)
    expect(after.json).toBe('written in the sandbox\n')
  }, 120_000)
})
