// The SSH endpoint end to end: a listening s0 server with real runc sandboxes (busybox template)
// on the sandbox network, keys registered through the SDK's generated account client, and the
// system's OpenSSH client (ssh, scp, sftp) and ssh2's client (pty sizes, window changes, -L).
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { apis, Client, runtime } from 'sandbox0'
import ssh2 from 'ssh2'
import type { ClientChannel } from 'ssh2'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { runSshKey } from '../../src/cli/ssh-command.js'
import { runCommand } from '../support/cli.js'
import { spawnS0 } from '../support/s0-process.js'
import { authenticate, createApiKey, findTeamSshKey } from '../../src/accounts/index.js'
import { SshServer } from '../../src/sandboxes/ssh/index.js'
import { loadSandboxSshHostKey, SSH_HOST_KEY_FILE } from '../../src/sandboxes/ssh/index.js'
import { apiCall, startSandboxServer, type SandboxTestServer } from '../api/sandbox-fixture.js'

let server: SandboxTestServer
let ssh: SshServer
let client: Client
let dir: string
let keyA: string // registered for the sandbox's team
let keyB: string // registered for another team only
let sandboxId: string
let otherToken: string // an API key of the other team

const ssh2Client = ssh2.Client

function usersApi(url: string, token: string): InstanceType<typeof apis.UsersApi> {
  return new apis.UsersApi(new runtime.Configuration({ basePath: url, accessToken: async () => token }))
}

async function keygen(name: string): Promise<string> {
  const file = path.join(dir, name)
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file])
  return file
}

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

function run(bin: string, args: string[], input?: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()))
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
    child.stdin.on('error', () => undefined) // EPIPE: it exited before reading its input
    child.stdin.end(input ?? '')
  })
}

function sshOpts(key: string): string[] {
  return [
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'BatchMode=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', 'LogLevel=ERROR',
    '-i', key,
  ] // prettier-ignore
}

function sshRun(
  key: string,
  user: string,
  command: string,
  input?: string,
  extra: string[] = [],
): Promise<Ran> {
  return run(
    'ssh',
    [...sshOpts(key), ...extra, '-p', String(ssh.address.port), `${user}@127.0.0.1`, command],
    input,
  )
}

/** An ssh2 client logged in to the sandbox with key A. */
async function connect(user = sandboxId): Promise<InstanceType<typeof ssh2Client>> {
  const c = new ssh2Client()
  await new Promise<void>((resolve, reject) => {
    c.once('ready', () => resolve())
    c.once('error', reject)
    void readFile(keyA, 'utf8').then((privateKey) =>
      c.connect({
        host: '127.0.0.1',
        port: ssh.address.port,
        username: user,
        privateKey,
        readyTimeout: 60_000,
      }),
    )
  })
  return c
}

/** Reads the channel until `pattern` shows up in its output (bounded). */
function waitFor(ch: ClientChannel, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => {
      ch.off('data', onData)
      reject(new Error(`no ${pattern} in ${JSON.stringify(seen)}`))
    }, timeoutMs)
    const onData = (b: Buffer): void => {
      seen += b.toString()
      const m = pattern.exec(seen)
      if (m) {
        clearTimeout(timer)
        ch.off('data', onData)
        resolve(m[0])
      }
    }
    ch.on('data', onData)
  })
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-ssh-test-'))
  const hostsFile = path.join(dir, 'hosts')
  await writeFile(hostsFile, '')
  server = await startSandboxServer({ network: { hostsFile, resolver: '127.0.0.1:53' } })
  const db = server.t.tdb.db
  ssh = await SshServer.start({
    sandboxes: server.svc,
    hostKey: await loadSandboxSshHostKey(server.stateDir),
    host: '127.0.0.1',
    port: 0,
    auth: {
      teamKey: (teamId, offered) => findTeamSshKey(db, teamId, offered),
      apiKeyTeam: async (token) => (await authenticate(db, token).catch(() => undefined))?.teamId,
    },
  })
  client = new Client({ token: server.token, baseUrl: server.url })
  keyA = await keygen('key-a')
  keyB = await keygen('key-b')
  await usersApi(server.url, server.token).usersMeSshKeysPost({
    createSSHPublicKeyRequest: { name: 'laptop', publicKey: await readFile(`${keyA}.pub`, 'utf8') },
  })
  // Another team, with key B.
  await db.query(`INSERT INTO teams (id, name) VALUES ('team-0123456789abcdef', 'other')`)
  const other = await createApiKey(db, { teamId: 'team-0123456789abcdef' as never, name: 'k', role: 'admin' })
  otherToken = other.key
  await usersApi(server.url, other.key).usersMeSshKeysPost({
    createSSHPublicKeyRequest: { name: 'other', publicKey: await readFile(`${keyB}.pub`, 'utf8') },
  })
  sandboxId = (await client.sandboxes.claim('busybox')).id
}, 300_000)

afterAll(async () => {
  await ssh?.close()
  await server?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('SSH keys (/users/me/ssh-keys)', () => {
  it('lists, refuses bad and duplicate keys, deletes; another team sees none of them', async () => {
    const users = usersApi(server.url, server.token)
    const list = await users.usersMeSshKeysGet()
    expect(
      list.data?.sshKeys?.map((k: { name: string; keyType: string; comment?: string }) => [
        k.name,
        k.keyType,
        k.comment,
      ]),
    ).toEqual([['laptop', 'ssh-ed25519', 'key-a']])
    const fp = (await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${keyA}.pub`])).stdout.split(' ')[1]
    expect(list.data?.sshKeys?.[0]?.fingerprintSha256).toBe(fp)
    const post = (body: unknown): Promise<Response> =>
      fetch(`${server.url}/users/me/ssh-keys`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    const again = await post({ name: 'again', public_key: await readFile(`${keyA}.pub`, 'utf8') })
    expect(again.status).toBe(409)
    const bad = await post({ name: 'bad', public_key: 'ssh-ed25519 not-base64' })
    expect(bad.status).toBe(400)
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_request')
    const priv = await post({ name: 'priv', public_key: await readFile(keyA, 'utf8') })
    expect(priv.status).toBe(400)
    const added = await post({ name: 'temp', public_key: await readFile(`${keyB}.pub`, 'utf8') })
    expect(added.status).toBe(201)
    const id = ((await added.json()) as { data: { id: string } }).data.id
    const unauth = await fetch(`${server.url}/users/me/ssh-keys`)
    expect(unauth.status).toBe(401)
    await users.usersMeSshKeysIdDelete({ id })
    const gone = await fetch(`${server.url}/users/me/ssh-keys/${id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${server.token}` },
    })
    expect(gone.status).toBe(404)
  })

  it('shows ssh {host, port, username} on GET /sandboxes/{id}', async () => {
    const r = await apiCall(server, 'GET', `/sandboxes/${sandboxId}`)
    expect(r.json.data.ssh).toEqual({ host: '127.0.0.1', port: ssh.address.port, username: sandboxId })
    const sdk = await client.apispec.sandboxes.apiV1SandboxesIdGet({ id: sandboxId })
    expect(sdk.data?.ssh?.username).toBe(sandboxId)
  })
})

describe('ssh into a sandbox', () => {
  it('runs a command with its output, stdin and exit code', async () => {
    const r = await sshRun(keyA, sandboxId, 'echo hi; echo oops >&2; exit 3')
    expect(r).toMatchObject({ code: 3, stdout: 'hi\n', stderr: 'oops\n' })
    const wc = await sshRun(keyA, sandboxId, 'wc -c', 'hello')
    expect(wc.stdout.trim()).toBe('5')
    expect(wc.code).toBe(0)
    const env = await sshRun(keyA, sandboxId, 'echo "$FOO:$HOME:$(pwd)"', undefined, ['-o', 'SetEnv=FOO=bar'])
    expect(env.stdout).toBe('bar:/root:/root\n')
  })

  it('refuses a wrong key, another team key, an unknown sandbox, and remote forwarding', async () => {
    const wrong = await sshRun(keyB, sandboxId, 'true')
    expect(wrong.code).toBe(255)
    expect(wrong.stderr).toMatch(/Permission denied/)
    const unknown = await sshRun(keyA, 'sb-000000000000', 'true')
    expect(unknown.code).toBe(255)
    expect(unknown.stderr).toBe(wrong.stderr.replace(sandboxId, 'sb-000000000000'))
    const remote = await sshRun(keyA, sandboxId, 'true', undefined, [
      '-o',
      'ExitOnForwardFailure=yes',
      '-R',
      '0:127.0.0.1:9',
    ])
    expect(remote.code).toBe(255)
    expect(remote.stderr).toMatch(/forwarding failed/i)
  })

  it('keeps its host key across restarts; takes an API key as password only when told to; closes with sessions open', async () => {
    const key = await loadSandboxSshHostKey(server.stateDir)
    expect(await loadSandboxSshHostKey(server.stateDir)).toBe(key)
    expect((await stat(path.join(server.stateDir, 'ssh', SSH_HOST_KEY_FILE))).mode & 0o777).toBe(0o600)
    const db = server.t.tdb.db
    const withPassword = (port: number, password: string): Promise<string> =>
      new Promise((resolve) => {
        const c = new ssh2Client()
        c.once('ready', () => {
          c.end()
          resolve('ready')
        })
        c.once('error', (err) => resolve(err.message))
        c.connect({ host: '127.0.0.1', port, username: sandboxId, password, tryKeyboard: false })
      })
    // The endpoint of the suite has token authentication off.
    expect(await withPassword(ssh.address.port, server.token)).toMatch(/authentication methods failed/)
    const tokenSsh = await SshServer.start({
      sandboxes: server.svc,
      hostKey: key,
      host: '127.0.0.1',
      port: 0,
      tokenAuth: true,
      auth: {
        teamKey: (teamId, offered) => findTeamSshKey(db, teamId, offered),
        apiKeyTeam: async (token) => (await authenticate(db, token).catch(() => undefined))?.teamId,
      },
    })
    try {
      const port = tokenSsh.address.port
      expect(await withPassword(port, server.token)).toBe('ready')
      expect(await withPassword(port, otherToken)).toMatch(/authentication methods failed/)
      expect(await withPassword(port, 'not-a-key')).toMatch(/authentication methods failed/)
      // A shell left open does not hold the close up; its client sees the end.
      const c = new ssh2Client()
      await new Promise<void>((resolve, reject) => {
        c.once('ready', () => resolve())
        c.once('error', reject)
        c.connect({ host: '127.0.0.1', port, username: sandboxId, password: server.token })
      })
      const sh = await new Promise<ClientChannel>((resolve, reject) =>
        c.shell({ rows: 24, cols: 80, term: 'xterm' }, (err, ch) => (err ? reject(err) : resolve(ch))),
      )
      sh.write('echo ready-$((6*7))\n')
      await waitFor(sh, /ready-42/)
      const ended = new Promise<void>((r) => c.once('close', () => r()))
      await tokenSsh.close()
      await ended
    } finally {
      await tokenSsh.close()
      // The suite's endpoint is the one the sandbox view reports again.
      server.svc.sshEndpoint = { host: '127.0.0.1', port: ssh.address.port }
    }
  }, 120_000)

  it('gives a pty its size and passes window changes on', async () => {
    const c = await connect()
    try {
      const out = await new Promise<string>((resolve, reject) =>
        c.exec('stty size; tty', { pty: { rows: 33, cols: 101, term: 'xterm' } }, (err, ch) => {
          if (err) return reject(err)
          let s = ''
          ch.on('data', (b: Buffer) => (s += b.toString()))
          ch.on('close', () => resolve(s))
        }),
      )
      expect(out).toMatch(/^33 101\r?\n\/dev\/pts\/\d+/)
      const sh = await new Promise<ClientChannel>((resolve, reject) =>
        c.shell({ rows: 20, cols: 70, term: 'xterm' }, (err, ch) => (err ? reject(err) : resolve(ch))),
      )
      sh.write('stty size\n')
      await waitFor(sh, /\b20 70\b/)
      sh.setWindow(40, 120, 0, 0)
      // The resize reaches the sandbox's terminal asynchronously: ask until it shows.
      let seen = false
      for (let i = 0; i < 20 && !seen; i++) {
        sh.write('stty size\n')
        seen = await waitFor(sh, /\b40 120\b/, 1_000).then(
          () => true,
          () => false,
        )
      }
      expect(seen).toBe(true)
      const exit = new Promise<number>((r) => sh.on('exit', (code: number) => r(code)))
      sh.write('exit 7\n')
      expect(await exit).toBe(7)
    } finally {
      c.end()
    }
  }, 120_000)

  it('copies files both ways with scp and lists them with sftp', async () => {
    const local = path.join(dir, 'up.bin')
    const content = Buffer.alloc(300_000)
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) % 251
    await writeFile(local, content)
    const target = `${sandboxId}@127.0.0.1`
    const port = ['-P', String(ssh.address.port)]
    const up = await run('scp', [...sshOpts(keyA), ...port, local, `${target}:/root/up.bin`])
    expect(up.stderr).toBe('')
    expect(up.code).toBe(0)
    const sbx = client.sandbox(sandboxId)
    expect(Buffer.from(await sbx.readFile('/root/up.bin')).equals(content)).toBe(true)
    await sbx.writeFile('/tmp/down.txt', 'from the files API')
    const down = path.join(dir, 'down.txt')
    const r = await run('scp', [...sshOpts(keyA), ...port, `${target}:/tmp/down.txt`, down])
    expect(r.code, r.stderr).toBe(0)
    expect(await readFile(down, 'utf8')).toBe('from the files API')
    const batch = path.join(dir, 'batch')
    await writeFile(
      batch,
      'ls -l /root\nmkdir /root/made\nrename /root/up.bin /root/made/up.bin\nls /root/made\n',
    )
    const s = await run('sftp', [...sshOpts(keyA), ...port, '-b', batch, target])
    expect(s.code, s.stderr).toBe(0)
    expect(s.stdout).toMatch(/-rw-r--r-- .* 300000 .* up\.bin/)
    expect(s.stdout).toMatch(/\/root\/made\/up\.bin/)
    // No way out: `..` stops at the sandbox's root, a symlink to / is the sandbox's /.
    await run('ssh', [...sshOpts(keyA), '-p', String(ssh.address.port), target, 'ln -s / /root/escape'])
    const esc = path.join(dir, 'passwd')
    const e = await run('scp', [...sshOpts(keyA), ...port, `${target}:/root/escape/../../etc/passwd`, esc])
    expect(e.code, e.stderr).toBe(0)
    expect(await readFile(esc, 'utf8')).toBe(Buffer.from(await sbx.readFile('/etc/passwd')).toString())
    expect(await readFile(esc, 'utf8')).not.toBe(await readFile('/etc/passwd', 'utf8'))
  }, 120_000)

  it('forwards -L to the sandbox itself only', async () => {
    await sshRun(
      keyA,
      sandboxId,
      'mkdir -p /root/www && echo served > /root/www/index.html && busybox httpd -p 8080 -h /root/www',
    )
    const c = await connect()
    const fetchVia = (host: string, port: number): Promise<string> =>
      new Promise((resolve, reject) =>
        c.forwardOut('127.0.0.1', 0, host, port, (err, ch) => {
          if (err) return reject(err)
          let s = ''
          ch.on('data', (b: Buffer) => (s += b.toString()))
          ch.on('close', () => resolve(s))
          ch.end('GET /index.html HTTP/1.0\r\n\r\n')
        }),
      )
    try {
      expect(await fetchVia('127.0.0.1', 8080)).toMatch(/200 OK[\s\S]*served/)
      expect(await fetchVia(sandboxId, 8080)).toMatch(/served/)
      // A host service on loopback is not reached: 127.0.0.1 means the sandbox, where nothing listens.
      const apiPort = Number(new URL(server.url).port)
      await expect(fetchVia('127.0.0.1', apiPort)).rejects.toThrow()
      await expect(fetchVia('10.1.2.3', 80)).rejects.toThrow()
      await expect(fetchVia('example.com', 80)).rejects.toThrow()
    } finally {
      c.end()
    }
    // The same with OpenSSH's -L.
    const local = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port
        s.close(() => resolve(p))
      })
    })
    const tunnel = spawn('ssh', [
      ...sshOpts(keyA),
      '-N', '-o', 'ExitOnForwardFailure=yes',
      '-L', `${local}:localhost:8080`,
      '-p', String(ssh.address.port),
      `${sandboxId}@127.0.0.1`,
    ]) // prettier-ignore
    try {
      let body = ''
      for (let i = 0; i < 100 && !body.includes('served'); i++) {
        body = await fetch(`http://127.0.0.1:${local}/index.html`).then(
          (r) => r.text(),
          () => '',
        )
        if (!body.includes('served')) await new Promise((r) => setTimeout(r, 100))
      }
      expect(body).toBe('served\n')
    } finally {
      tunnel.kill()
    }
  }, 120_000)

  it('s0 ssh-key adds, lists and removes keys; s0 ssh logs in with one', async () => {
    vi.stubEnv('S0_API_URL', server.url)
    vi.stubEnv('S0_TOKEN', server.token)
    try {
      const keyC = await keygen('key-c')
      const added = await runCommand(runSshKey, ['add', `${keyC}.pub`])
      expect(added.code, added.err).toBe(0)
      const id = added.out.split(/\s+/)[0] as string
      expect(id).toMatch(/^sshkey-/)
      const list = await runCommand(runSshKey, ['list'])
      expect(list.out).toMatch(/laptop/)
      expect(list.out).toContain(id)
      const env = { S0_API_URL: server.url, S0_TOKEN: server.token }
      const quiet = ['-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR']
      const cli = await spawnS0(['ssh', '-i', keyC, ...quiet, sandboxId, '--', 'echo via-cli; exit 4'], {
        env,
      })
      expect((await cli.exited).code).toBe(4)
      expect(cli.stdout()).toBe('via-cli\n')
      expect((await runCommand(runSshKey, ['rm', id])).code).toBe(0)
      const refused = await spawnS0(['ssh', '-i', keyC, ...quiet, sandboxId, '--', 'true'], { env })
      expect((await refused.exited).code).toBe(255)
      expect(refused.stderr()).toMatch(/Permission denied/)
      const unknown = await runCommand(runSshKey, ['rm', id])
      expect(unknown).toMatchObject({ code: 1 })
      expect(unknown.err).toMatch(/not_found/)
    } finally {
      vi.unstubAllEnvs()
    }
  }, 120_000)

  it('wakes a paused sandbox at login', async () => {
    await client.sandboxes.pauseAndWait(sandboxId, { timeoutMs: 60_000, pollIntervalMs: 100 })
    expect((await apiCall(server, 'GET', `/sandboxes/${sandboxId}`)).json.data.status).toBe('paused')
    const r = await sshRun(keyA, sandboxId, 'cat /root/made/up.bin | wc -c')
    expect(r).toMatchObject({ code: 0, stdout: '300000\n' })
    expect((await apiCall(server, 'GET', `/sandboxes/${sandboxId}`)).json.data.status).toBe('running')
  }, 120_000)
})
