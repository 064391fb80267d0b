// A real `s0 server` with S0_RUNTIMES=containerd:runc, through the official SDK: claim, cmd,
// files, pause and resume, a clean restart (one sandbox adopted, one paused with its files), delete. Each step is checked against our own
// containerd with Debian's `ctr` on its socket under the server's state dir: the sandbox is a
// container (with a running task) there, never one of runc's CLI root; a stopped server stops its
// daemon (the container stays up under its shim) and the next one adopts the sandbox.
import { execFile } from 'node:child_process'
import { access, readFile, readdir } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serverProcesses, type ServerProcesses } from '../support/server.js'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'

const run = promisify(execFile)
let servers: ServerProcesses

/** Our containerd's directory (makeDriver: `<runtime state>/runc/containerd-runc/containerd`). */
function daemonDir(): string {
  return path.join(servers.stateDir, 'runtime', 'runc', 'containerd-runc', 'containerd')
}

/** `ctr` on our daemon's socket, namespace `s0`: its lines, without the header. */
async function ctr(...args: string[]): Promise<string[]> {
  const { stdout } = await run('ctr', ['--address', path.join(daemonDir(), 'ctd.sock'), '-n', 's0', ...args])
  return stdout.split('\n').filter(Boolean)
}

/** Task id → [pid, status] as `ctr tasks ls` prints them. */
async function tasks(): Promise<Map<string, [number, string]>> {
  const lines = (await ctr('tasks', 'ls')).slice(1)
  return new Map(
    lines.map((l) => {
      const [id = '', pid = '0', status = ''] = l.trim().split(/\s+/)
      return [id, [Number(pid), status]]
    }),
  )
}

/** Pids of processes whose command line names our daemon's config (ours, under this state dir). */
async function daemonPids(): Promise<number[]> {
  const config = path.join(daemonDir(), 'config.toml')
  const out: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(config)) out.push(Number(entry))
  }
  return out
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

beforeAll(async () => {
  // A short prefix: the probe's containerd socket sits deep under the state dir (108 bytes at most).
  servers = await serverProcesses({
    prefix: 's0-ctd-',
    env: { S0_RUNTIMES: 'containerd:runc', S0_TEMPLATE_DIR: TEMPLATE_CACHE_DIR },
  })
})
/** Sandboxes a failed test left: they outlive a stopped server by design, so delete them first. */
const claimed: string[] = []

afterAll(async () => {
  if (servers?.process)
    for (const id of claimed)
      await servers.api(`/api/v1/sandboxes/${id}`, { method: 'DELETE' }).catch(() => undefined)
  // A server that died mid-test would leave its detached daemon: ours by its config path.
  await servers?.kill('SIGTERM')
  if (servers) for (const pid of await daemonPids()) process.kill(pid, 'SIGKILL')
  await servers?.close()
})

const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }

describe('sandboxes through containerd (S0_RUNTIMES=containerd:runc)', () => {
  it('claim, cmd, files, pause/resume, restart and delete run on our own containerd', async () => {
    await servers.start()
    const client = new Client({ token: await servers.token(), baseUrl: servers.url })

    const sandbox = await client.sandboxes.claim('busybox')
    claimed.push(sandbox.id)
    expect(sandbox.status).toBe('running')
    const c = await sandbox.cmd(`sh -c 'echo out; echo err >&2; echo proc > /tmp/alive; exit 3'`)
    expect(c).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 3 })
    await sandbox.writeFile('/root/notes/hello.txt', 'hello through containerd')
    expect(Buffer.from(await sandbox.readFile('/root/notes/hello.txt')).toString()).toBe(
      'hello through containerd',
    )
    expect((await sandbox.cmd('cat /root/notes/hello.txt')).stdout).toBe('hello through containerd')

    // The container is containerd's, with a running task; runc's CLI root was never made.
    expect(await ctr('containers', 'ls', '-q')).toEqual([sandbox.id])
    expect((await tasks()).get(sandbox.id)?.[1]).toBe('RUNNING')
    const cliRoot = path.join(servers.stateDir, 'runtime', 'runc', 'runc')
    expect(
      await access(cliRoot).then(
        () => 'exists',
        () => 'absent',
      ),
    ).toBe('absent')

    // Pause: the container goes; resume: a new one on the same daemon, with the files.
    const other = await client.sandboxes.claim('busybox')
    claimed.push(other.id)
    await other.cmd(`sh -c 'echo before-pause > /root/b.txt'`)
    await client.sandboxes.pauseAndWait(other.id, quick)
    expect(await ctr('containers', 'ls', '-q')).toEqual([sandbox.id])
    await client.sandboxes.resumeAndWait(other.id, quick)
    expect((await ctr('containers', 'ls', '-q')).sort()).toEqual([sandbox.id, other.id].sort())
    const resumed = client.sandbox(other.id)
    expect((await resumed.cmd('cat /root/b.txt')).stdout).toBe('before-pause\n')
    await resumed.cmd(`sh -c 'echo after-resume > /root/c.txt'`)

    // A clean stop closes the driver: our daemon is gone, the inits live on under their shims.
    const [initPid] = (await tasks()).get(sandbox.id) ?? [0]
    const [otherPid] = (await tasks()).get(other.id) ?? [0]
    expect(initPid).toBeGreaterThan(0)
    const [daemon] = await daemonPids()
    expect(daemon).toBeGreaterThan(0)
    await servers.kill('SIGTERM')
    expect(await daemonPids()).toEqual([])
    expect(alive(daemon as number)).toBe(false)
    expect([alive(initPid), alive(otherPid)]).toEqual([true, true])

    // The next server starts a daemon on the same dir, which finds the shims again. The plain
    // sandbox is adopted: same processes (its /tmp is theirs).
    await servers.start()
    expect((await client.sandboxes.get(sandbox.id)).status).toBe('running')
    expect((await sandbox.cmd('cat /tmp/alive /root/notes/hello.txt')).stdout).toBe(
      'proc\nhello through containerd',
    )
    expect((await tasks()).get(sandbox.id)).toEqual([initPid, 'RUNNING'])
    // The resumed one's root sat on a checkpoint the stopped server had mounted: as with the
    // CLI, it is stopped through containerd with its files captured, and left paused.
    expect((await client.sandboxes.get(other.id)).status).toBe('paused')
    expect(await ctr('containers', 'ls', '-q')).toEqual([sandbox.id])
    await client.sandboxes.resumeAndWait(other.id, quick)
    expect((await resumed.cmd('cat /root/b.txt /root/c.txt')).stdout).toBe('before-pause\nafter-resume\n')
    expect((await tasks()).get(other.id)?.[1]).toBe('RUNNING')

    for (const id of [sandbox.id, other.id]) await client.sandboxes.delete(id)
    expect(await ctr('containers', 'ls', '-q')).toEqual([])
    expect(await tasks()).toEqual(new Map())
    await servers.kill('SIGTERM')
    expect(await daemonPids()).toEqual([])
  }, 120_000)
})
