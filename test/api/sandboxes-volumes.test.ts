// Volumes at claim, through the official SDK: a volume FUSE-mounted on the host and bind-mounted
// into the sandbox; writes inside are seen through the volume files API and the other way round;
// one writer per volume; unmounted when the sandbox goes, the data staying in the volume.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { apiCall, startSandboxServer, type Json, type SandboxTestServer } from './sandbox-fixture.js'

let server: SandboxTestServer
let client: Client

const api = (method: string, path: string, body?: unknown): ReturnType<typeof apiCall> =>
  apiCall(server, method, path, body)

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

  it('mounts read-only (asked for, or declared by the template), shares readers, and keeps one writer', async () => {
    const volume = (await api('POST', '/sandboxvolumes', {})).json.data as { id: string }
    await api('POST', `/sandboxvolumes/${volume.id}/files?path=/shared.txt`, 'shared\n')
    // A template that declares a read-only mount point (and another one left unbound).
    const tpl = await api('POST', '/templates', {
      template_id: 'ro-data',
      spec: {
        mainContainer: { image: 's0/busybox', resources: { memory: '128Mi' } },
        volumeMounts: [
          { name: 'ref', mountPath: '/ref', readOnly: true },
          { name: 'scratch', mountPath: '/scratch' },
        ],
      },
    })
    expect(tpl.status).toBe(201)
    const reader1 = await client.sandboxes.claim('ro-data', {
      mounts: [{ sandboxvolumeId: volume.id, mountPoint: '/ref' }],
    })
    const reader2 = await api('POST', '/sandboxes', {
      template: 'busybox',
      mounts: [{ sandboxvolume_id: volume.id, mount_point: '/ref', read_only: true }],
    })
    expect(reader2.status).toBe(201)
    const r1 = await reader1.cmd(
      `sh -c 'cat /ref/shared.txt; echo x > /ref/new.txt || echo refused; test -d /scratch && echo scratch-dir'`,
    )
    expect(r1.stdout).toBe('shared\nrefused\nscratch-dir\n')
    expect(r1.stderr).toMatch(/Read-only file system/)
    // Readers exclude a writer...
    const writer = await api('POST', '/sandboxes', {
      template: 'busybox',
      mounts: [{ sandboxvolume_id: volume.id, mount_point: '/data' }],
    })
    expect(writer.status).toBe(409)
    expect(writer.json.error.message).toMatch(/one writer at a time/)
    // ...and a reader sees what the volume API writes meanwhile.
    await api('POST', `/sandboxvolumes/${volume.id}/files?path=/later.txt`, 'later\n')
    expect((await reader1.cmd('cat /ref/later.txt')).stdout).toBe('later\n')
    await client.sandboxes.delete(reader1.id)
    await client.sandboxes.delete(reader2.json.data.sandbox_id)
    const w = await api('POST', '/sandboxes', {
      template: 'busybox',
      mounts: [{ sandboxvolume_id: volume.id, mount_point: '/data' }],
    })
    expect(w.status).toBe(201)
    // A writer excludes readers, and a mount made for a sandbox cannot be unmounted through the API.
    const r3 = await api('POST', '/sandboxes', {
      template: 'busybox',
      mounts: [{ sandboxvolume_id: volume.id, mount_point: '/ref', read_only: true }],
    })
    expect(r3.status).toBe(409)
    const m = (await api('GET', `/sandboxvolumes/${volume.id}/mounts`)).json.data as Json[]
    expect(m).toMatchObject([{ sandbox_id: w.json.data.sandbox_id, read_only: false }])
    expect((await api('DELETE', `/sandboxvolumes/${volume.id}/mounts/${m[0].id}`)).status).toBe(409)
    await client.sandboxes.delete(w.json.data.sandbox_id)
    expect((await api('DELETE', '/templates/ro-data')).status).toBe(200)
  }, 120_000)
})
