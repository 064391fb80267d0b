// The quickstart of the official SDK (npm sandbox0@0.9.5), unchanged: claim the Debian `default`
// template, a stateful python REPL, cmd, cmdStream, files, list and delete. Run against one
// server (sandboxes-sdk.test.ts) and through a cluster's replicas (cluster.test.ts).
import { APIError, Client } from 'sandbox0'
import { beforeAll, describe, expect, it } from 'vitest'
import type { CaseTarget } from './sandboxes-lifecycle-cases.js'

let client: Client
let skip = false

export function quickstartSdkCases(target: CaseTarget): void {
  describe('sandbox0 SDK 0.9.5: the quickstart', () => {
    beforeAll(() => {
      const t = target()
      if (!t) {
        skip = true
        return
      }
      client = new Client({ token: t.token, baseUrl: t.url + '/' })
    })

    it('runs the quickstart: claim, stateful python, cmd, cmdStream, files, delete', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const sandbox = await client.sandboxes.claim('default')
      expect(sandbox.id).toMatch(/^sb-[0-9a-f]{12}$/)
      expect(sandbox.status).toBe('running')
      expect(sandbox.template).toBe('default')

      await sandbox.run('python', 'x = 41')
      const r = await sandbox.run('python', 'print(x + 1)')
      expect(r.outputRaw).toBe('42\n')
      const err = await sandbox.run('python', 'raise ValueError("boom")')
      expect(err.outputRaw).toContain('ValueError: boom')
      // A block without its closing blank line, and an expression's value.
      await sandbox.run('python', 'def f(a):\n    return a * 2')
      expect((await sandbox.run('python', 'f(21)')).outputRaw).toBe('42\n')

      const c = await sandbox.cmd('sh -c "echo out; echo err >&2; exit 3"')
      expect(c.stdout).toBe('out\n')
      expect(c.stderr).toBe('err\n')
      expect(c.exitCode).toBe(3)
      expect(c.state).toBe('crashed')
      const okCmd = await sandbox.cmd('python3 -c "import sys; print(sys.version_info[0])"')
      expect(okCmd.outputRaw).toBe('3\n')
      expect(okCmd.exitCode).toBe(0)
      expect(okCmd.state).toBe('stopped')

      const stream = await sandbox.cmdStream('sh -c "echo a; sleep 0.3; echo b >&2; exit 4"')
      const outputs: { source: string; data: string }[] = []
      for await (const o of stream.outputs()) outputs.push({ source: o.source, data: o.data })
      const done = await stream.wait()
      expect(outputs).toEqual([
        { source: 'stdout', data: 'a\n' },
        { source: 'stderr', data: 'b\n' },
      ])
      expect(done.exitCode).toBe(4)
      // A command that finishes before the stream attaches is replayed.
      const fast = await sandbox.cmdStream('printf x')
      const fastOut: string[] = []
      for await (const o of fast.outputs()) fastOut.push(o.data)
      expect(fastOut.join('')).toBe('x')
      expect((await fast.wait()).exitCode).toBe(0)

      await sandbox.writeFile('/workspace/notes/hello.txt', 'hello from the SDK')
      expect(Buffer.from(await sandbox.readFile('/workspace/notes/hello.txt')).toString()).toBe(
        'hello from the SDK',
      )
      const inside = await sandbox.cmd('cat /workspace/notes/hello.txt')
      expect(inside.stdout).toBe('hello from the SDK')
      await sandbox.cmd('sh -c "echo made-inside > /workspace/notes/inside.txt"')
      const list = await sandbox.listFiles('/workspace/notes')
      expect(list.map((f) => `${f.name}:${f.type}`)).toEqual(['hello.txt:file', 'inside.txt:file'])
      await sandbox.mkdir('/workspace/a/b', true)
      await sandbox.moveFile('/workspace/notes/inside.txt', '/workspace/a/b/moved.txt')
      const st = await sandbox.statFile('/workspace/a/b/moved.txt')
      expect(st.size).toBe(12)
      await sandbox.deleteFile('/workspace/a')
      const gone = await sandbox.statFile('/workspace/a/b/moved.txt').catch((e: unknown) => e)
      expect((gone as APIError).statusCode).toBe(404)

      // File watch: changes made inside the sandbox and through the API are reported.
      await sandbox.mkdir('/workspace/watched', false)
      const watcher = await sandbox.watchFiles('/workspace/watched', true)
      const events: string[] = []
      const reader = (async () => {
        for await (const e of watcher.events()) {
          if (e.type === 'event') events.push(`${e.event} ${e.path}`)
          if (events.includes('remove /workspace/watched/sub/a.txt')) break
        }
      })()
      await sandbox.cmd(
        'sh -c "mkdir /workspace/watched/sub && sleep 0.1 && echo x > /workspace/watched/sub/a.txt"',
      )
      await sandbox.deleteFile('/workspace/watched/sub/a.txt')
      await reader
      watcher.close()
      expect(events).toEqual(
        expect.arrayContaining([
          'create /workspace/watched/sub',
          'create /workspace/watched/sub/a.txt',
          'remove /workspace/watched/sub/a.txt',
        ]),
      )

      const info = await client.sandboxes.get(sandbox.id)
      expect(info.status).toBe('running')
      expect(info.paused).toBe(false)
      expect(info.templateId).toBe('default')
      expect((await client.sandboxes.list()).sandboxes.map((s) => s.id)).toContain(sandbox.id)

      await client.sandboxes.delete(sandbox.id)
      const after = await client.sandboxes.get(sandbox.id).catch((e: unknown) => e)
      expect(after).toBeInstanceOf(APIError)
      expect((after as APIError).statusCode).toBe(404)
    })
  })
}
