// The files API sees what the sandbox's processes see, on every runtime: a file written through
// the SDK is read by `cat` inside, and a file a process writes is read through the SDK, in the
// root file system (/root), the scratch file systems (/tmp, /dev/shm) and a volume mount point.
// Listings agree with `ls`; moves across two file systems and deleting a mount point are refused.
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DriverName } from '../../src/runtime/driver.js'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'
import { sdkError } from '../support/sdk.js'

const DRIVERS: DriverName[] = ['runc', 'crun', 'runsc']
const DIRS = ['/root', '/tmp', '/dev/shm', '/workspace/data']

let server: SandboxTestServer
let client: Client

beforeAll(async () => {
  server = await startSandboxServer({ driver: 'runc' })
  client = new Client({ token: server.token, baseUrl: server.url })
  for (const driver of DRIVERS) {
    await client.templates.create({
      templateId: `view-${driver}`,
      spec: {
        mainContainer: { image: 's0/busybox', resources: { memory: '256Mi' } },
        volumeMounts: [{ name: 'data', mountPath: '/workspace/data' }],
        runtime: { driver },
      } as never,
    })
  }
}, 300_000)

afterAll(async () => {
  await server?.close()
})

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8')

describe.each(DRIVERS)('the files API in the sandbox mount view (%s)', (driver) => {
  it('round-trips files both ways in /root, /tmp, /dev/shm and a volume mount point', async () => {
    const v = await client.volumes.create({})
    const sb = await client.sandboxes.claim(`view-${driver}`, {
      mounts: [{ sandboxvolumeId: v.id, mountPoint: '/workspace/data' }],
    })
    try {
      for (const dir of DIRS) {
        await sb.writeFile(`${dir}/api.txt`, `from the api in ${dir}`)
        expect({ dir, out: (await sb.cmd(`cat ${dir}/api.txt`)).stdout }).toEqual({
          dir,
          out: `from the api in ${dir}`,
        })
        expect((await sb.cmd(`sh -c "echo from a process > ${dir}/proc.txt"`)).exitCode).toBe(0)
        expect({ dir, got: text(await sb.readFile(`${dir}/proc.txt`)) }).toEqual({
          dir,
          got: 'from a process\n',
        })
        const listed = (await sb.listFiles(dir))
          .map((f) => f.name)
          .filter((n) => n === 'api.txt' || n === 'proc.txt')
        expect({ dir, listed: listed.sort() }).toEqual({ dir, listed: ['api.txt', 'proc.txt'] })
        const ls = (await sb.cmd(`ls ${dir}`)).stdout.split(/\s+/)
        expect(ls).toEqual(expect.arrayContaining(['api.txt', 'proc.txt']))
      }
      // The volume mounted there is the volume the volumes API serves.
      expect(text(await client.volumes.readFile(v.id, '/proc.txt'))).toBe('from a process\n')

      // The watch sees what processes do in /tmp and in the volume (a recursive watch of /workspace
      // follows the mount).
      const stream = await sb.watchFiles('/', true)
      const seen: string[] = []
      const done = (async () => {
        for await (const ev of stream.events()) {
          if (ev.type === 'event') seen.push(`${ev.event} ${ev.path}`)
          if (seen.includes('create /tmp/watched.txt') && seen.includes('create /workspace/data/watched.txt'))
            break
        }
      })()
      await sb.cmd('sh -c "echo w > /tmp/watched.txt; echo w > /workspace/data/watched.txt"')
      await Promise.race([
        done,
        new Promise((_, reject) => setTimeout(() => reject(new Error(`events: ${seen.join(', ')}`)), 10_000)),
      ])
      stream.close()

      // Two file systems of the sandbox: a move between them is refused (as rename(2) would),
      // and a mount point cannot be deleted through the API.
      const cross = await sdkError(sb.moveFile('/tmp/api.txt', '/root/moved.txt'))
      expect({ status: cross.statusCode, code: cross.code }).toEqual({ status: 409, code: 'cross_device' })
      expect((await sb.cmd('cat /tmp/api.txt')).stdout).toBe('from the api in /tmp')
      const busy = await sdkError(sb.deleteFile('/workspace/data'))
      expect({ status: busy.statusCode, code: busy.code }).toEqual({ status: 409, code: 'conflict' })
      await sb.moveFile('/tmp/api.txt', '/tmp/renamed.txt')
      expect((await sb.cmd('cat /tmp/renamed.txt')).stdout).toBe('from the api in /tmp')
    } finally {
      await client.sandboxes.delete(sb.id)
      await client.volumes.delete(v.id)
    }
  }, 180_000)
})
