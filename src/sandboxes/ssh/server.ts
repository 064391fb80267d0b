// The SSH endpoint into sandboxes: one listener per server (S0_SSH_HOST:S0_SSH_PORT). The login
// name is the sandbox id; a client proves it holds one of the sandbox team's registered public
// keys (or, only when S0_SSH_TOKEN_AUTH is on, gives an API key of that team as its password).
// An unknown sandbox, another team's sandbox and a wrong key fail alike (login.ts). Once in:
// shells and commands (session.ts), SFTP (sftp.ts) and `ssh -L` into the sandbox (forward.ts);
// remote forwarding and agent/X11 forwarding are refused. A login wakes a paused sandbox
// (auto_resume). An agent of a cluster runs it as its private endpoint instead: only the cluster
// token logs in, from the API replicas that relay users' sessions (relay.ts, docs/DEPLOY.md).
import type { Connection } from 'ssh2'
import { silentLogger, type Logger } from '../../core/log.js'
import type { SandboxService } from '../service.js'
import { forwardIntoSandbox } from './forward.js'
import { channelBudget, SshListener } from './listener.js'
import { clusterLogins, guardLogin, userLogins, type LoginPolicy, type SshAuthenticator } from './login.js'
import { serveSession, type Login } from './session.js'

export type { SshAuthenticator } from './login.js'

export interface SshServerOptions {
  sandboxes: SandboxService
  auth: SshAuthenticator
  /** The server's host key (loadSandboxSshHostKey; in a cluster loadClusterSshHostKey). */
  hostKey: string | Buffer
  host: string
  /** 0: an ephemeral port (tests). */
  port: number
  /** The host name clients are told (`Sandbox.ssh.host`); default the bound host. */
  publicHost?: string
  /** Accept an API key as password / keyboard-interactive answer (S0_SSH_TOKEN_AUTH). */
  tokenAuth?: boolean
  /**
   * An agent's private endpoint: only this token (S0_CLUSTER_TOKEN) logs in, as password; users'
   * keys are refused (`auth` and `tokenAuth` are then unused).
   */
  clusterToken?: string
  /**
   * What `Sandbox.ssh` names instead of this listener: an agent reports the API replicas' public
   * endpoint (null: none is configured, so none is reported).
   */
  advertised?: { host: string; port: number } | null
  log?: Logger
}

export class SshServer {
  private constructor(
    private readonly listener: SshListener,
    private readonly opts: SshServerOptions,
  ) {}

  static async start(opts: SshServerOptions): Promise<SshServer> {
    const log = (opts.log ?? silentLogger).child({ component: 'ssh' })
    const ownerOf = (id: string): ReturnType<SandboxService['ownerOf']> => opts.sandboxes.ownerOf(id)
    const policy: LoginPolicy =
      opts.clusterToken !== undefined
        ? clusterLogins({ ownerOf, token: opts.clusterToken })
        : userLogins({ ownerOf, auth: opts.auth, tokenAuth: opts.tokenAuth ?? false })
    const listener = await SshListener.listen({
      hostKey: opts.hostKey,
      host: opts.host,
      port: opts.port,
      log,
      onConnection: (c) => guardLogin(c, policy, log, (who) => onLogin(c, who)),
    })
    const ssh = new SshServer(listener, opts)
    const onLogin = (client: Connection, who: Login): void => {
      // A login wakes a paused sandbox; sessions wait for it (and report if it cannot run).
      opts.sandboxes
        .running(who.teamId, who.sandboxId)
        .catch((err: unknown) => log.debug('ssh login: sandbox not running', { err }))
      serveLogin(client, who, opts.sandboxes, log)
    }
    const { port } = listener.address
    opts.sandboxes.sshEndpoint =
      opts.advertised === undefined
        ? { host: opts.publicHost || clientHost(opts.host), port }
        : (opts.advertised ?? undefined)
    log.info(opts.clusterToken !== undefined ? 's0 agent SSH listening' : 's0 SSH listening', {
      host: opts.host,
      port,
    })
    return ssh
  }

  /** Where the listener is bound. */
  get address(): { host: string; port: number } {
    return this.listener.address
  }

  /** Stops listening and ends every connection (their processes are hung up). */
  async close(): Promise<void> {
    this.opts.sandboxes.sshEndpoint = undefined
    await this.listener.close()
  }
}

function serveLogin(client: Connection, who: Login, sandboxes: SandboxService, log: Logger): void {
  const { opened, full } = channelBudget()
  client.on('session', (accept, reject) => {
    if (full()) return reject()
    serveSession(opened(accept()), { sandboxes, login: who, log })
  })
  client.on('tcpip', (accept, reject, info) => {
    if (full()) return reject()
    forwardIntoSandbox(() => opened(accept()), reject, info, { sandboxes, login: who, log })
  })
  // No remote forwarding (ssh -R), no Unix socket forwarding: nothing may listen on the host.
  client.on('request', (_accept, reject) => reject?.())
  client.on('openssh.streamlocal', (_accept, reject) => reject())
}

/** The host clients connect to for a listener bound to `host` (every interface → loopback). */
export function clientHost(host: string): string {
  return host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host
}
