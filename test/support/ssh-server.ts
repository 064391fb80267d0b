// A small SSH server for tests (ssh2): publickey logins against authorized keys, exec and shell
// run by `sh` (no real pty: pty and window-change requests are recorded), signals delivered to
// the process, an sftp subsystem that answers REALPATH, and direct-tcpip. Everything asked of it
// is recorded. The egress end-to-end tests run it in their "upstream" network namespace too.
import { spawn } from 'node:child_process'
import net from 'node:net'
import ssh2 from 'ssh2'
import type { Connection } from 'ssh2'
import { generateEd25519 } from '../../src/core/ssh-keygen.js'

export interface SshTestServerOptions {
  host?: string
  port?: number
  /** OpenSSH public key lines allowed to log in. */
  authorizedKeys: string[]
  /** Only this user may log in (default: any). */
  username?: string
  /** The host key (OpenSSH private key text); default: a new ed25519 key. */
  hostKey?: string
}

export interface SshTestEvent {
  type:
    | 'login'
    | 'auth-attempt'
    | 'env'
    | 'pty'
    | 'window-change'
    | 'signal'
    | 'exec'
    | 'shell'
    | 'sftp'
    | 'tcpip'
  detail?: unknown
}

export interface SshTestServer {
  host: string
  port: number
  /** `ssh-ed25519 AAAA…` of the server's host key. */
  hostPublicKey: string
  /** `[host]:port ssh-ed25519 AAAA…`: a known_hosts line for this server. */
  knownHostsLine: string
  events: SshTestEvent[]
  connections: number
  close(): Promise<void>
}

export async function startSshServer(opts: SshTestServerOptions): Promise<SshTestServer> {
  const hostKey = opts.hostKey ? { private: opts.hostKey, public: publicOf(opts.hostKey) } : generateEd25519()
  const allowed = opts.authorizedKeys.map((k) => ssh2.utils.parseKey(k)).filter((k) => !(k instanceof Error))
  const events: SshTestEvent[] = []
  const conns = new Set<Connection>()
  const state = { connections: 0 }
  const server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    state.connections++
    conns.add(client)
    client.on('close', () => conns.delete(client))
    client.on('error', () => undefined)
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey'])
      events.push({
        type: 'auth-attempt',
        detail: { username: ctx.username, signed: Boolean(ctx.signature) },
      })
      const key = allowed.find(
        (k) => !Array.isArray(k) && (k as ssh2.ParsedKey).getPublicSSH().equals(ctx.key.data),
      ) as ssh2.ParsedKey | undefined
      if (!key || (opts.username && ctx.username !== opts.username)) return ctx.reject(['publickey'])
      if (!ctx.signature || !ctx.blob) return ctx.accept()
      if (key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(['publickey'])
      events.push({
        type: 'login',
        detail: { username: ctx.username, key: key.getPublicSSH().toString('base64') },
      })
      ctx.accept()
    })
    client.on('session', (accept) => {
      const session = accept()
      const env: Record<string, string> = {}
      let signalTarget: ((sig: string) => void) | undefined
      session.on('env', (ok, _no, info) => {
        env[info.key] = info.val
        events.push({ type: 'env', detail: info })
        ok?.()
      })
      session.on('pty', (ok, _no, info) => {
        events.push({ type: 'pty', detail: { rows: info.rows, cols: info.cols, term: info.term } })
        ok?.()
      })
      session.on('window-change', (ok, _no, info) => {
        events.push({ type: 'window-change', detail: { rows: info.rows, cols: info.cols } })
        ok?.()
      })
      session.on('signal', (ok, _no, info) => {
        events.push({ type: 'signal', detail: info.name })
        signalTarget?.(info.name)
        ok?.()
      })
      const run = (type: 'exec' | 'shell', channel: ssh2.ServerChannel, args: string[]): void => {
        const child = spawn('sh', args, { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env } })
        signalTarget = (sig) => void child.kill(`SIG${sig.replace(/^SIG/, '')}` as NodeJS.Signals)
        channel.pipe(child.stdin)
        child.stdin.on('error', () => undefined)
        child.stdout.pipe(channel, { end: false })
        child.stderr.pipe(channel.stderr, { end: false })
        child.on('close', (code, signal) => {
          if (signal) channel.exit(signal.replace(/^SIG/, ''), false, '')
          else channel.exit(code ?? 0)
          channel.end()
        })
        events.push({ type, detail: args.at(-1) })
      }
      session.on('exec', (ok, _no, info) => run('exec', ok(), ['-c', info.command]))
      session.on('shell', (ok) => run('shell', ok(), []))
      session.on('sftp', (ok) => {
        events.push({ type: 'sftp' })
        const sftp = ok()
        sftp.on(
          'REALPATH',
          (reqid, p) => void sftp.name(reqid, [{ filename: `/srv/${p}`, longname: '', attrs: {} as never }]),
        )
      })
    })
    client.on('tcpip', (accept, _reject, info) => {
      events.push({ type: 'tcpip', detail: { destIP: info.destIP, destPort: info.destPort } })
      const channel = accept()
      const target = net.connect(info.destPort, info.destIP)
      target.on('error', () => channel.close())
      channel.pipe(target).pipe(channel)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve())
  })
  const addr = server.address() as net.AddressInfo
  const host = opts.host ?? '127.0.0.1'
  const hostPublicKey = hostKey.public.split(' ').slice(0, 2).join(' ')
  return {
    host,
    port: addr.port,
    hostPublicKey,
    knownHostsLine: `${addr.port === 22 ? host : `[${host}]:${addr.port}`} ${hostPublicKey}`,
    events,
    get connections() {
      return state.connections
    },
    close: async () => {
      for (const c of conns) c.end()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function publicOf(privateKey: string): string {
  const k = ssh2.utils.parseKey(privateKey)
  if (k instanceof Error || Array.isArray(k)) throw new Error('bad host key')
  return `${k.type} ${k.getPublicSSH().toString('base64')}`
}
