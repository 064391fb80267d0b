// The SSH endpoint into sandboxes: one listener per server (S0_SSH_HOST:S0_SSH_PORT). The login
// name is the sandbox id; a client proves it holds one of the sandbox team's registered public
// keys (or, only when S0_SSH_TOKEN_AUTH is on, gives an API key of that team as its password).
// An unknown sandbox, another team's sandbox and a wrong key fail alike. Once in: shells and
// commands (session.ts), SFTP (sftp.ts) and `ssh -L` into the sandbox (forward.ts); remote
// forwarding and agent/X11 forwarding are refused. A login wakes a paused sandbox (auto_resume).
import type { AddressInfo } from 'node:net'
import ssh2 from 'ssh2'
import type { AuthContext, Connection, ParsedKey, PublicKey } from 'ssh2'
import type { TeamId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import { silentLogger, type Logger } from '../../core/log.js'
import type { SandboxService } from '../service.js'
import { forwardIntoSandbox } from './forward.js'
import { serveSession, type Login } from './session.js'

/** What the SSH endpoint asks of the accounts domain (wired by the server command). */
export interface SshAuthenticator {
  /** The team's registered key equal to the offered one (the signature is checked here), or undefined. */
  teamKey(teamId: TeamId, offered: PublicKey): Promise<ParsedKey | undefined>
  /** The team of a valid API key, or undefined (token authentication, when enabled). */
  apiKeyTeam(token: string): Promise<TeamId | undefined>
}

export interface SshServerOptions {
  sandboxes: SandboxService
  auth: SshAuthenticator
  /** The server's host key (loadSshHostKey). */
  hostKey: string | Buffer
  host: string
  /** 0: an ephemeral port (tests). */
  port: number
  /** The host name clients are told (`Sandbox.ssh.host`); default the bound host. */
  publicHost?: string
  /** Accept an API key as password / keyboard-interactive answer (S0_SSH_TOKEN_AUTH). */
  tokenAuth?: boolean
  log?: Logger
}

export class SshServer {
  private readonly connections = new Set<Connection>()
  private closing = false

  private constructor(
    private readonly server: ssh2.Server,
    private readonly opts: SshServerOptions,
    private readonly log: Logger,
  ) {}

  static async start(opts: SshServerOptions): Promise<SshServer> {
    const log = (opts.log ?? silentLogger).child({ component: 'ssh' })
    const server = new ssh2.Server({ hostKeys: [opts.hostKey], ident: 's0' })
    const ssh = new SshServer(server, opts, log)
    server.on('connection', (c: Connection) => ssh.onConnection(c))
    server.maxConnections = limits.sshConnectionsMax
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err: unknown) => log.warn('ssh listener error', { err }))
    const { port } = server.address() as AddressInfo
    opts.sandboxes.sshEndpoint = { host: opts.publicHost || clientHost(opts.host), port }
    log.info('s0 SSH listening', { host: opts.host, port })
    return ssh
  }

  /** Where the listener is bound. */
  get address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo
    return { host: a.address, port: a.port }
  }

  /** Stops listening and ends every connection (their processes are hung up). */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    this.opts.sandboxes.sshEndpoint = undefined
    const closed = new Promise<void>((r) => this.server.close(() => r()))
    for (const c of this.connections) c.end()
    await closed
  }

  private onConnection(client: Connection): void {
    if (this.closing) {
      client.end()
      return
    }
    this.connections.add(client)
    let login: Login | undefined
    let failures = 0
    const loginTimer = setTimeout(() => client.end(), limits.sshLoginTimeoutMs)
    loginTimer.unref()
    client.on('error', (err: unknown) => this.log.debug('ssh connection error', { err }))
    client.on('close', () => {
      clearTimeout(loginTimer)
      this.connections.delete(client)
    })
    client.on('authentication', (ctx: AuthContext) => {
      this.authenticate(ctx).then(
        (who) => {
          if (who === 'key-ok') return ctx.accept() // the client signs with it next
          if (who) {
            login = who
            ctx.accept()
            return
          }
          if (ctx.method !== 'none' && !(ctx.method === 'publickey' && !ctx.signature)) failures++
          if (failures >= limits.sshLoginAttemptsMax) {
            client.end()
            return
          }
          ctx.reject(this.methods())
        },
        (err: unknown) => {
          this.log.warn('ssh authentication failed with an error', { err })
          ctx.reject(this.methods())
        },
      )
    })
    client.on('ready', () => {
      clearTimeout(loginTimer)
      if (!login) return void client.end()
      const who = login
      this.log.info('ssh login', { sandboxId: who.sandboxId, teamId: who.teamId, method: who.method })
      // A login wakes a paused sandbox; sessions wait for it (and report if it cannot run).
      this.opts.sandboxes
        .running(who.teamId, who.sandboxId)
        .catch((err: unknown) => this.log.debug('ssh login: sandbox not running', { err }))
      this.serve(client, who)
    })
  }

  private methods(): ('publickey' | 'password' | 'keyboard-interactive')[] {
    return this.opts.tokenAuth ? ['publickey', 'password', 'keyboard-interactive'] : ['publickey']
  }

  /**
   * Who logs in, or undefined. A public-key query (no signature) is answered "this key would do"
   * for every key: answering it only for the sandbox team's keys would tell anyone holding a
   * team's public key which sandbox ids exist. The signed attempt that follows decides.
   */
  private async authenticate(ctx: AuthContext): Promise<Login | 'key-ok' | undefined> {
    const sandboxId = ctx.username
    switch (ctx.method) {
      case 'publickey': {
        if (!ctx.signature || !ctx.blob) return 'key-ok'
        const teamId = await this.opts.sandboxes.ownerOf(sandboxId)
        if (!teamId) return undefined
        const key = await this.opts.auth.teamKey(teamId, ctx.key)
        if (!key) return undefined
        if (key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return undefined
        return { teamId, sandboxId, method: 'publickey' }
      }
      case 'password': {
        if (!this.opts.tokenAuth) return undefined
        return this.tokenLogin(sandboxId, ctx.password)
      }
      case 'keyboard-interactive': {
        if (!this.opts.tokenAuth) return undefined
        const answers = await new Promise<string[]>((resolve) =>
          ctx.prompt([{ prompt: 's0 API key: ', echo: false }], 's0', '', (a) => resolve(a)),
        )
        return this.tokenLogin(sandboxId, answers[0] ?? '')
      }
      default:
        return undefined
    }
  }

  private async tokenLogin(sandboxId: string, token: string): Promise<Login | undefined> {
    const teamId = await this.opts.sandboxes.ownerOf(sandboxId)
    if (!teamId) return undefined
    const keyTeam = await this.opts.auth.apiKeyTeam(token.trim())
    return keyTeam === teamId ? { teamId, sandboxId, method: 'api_key' } : undefined
  }

  private serve(client: Connection, who: Login): void {
    let channels = 0
    const opened = <T extends { once(e: 'close', l: () => void): unknown }>(ch: T): T => {
      channels++
      ch.once('close', () => channels--)
      return ch
    }
    const full = (): boolean => channels >= limits.sshChannelsPerConnectionMax
    client.on('session', (accept, reject) => {
      if (full()) return reject()
      serveSession(opened(accept()), { sandboxes: this.opts.sandboxes, login: who, log: this.log })
    })
    client.on('tcpip', (accept, reject, info) => {
      if (full()) return reject()
      forwardIntoSandbox(() => opened(accept()), reject, info, {
        sandboxes: this.opts.sandboxes,
        login: who,
        log: this.log,
      })
    })
    // No remote forwarding (ssh -R), no Unix socket forwarding: nothing may listen on the host.
    client.on('request', (_accept, reject) => reject?.())
    client.on('openssh.streamlocal', (_accept, reject) => reject())
  }
}

/** The host clients connect to for a listener bound to `host` (every interface → loopback). */
function clientHost(host: string): string {
  return host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host
}
