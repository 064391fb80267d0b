// SSH in a cluster (issue 17, docs/DEPLOY.md "SSH"), run by cluster.test.ts on its cluster (one
// cluster for both saves a cluster's start in the suite). A user's SSH reaches either replica, which logs the user in
// (a team key or an API key) and relays the session to the sandbox's agent over the agent's
// private endpoint with the cluster token. Both replicas present one host key; a wrong key is
// refused; an agent's endpoint refuses a user's key and API key; a sandbox whose node died is
// woken on the other node by the SSH login itself.
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { apis, Client, runtime } from 'sandbox0'
import ssh2 from 'ssh2'
import type { ClientChannel } from 'ssh2'
import { beforeAll, describe, expect, it } from 'vitest'
import type { Db } from '../../src/core/db.js'
import type { Cluster } from '../support/cluster.js'
import { until } from '../services/support.js'

let cluster: Cluster
let db: Db
let skip = false
let token: string
let sdk: Client
let sandboxId: string
let DEAD_AFTER_S: number
const CONTENT = 'written through the SDK, read over SSH\n'
const key = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'registered' })
const wrongKey = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'not registered' })
const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }

function replica(i: number): Cluster['apis'][number] {
  return cluster.apis[i] as Cluster['apis'][number]
}

interface Login {
  /** Default: loopback (a replica's SSH). */
  host?: string
  port: number
  privateKey?: string
  password?: string
  user?: string
}

/** An ssh2 client logged in (or the error why not), and the host key the server showed. */
async function connect(l: Login): Promise<{ c: InstanceType<typeof ssh2.Client>; hostKey: Buffer }> {
  const c = new ssh2.Client()
  let hostKey: Buffer = Buffer.alloc(0)
  await new Promise<void>((resolve, reject) => {
    c.once('ready', () => resolve())
    c.once('error', reject)
    c.connect({
      host: l.host ?? '127.0.0.1',
      port: l.port,
      username: l.user ?? sandboxId,
      ...(l.privateKey ? { privateKey: l.privateKey } : {}),
      ...(l.password ? { password: l.password } : {}),
      hostVerifier: (k: Buffer) => {
        hostKey = k
        return true
      },
      readyTimeout: 60_000,
    })
  })
  return { c, hostKey }
}

/** A command's output, stderr and exit code over an ssh2 connection. */
function exec(
  c: InstanceType<typeof ssh2.Client>,
  command: string,
  input?: string,
): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(err)
      let stdout = ''
      let stderr = ''
      let code: number | null = null
      ch.on('data', (b: Buffer) => (stdout += b.toString()))
      ch.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
      ch.on('exit', (c: number | null) => (code = c))
      ch.on('close', () => resolve({ stdout, stderr, code }))
      ch.end(input ?? '')
    })
  })
}

function openssh(
  keyFile: string,
  port: number,
  command: string,
  input: string,
): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', [
      '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'BatchMode=yes',
      '-o', 'IdentitiesOnly=yes',
      '-o', 'LogLevel=ERROR',
      '-i', keyFile,
      '-p', String(port),
      `${sandboxId}@127.0.0.1`,
      command,
    ]) // prettier-ignore
    let stdout = ''
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout: stdout.replace(/^\s+/, '') })
    })
    child.stdin.end(input)
  })
}

/** The private SSH endpoint of the sandbox's agent (its address is its advertise URL's). */
async function agentSsh(): Promise<{ host: string; port: number }> {
  const { rows } = await db.query<{ ssh_port: number; advertise_url: string }>(
    'SELECT n.ssh_port, n.advertise_url FROM sandboxes s JOIN nodes n ON n.id = s.host WHERE s.id = $1',
    [sandboxId],
  )
  const r = rows[0] as { ssh_port: number; advertise_url: string }
  return { host: new URL(r.advertise_url).hostname, port: r.ssh_port }
}

export interface SshCasesContext {
  cluster: Cluster
  db: Db
  skip: boolean
  deadAfterS: number
}

/**
 * The SSH cases, on the caller's cluster (started with `ssh: true`, at least 2 agents). The last
 * one kills the node of its sandbox and leaves it dead: run them last.
 */
export function sshCases(shared: () => SshCasesContext): void {
  describe('SSH through the API replicas of a cluster', () => {
    beforeAll(async () => {
      ;({ cluster, db, skip, deadAfterS: DEAD_AFTER_S } = shared())
      if (skip) return
      token = await cluster.token()
      sdk = new Client({ token, baseUrl: replica(0).url })
      // Through replica 1: accounts are served by any replica, keys are shared in Postgres.
      await new apis.UsersApi(
        new runtime.Configuration({ basePath: replica(1).url, accessToken: async () => token }),
      )
        .usersMeSshKeysPost({ createSSHPublicKeyRequest: { name: 'laptop', publicKey: key.public } })
        .catch(async (err: { response?: Response }) => {
          throw new Error(`ssh key: ${err.response?.status} ${await err.response?.text()}`)
        })
      const sb = await sdk.sandboxes.claim('busybox')
      sandboxId = sb.id
      await sb.writeFile('/root/x', CONTENT)
      // Agents are ready (/readyz) a moment before their SSH endpoint is registered.
      await until(async () => {
        const { rows } = await db.query<{ n: string }>(
          'SELECT count(*) AS n FROM nodes WHERE ssh_port IS NOT NULL',
        )
        return Number(rows[0]?.n) === cluster.agents.length ? true : undefined
      }, 'every agent to register its SSH port')
    }, 300_000)

    it("reports a replica's SSH endpoint as Sandbox.ssh, not the agent's", async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const r = await fetch(`${replica(1).url}/api/v1/sandboxes/${sandboxId}`, {
        headers: { authorization: `Bearer ${token}` },
      })
      const body = (await r.json()) as { data: { ssh?: unknown } }
      expect(body.data.ssh).toEqual({ host: '127.0.0.1', port: replica(0).sshPort, username: sandboxId })
    })

    it('runs `cat` in the sandbox through each replica, with one host key for both', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const keys: Buffer[] = []
      for (const r of cluster.apis) {
        const { c, hostKey } = await connect({ port: r.sshPort as number, privateKey: key.private })
        try {
          expect(await exec(c, 'cat /root/x'), r.name).toEqual({ stdout: CONTENT, stderr: '', code: 0 })
          keys.push(hostKey)
        } finally {
          c.end()
        }
      }
      expect(keys[0]?.length).toBeGreaterThan(0)
      expect(keys[1]?.equals(keys[0] as Buffer)).toBe(true)
    }, 120_000)

    it('relays stdin, stderr, exit codes and SFTP; an API key logs in as password', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const { c } = await connect({ port: replica(1).sshPort as number, password: token })
      try {
        expect(await exec(c, 'wc -c; echo oops >&2; exit 3', 'hello')).toEqual({
          stdout: expect.stringMatching(/^\s*5\n$/) as unknown as string,
          stderr: 'oops\n',
          code: 3,
        })
        const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) =>
          c.sftp((err, s) => (err ? reject(err) : resolve(s))),
        )
        const read = await new Promise<Buffer>((resolve, reject) =>
          sftp.readFile('/root/x', (err, b) => (err ? reject(err) : resolve(b))),
        )
        expect(read.toString()).toBe(CONTENT)
        sftp.end()
      } finally {
        c.end()
      }
    }, 120_000)

    it('relays a pty, its window changes and exit status, `ssh -L`, and OpenSSH', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const { c } = await connect({ port: replica(0).sshPort as number, privateKey: key.private })
      try {
        const sized = await new Promise<string>((resolve, reject) =>
          c.exec('stty size', { pty: { rows: 33, cols: 101, term: 'xterm' } }, (err, ch) => {
            if (err) return reject(err)
            let out = ''
            ch.on('data', (b: Buffer) => (out += b.toString()))
            ch.on('close', () => resolve(out))
          }),
        )
        expect(sized).toMatch(/^33 101\r?\n/)
        const sh = await new Promise<ClientChannel>((resolve, reject) =>
          c.shell({ rows: 20, cols: 70, term: 'xterm' }, (err, ch) => (err ? reject(err) : resolve(ch))),
        )
        let seen = ''
        sh.on('data', (b: Buffer) => (seen += b.toString()))
        // A terminal resized once the shell runs (its prompt is out), as a user's would be.
        for (let i = 0; i < 100 && !seen.includes('#'); i++) await new Promise((r) => setTimeout(r, 100))
        sh.setWindow(40, 120, 0, 0)
        // The resize reaches the sandbox's terminal asynchronously: ask until it shows (bounded).
        for (let i = 0; i < 40 && !/\b40 120\b/.test(seen); i++) {
          sh.write('stty size\n')
          await new Promise((r) => setTimeout(r, 250))
        }
        expect(seen).toMatch(/\b40 120\b/)
        const exit = new Promise<number>((r) => sh.on('exit', (code: number) => r(code)))
        sh.write('exit 7\n')
        expect(await exit).toBe(7)
        // -L: the agent dials the sandbox; the replica relays the bytes.
        await exec(
          c,
          'mkdir -p /root/www && echo served > /root/www/index.html && busybox httpd -p 8080 -h /root/www',
        )
        const page = await new Promise<string>((resolve, reject) =>
          c.forwardOut('127.0.0.1', 0, '127.0.0.1', 8080, (err, ch) => {
            if (err) return reject(err)
            let out = ''
            ch.on('data', (b: Buffer) => (out += b.toString()))
            ch.on('close', () => resolve(out))
            ch.end('GET /index.html HTTP/1.0\r\n\r\n')
          }),
        )
        expect(page).toMatch(/200 OK[\s\S]*served/)
      } finally {
        c.end()
      }
      // OpenSSH sends stdin and its EOF before the session's reply: the relay keeps them.
      const dir = await mkdtemp(path.join(os.tmpdir(), 's0-ssh-cluster-'))
      try {
        const file = path.join(dir, 'id')
        await writeFile(file, key.private, { mode: 0o600 })
        const ran = await openssh(file, replica(1).sshPort as number, 'wc -c; cat /root/x', 'four')
        expect(ran).toEqual({ code: 0, stdout: `4\n${CONTENT}` })
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    }, 120_000)

    it('refuses a wrong key and an unknown sandbox at a replica', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const port = replica(0).sshPort as number
      await expect(connect({ port, privateKey: wrongKey.private })).rejects.toThrow(
        /authentication methods failed/,
      )
      await expect(connect({ port, privateKey: key.private, user: 'sb-000000000000' })).rejects.toThrow(
        /authentication methods failed/,
      )
    }, 60_000)

    it("refuses a user's key and API key at the agent's own SSH endpoint", async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const { host, port } = await agentSsh()
      expect(cluster.apis.map((r) => r.url)).not.toContain(`http://${host}:${port}`)
      await expect(connect({ host, port, password: token })).rejects.toThrow(/authentication methods failed/)
      await expect(connect({ host, port, privateKey: key.private })).rejects.toThrow(
        /authentication methods failed/,
      )
    }, 60_000)

    it("wakes a paused sandbox whose node died on a live node, at the user's SSH login", async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      await sdk.sandboxes.pauseAndWait(sandboxId, quick)
      const { rows } = await db.query<{ host: string }>('SELECT host FROM sandboxes WHERE id = $1', [
        sandboxId,
      ])
      const host = (rows[0] as { host: string }).host
      const victim = cluster.agents.find((a) => a.id === host) as Cluster['agents'][number]
      await victim.kill()
      await until(
        async () => {
          const { rows: n } = await db.query<{ state: string }>('SELECT state FROM nodes WHERE id = $1', [
            host,
          ])
          return n[0]?.state === 'dead' ? true : undefined
        },
        'the killed node to be declared dead',
        (DEAD_AFTER_S + 30) * 1000,
      )
      const { c } = await connect({ port: replica(1).sshPort as number, privateKey: key.private })
      try {
        expect(await exec(c, 'cat /root/x')).toEqual({ stdout: CONTENT, stderr: '', code: 0 })
      } finally {
        c.end()
      }
      const { rows: after } = await db.query<{ host: string }>('SELECT host FROM sandboxes WHERE id = $1', [
        sandboxId,
      ])
      expect(after[0]?.host).not.toBe(host)
      expect(cluster.agents.map((a) => a.id)).toContain(after[0]?.host)
    }, 180_000)
  })
}
