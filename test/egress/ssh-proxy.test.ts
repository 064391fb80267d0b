// SSH re-origination end to end on loopback: an ssh2 client plays the sandbox, an ssh2 server
// (test/support/ssh-server.ts) the real upstream, and handleSshConnection sits between them.
import { mkdtemp, rm, stat } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import ssh2 from 'ssh2'
import type { ClientChannel } from 'ssh2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sshFingerprint } from '../../src/egress/known-hosts.js'
import {
  SSH_HOST_KEY_FILE,
  handleSshConnection,
  loadSshHostKey,
  type SshProxyOptions,
  type SshProxySummary,
} from '../../src/egress/ssh-proxy.js'
import { sshKeyPair, type SshKeyPair } from '../support/credential-fixtures.js'
import { startSshServer, type SshTestServer } from '../support/ssh-server.js'
import { generateEd25519 } from '../../src/core/ssh-keygen.js'

let stateDir: string
let hostKey: string
let sandboxKey: SshKeyPair
let realKey: SshKeyPair
let upstream: SshTestServer
const proxies: net.Server[] = []

beforeAll(async () => {
  stateDir = await mkdtemp(path.join(os.tmpdir(), 's0-sshproxy-'))
  hostKey = await loadSshHostKey(stateDir)
  sandboxKey = sshKeyPair()
  realKey = sshKeyPair({ passphrase: 'real key passphrase' })
  upstream = await startSshServer({ authorizedKeys: [realKey.publicKey], username: 'git' })
})

afterAll(async () => {
  for (const p of proxies) p.close()
  await upstream?.close()
  if (stateDir) await rm(stateDir, { recursive: true, force: true })
})

interface Proxy {
  port: number
  summaries: Promise<SshProxySummary>[]
}

/** A loopback listener that hands each connection to handleSshConnection. */
async function startProxy(
  overrides: Partial<SshProxyOptions['upstream']> = {},
  more: Partial<SshProxyOptions> = {},
): Promise<Proxy> {
  const summaries: Promise<SshProxySummary>[] = []
  const server = net.createServer((socket) => {
    summaries.push(
      new Promise((resolve) =>
        handleSshConnection(socket, {
          hostKey,
          sandboxPublicKeys: [sandboxKey.publicKey],
          upstream: {
            host: upstream.host,
            port: upstream.port,
            username: 'git',
            privateKey: realKey.privateKey,
            passphrase: 'real key passphrase',
            knownHosts: [upstream.knownHostsLine],
            ...overrides,
          },
          onDone: resolve,
          ...more,
        }),
      ),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  proxies.push(server)
  return { port: (server.address() as net.AddressInfo).port, summaries }
}

/** The sandbox side: an ssh2 client logged in to the proxy (checking the proxy's host key). */
async function sandboxLogin(
  proxy: Proxy,
  login: { privateKey?: string; password?: string; username?: string } = {
    privateKey: sandboxKey.privateKey,
  },
): Promise<InstanceType<typeof ssh2.Client>> {
  const proxyKey = ssh2.utils.parseKey(hostKey) as ssh2.ParsedKey
  const client = new ssh2.Client()
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve())
    client.once('error', reject)
    client.connect({
      host: '127.0.0.1',
      port: proxy.port,
      username: login.username ?? 'sandbox',
      ...(login.privateKey ? { privateKey: login.privateKey } : {}),
      ...(login.password ? { password: login.password } : {}),
      hostVerifier: (key: Buffer) => key.equals(proxyKey.getPublicSSH()),
    })
  })
  return client
}

interface Ran {
  stdout: string
  stderr: string
  code: number | null
  signal?: string
}

function collect(stream: ClientChannel): Promise<Ran> {
  return new Promise((resolve) => {
    const out: Ran = { stdout: '', stderr: '', code: null }
    stream.on('data', (d: Buffer) => void (out.stdout += d.toString()))
    stream.stderr.on('data', (d: Buffer) => void (out.stderr += d.toString()))
    stream.on('exit', (code: number | null, signal?: string) => {
      out.code = code
      if (signal) out.signal = signal
    })
    stream.on('close', () => resolve(out))
  })
}

function exec(
  client: InstanceType<typeof ssh2.Client>,
  command: string,
  opts: ssh2.ExecOptions = {},
): Promise<ClientChannel> {
  return new Promise((resolve, reject) =>
    client.exec(command, opts, (err, stream) => (err ? reject(err) : resolve(stream))),
  )
}

describe('SSH proxy host key', () => {
  it('is generated once, mode 0600, and stable', async () => {
    expect((await stat(path.join(stateDir, SSH_HOST_KEY_FILE))).mode & 0o777).toBe(0o600)
    expect(await loadSshHostKey(stateDir)).toBe(hostKey)
    expect(hostKey).toMatch(/BEGIN OPENSSH PRIVATE KEY/)
  })
})

describe('handleSshConnection', () => {
  it('runs a command end to end: stdin, stdout, stderr and the exit code, with the real key upstream', async () => {
    const proxy = await startProxy()
    const client = await sandboxLogin(proxy)
    const stream = await exec(client, 'printf out; printf err >&2; read line; echo "got:$line"; exit 3')
    const done = collect(stream)
    stream.end('hello\n')
    expect(await done).toEqual({ stdout: 'outgot:hello\n', stderr: 'err', code: 3 })
    client.end()
    const summary = (await proxy.summaries[0]) as SshProxySummary
    expect(summary).toMatchObject({
      outcome: 'relayed',
      sandboxUser: 'sandbox',
      upstreamUser: 'git',
      channelCount: 1,
      channels: [{ type: 'exec', exitCode: 3 }],
    })
    expect(summary.error).toBeUndefined()
    expect(summary.sandboxKey).toBe(
      sshFingerprint((ssh2.utils.parseKey(sandboxKey.publicKey) as ssh2.ParsedKey).getPublicSSH()),
    )
    expect(summary.bytesFromSandbox).toBe(6)
    expect(summary.bytesToSandbox).toBe('outgot:hello\n'.length + 'err'.length)
    // The upstream saw the real key, never the sandbox's.
    const logins = upstream.events.filter((e) => e.type === 'login').map((e) => e.detail)
    const realBlob = (ssh2.utils.parseKey(realKey.publicKey) as ssh2.ParsedKey)
      .getPublicSSH()
      .toString('base64')
    expect(logins.at(-1)).toEqual({ username: 'git', key: realBlob })
  })

  it('passes env, pty, window changes and signals, and reports an exit signal', async () => {
    const proxy = await startProxy()
    const client = await sandboxLogin(proxy)
    const before = upstream.events.length
    const stream = await exec(client, 'echo "FOO=$FOO"; exec sleep 30', {
      env: { FOO: 'bar' },
      pty: { rows: 30, cols: 100, term: 'xterm' },
    })
    const done = collect(stream)
    await new Promise<void>((resolve) => stream.once('data', () => resolve()))
    stream.setWindow(40, 120, 0, 0)
    // The window change is a request without a reply: wait until the upstream has it.
    while (!upstream.events.slice(before).some((e) => e.type === 'window-change'))
      await new Promise((r) => setTimeout(r, 10))
    stream.signal('TERM')
    const ran = await done
    expect(ran.stdout.replace(/\r/g, '')).toBe('FOO=bar\n')
    expect(ran).toMatchObject({ code: null, signal: 'SIGTERM' })
    const seen = upstream.events.slice(before)
    expect(seen).toContainEqual({ type: 'env', detail: { key: 'FOO', val: 'bar' } })
    expect(seen).toContainEqual({ type: 'pty', detail: { rows: 30, cols: 100, term: 'xterm' } })
    expect(seen).toContainEqual({ type: 'window-change', detail: { rows: 40, cols: 120 } })
    expect(seen).toContainEqual({ type: 'signal', detail: 'TERM' })
    client.end()
    expect((await proxy.summaries[0])?.channels).toEqual([
      { type: 'exec', detail: 'echo "FOO=$FOO"; exec sleep 30', exitSignal: 'TERM' },
    ])
  })

  it('relays a shell and the sftp subsystem byte for byte', async () => {
    const proxy = await startProxy()
    const client = await sandboxLogin(proxy)
    const shell = await new Promise<ClientChannel>((resolve, reject) =>
      client.shell(false, (err, s) => (err ? reject(err) : resolve(s))),
    )
    const done = collect(shell)
    shell.end('echo from-shell\nexit 4\n')
    expect(await done).toMatchObject({ stdout: 'from-shell\n', code: 4 })
    const sftp = await new Promise<ssh2.SFTPWrapper>((resolve, reject) =>
      client.sftp((err, s) => (err ? reject(err) : resolve(s))),
    )
    const real = await new Promise<string>((resolve, reject) =>
      sftp.realpath('docs', (err, p) => (err ? reject(err) : resolve(p))),
    )
    expect(real).toBe('/srv/docs')
    client.end()
    const summary = await proxy.summaries[0]
    expect(summary?.channels.map((c) => `${c.type}:${c.detail ?? ''}`)).toEqual(['shell:', 'subsystem:sftp'])
  })

  it('direct-tcpip reaches the same destination only', async () => {
    const proxy = await startProxy()
    const client = await sandboxLogin(proxy)
    const tunnel = await new Promise<ClientChannel>((resolve, reject) =>
      client.forwardOut('127.0.0.1', 4000, upstream.host, upstream.port, (err, s) =>
        err ? reject(err) : resolve(s),
      ),
    )
    const banner = await new Promise<string>((resolve) =>
      tunnel.once('data', (d: Buffer) => resolve(d.toString())),
    )
    expect(banner).toMatch(/^SSH-2\.0-/)
    tunnel.close()
    const elsewhere = new Promise<unknown>((resolve) =>
      client.forwardOut('127.0.0.1', 4000, '127.0.0.1', 9, (err) => resolve(err)),
    )
    expect(await elsewhere).toBeInstanceOf(Error)
    client.end()
    const summary = await proxy.summaries[0]
    expect(summary?.channels[1]).toMatchObject({ type: 'direct-tcpip', detail: '127.0.0.1:9' })
    expect(summary?.channels[1]?.refused).toMatch(/only/)
  })

  it('refuses a sandbox key that is not in sandboxPublicKeys, and a password; upstream is never contacted', async () => {
    const proxy = await startProxy()
    const before = upstream.connections
    const wrongKey = await sandboxLogin(proxy, { privateKey: sshKeyPair().privateKey }).catch(
      (e: unknown) => e,
    )
    expect((wrongKey as Error & { level?: string }).level).toBe('client-authentication')
    const password = await sandboxLogin(proxy, { password: 'letmein' }).catch((e: unknown) => e)
    expect((password as Error & { level?: string }).level).toBe('client-authentication')
    for (const s of await Promise.all(proxy.summaries)) {
      expect(s.outcome).toBe('sandbox_auth_failed')
      expect(s.error?.code).toBe('ssh_sandbox_auth_failed')
      expect(s.sandboxUser).toBeUndefined()
    }
    expect(upstream.connections).toBe(before)
  })

  it('refuses an upstream whose host key knownHosts does not list, before offering the real key', async () => {
    const stranger = generateEd25519().public.split(' ').slice(0, 2).join(' ')
    for (const [knownHosts, verdict] of [
      [[`[${upstream.host}]:${upstream.port} ${stranger}`], 'unknown-key'],
      [[`[other.test]:${upstream.port} ${upstream.hostPublicKey}`], 'unknown-host'],
      [[upstream.knownHostsLine, `@revoked * ${upstream.hostPublicKey}`], 'revoked'],
    ] as const) {
      const proxy = await startProxy({ knownHosts })
      const attempts = upstream.events.filter((e) => e.type === 'auth-attempt').length
      const client = await sandboxLogin(proxy)
      const ran = await collect(await exec(client, 'echo should-not-run'))
      expect(ran.code).toBe(255)
      expect(ran.stdout).toBe('')
      expect(ran.stderr).toMatch(/host key SHA256:/)
      client.end()
      const summary = await proxy.summaries[0]
      expect(summary).toMatchObject({ outcome: 'upstream_failed', error: { code: 'ssh_host_key_mismatch' } })
      expect(summary?.error?.details).toMatchObject({ verdict })
      expect(upstream.events.filter((e) => e.type === 'auth-attempt').length).toBe(attempts)
    }
  })

  it('an upstream that refuses the key, or cannot be reached, is ssh_upstream_failed', async () => {
    const other = sshKeyPair()
    const refused = await startProxy({ privateKey: other.privateKey, passphrase: undefined })
    const c1 = await sandboxLogin(refused)
    expect((await collect(await exec(c1, 'true'))).stderr).toMatch(/refused the key for user git/)
    c1.end()
    expect((await refused.summaries[0])?.error?.code).toBe('ssh_upstream_failed')

    const closed = net.createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()))
    const port = (closed.address() as net.AddressInfo).port
    await new Promise<void>((resolve) => closed.close(() => resolve()))
    const gone = await startProxy({ port })
    const c2 = await sandboxLogin(gone)
    expect((await collect(await exec(c2, 'true'))).code).toBe(255)
    c2.end()
    expect((await gone.summaries[0])?.error?.code).toBe('ssh_upstream_failed')
  })

  it('the upstream login name defaults to the sandbox login name', async () => {
    const proxy = await startProxy({ username: undefined })
    const asGit = await sandboxLogin(proxy, { privateKey: sandboxKey.privateKey, username: 'git' })
    expect((await collect(await exec(asGit, 'echo ok'))).stdout).toBe('ok\n')
    asGit.end()
    expect((await proxy.summaries[0])?.upstreamUser).toBe('git')
  })
})
