// The main case of workspace sync: the volume is mounted in a running sandbox (FUSE on the host,
// bind-mounted into a runc container) while a live `s0 sync` session keeps a local folder in
// sync with it. What the agent writes inside reaches the folder; what the user writes in the
// folder is visible inside; both sides edit at once and end equal.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { rm, mkdtemp } from 'node:fs/promises'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ApiClient } from '../../src/cli/api-client.js'
import { SyncRemote } from '../../src/cli/sync/remote.js'
import { SyncSession } from '../../src/cli/sync/session.js'
import { apiCall, startSandboxServer, type SandboxTestServer } from '../api/sandbox-fixture.js'
import { localTree, until } from './support.js'

let server: SandboxTestServer
let client: Client
let dir: string

beforeAll(async () => {
  server = await startSandboxServer()
  client = new Client({ token: server.token, baseUrl: server.url + '/' })
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-sync-sbx-'))
}, 120_000)

afterAll(async () => {
  await server?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('sync with a volume mounted in a running sandbox', () => {
  it('carries the agent’s writes out and the user’s writes in, live, both at once', async () => {
    const volume = (await apiCall(server, 'POST', '/sandboxvolumes', {})).json.data as { id: string }
    await mkdir(path.join(dir, 'src'))
    await writeFile(path.join(dir, 'src', 'app.py'), 'print("v1")\n')
    const session = new SyncSession({
      localRoot: dir,
      remote: new SyncRemote(
        new ApiClient({ baseUrl: server.url, token: server.token }),
        volume.id,
        '/',
        20_000,
      ),
      mode: { mode: 'two-way-safe' },
    })
    await session.open()
    let live = false
    const running = session.live(() => (live = true))
    const sandbox = await client.sandboxes.claim('busybox', {
      mounts: [{ sandboxvolumeId: volume.id, mountPoint: '/workspace' }],
    })
    try {
      await until(
        async () => live,
        (v) => v,
        30_000,
      )
      const inside = async (cmd: string): Promise<string> =>
        (await sandbox.cmd(`sh -c '${cmd}'`)).outputRaw ?? ''
      // The user's file is there inside.
      expect(
        await until(
          () => inside('cat /workspace/src/app.py 2>/dev/null'),
          (s) => s === 'print("v1")\n',
        ),
      ).toBe('print("v1")\n')
      // The agent writes: new files, an edit, a directory, an exec bit.
      await inside(
        'mkdir -p /workspace/out && echo result > /workspace/out/r.txt && printf "print(2)\\n" > /workspace/src/app.py && printf "#!/bin/sh\\n" > /workspace/run.sh && chmod +x /workspace/run.sh',
      )
      const t = await until(
        () => localTree(dir).catch(() => ({}) as Record<string, string>),
        (x) =>
          x['out/r.txt'] === 'file:result\n' &&
          x['src/app.py'] === 'file:print(2)\n' &&
          x['run.sh'] === 'file:#!/bin/sh\n x',
      )
      expect(t).toMatchObject({
        'out/r.txt': 'file:result\n',
        'src/app.py': 'file:print(2)\n',
        'run.sh': 'file:#!/bin/sh\n x',
      })
      // The user edits while the agent writes elsewhere: both arrive.
      await writeFile(path.join(dir, 'src', 'app.py'), 'print(3)\n')
      await inside('for i in 1 2 3 4 5; do echo $i > /workspace/out/n$i.txt; done')
      expect(
        await until(
          () => inside('cat /workspace/src/app.py'),
          (s) => s === 'print(3)\n',
        ),
      ).toBe('print(3)\n')
      await until(
        () => readFile(path.join(dir, 'out', 'n5.txt'), 'utf8').catch(() => ''),
        (s) => s === '5\n',
      )
      // A delete inside reaches the folder; a delete in the folder reaches the sandbox.
      await inside('rm /workspace/out/n1.txt')
      await rm(path.join(dir, 'out', 'n2.txt'))
      await until(
        async () => [await localTree(dir).catch(() => ({})), await inside('ls /workspace/out')] as const,
        ([l, ls]) => !('out/n1.txt' in l) && !ls.includes('n2.txt'),
      )
      const names = (await inside('cd /workspace && find . | sort')).trim().split('\n')
      const local = Object.keys(await localTree(dir)).map((p) => `./${p}`)
      expect(names.filter((n) => n !== '.')).toEqual(local.sort())
    } finally {
      session.stop()
      await running
      await session.close()
      await client.sandboxes.delete(sandbox.id)
    }
  }, 180_000)
})
