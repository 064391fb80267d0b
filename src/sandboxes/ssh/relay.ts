// SSH at an API replica of a cluster (`s0 api`, docs/DEPLOY.md "SSH"). The replica terminates the
// user's SSH with the cluster's host key (every replica presents the same one), logs the user in
// exactly as `s0 server` does (login.ts: a team key, or an API key as password), and relays the
// connection to the agent that runs the sandbox: one SSH connection to that agent's private
// endpoint per user connection, logged in with the cluster token (never the user's key), and
// over it one channel per user channel: sessions (pty, window changes, env, signals, shell, exec,
// the sftp subsystem, the exit status) and `ssh -L` (direct-tcpip), as byte streams. The agent
// applies its own rules (what a session may do, where -L may go) as it does for `s0 server`.
// A sandbox whose node is dead is placed on a live node first; that agent takes it over when the
// login there wakes it (auto_resume), as an API call would.
import type { Writable } from 'node:stream'
import ssh2 from 'ssh2'
import type { ClientChannel, Connection, PseudoTtyInfo, PseudoTtyOptions, ServerChannel, Session } from 'ssh2'
import type { Db } from '../../core/db.js'
import { isS0Error, S0Error } from '../../core/errors.js'
import { ENV_NAME_PATTERN, isSandboxId, type TeamId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import { silentLogger, type Logger } from '../../core/log.js'
import { ownerNode, place, releasePlacement, sandboxDemand } from '../cluster/index.js'
import { publicHostKey } from './host-key.js'
import { channelBudget, SshListener } from './listener.js'
import { guardLogin, userLogins, type SshAuthenticator } from './login.js'
import type { Login } from './session.js'

export interface SshRelayOptions {
  db: Db
  auth: SshAuthenticator
  /** The cluster's host key (loadClusterSshHostKey): presented here and expected of agents. */
  hostKey: string
  host: string
  /** 0: an ephemeral port (tests). */
  port: number
  /** Accept an API key as password / keyboard-interactive answer (S0_SSH_TOKEN_AUTH). */
  tokenAuth?: boolean
  /** S0_CLUSTER_TOKEN: the replica's password at agents. */
  clusterToken: string
  /** S0_NODE_DEAD_AFTER_S. */
  deadAfterS: number
  log?: Logger
}

export class SshRelay {
  private constructor(private readonly listener: SshListener) {}

  static async start(o: SshRelayOptions): Promise<SshRelay> {
    const log = (o.log ?? silentLogger).child({ component: 'ssh-relay' })
    const agentKey = publicHostKey(o.hostKey)
    const policy = userLogins({
      ownerOf: (id) => teamOf(o.db, id),
      auth: o.auth,
      tokenAuth: o.tokenAuth ?? false,
    })
    const listener = await SshListener.listen({
      hostKey: o.hostKey,
      host: o.host,
      port: o.port,
      log,
      onConnection: (c) =>
        guardLogin(c, policy, log, (who) => relay(c, who, connectAgent(o, who, agentKey, log), log)),
    })
    log.info('s0 SSH relay listening', { host: o.host, port: listener.address.port })
    return new SshRelay(listener)
  }

  get address(): { host: string; port: number } {
    return this.listener.address
  }

  async close(): Promise<void> {
    await this.listener.close()
  }
}

/** The team of a sandbox the API shows (as SandboxService.ownerOf, which a replica has not). */
async function teamOf(db: Db, id: string): Promise<TeamId | undefined> {
  if (!isSandboxId(id)) return undefined
  const { rows } = await db.query<{ team_id: TeamId }>(
    `SELECT team_id FROM sandboxes WHERE id = $1 AND status <> 'idle'`,
    [id],
  )
  return rows[0]?.team_id
}

/** Where the sandbox's agent takes SSH: its live node, else a node placed to take it over. */
async function agentEndpoint(
  o: SshRelayOptions,
  who: Login,
): Promise<{ name: string; host: string; port: number; reservationId?: string }> {
  const owner = await ownerNode(o.db, who.sandboxId, o.deadAfterS)
  if (!owner.exists) throw new S0Error('not_found', `sandbox ${who.sandboxId} not found`)
  let node = owner.node
  let reservationId: string | undefined
  if (!node) {
    const demand = await sandboxDemand(o.db, who.sandboxId)
    const placed = await place(o.db, { teamId: who.teamId, demand }, o.deadAfterS)
    node = placed.node
    reservationId = placed.reservationId
  }
  const { rows } = await o.db.query<{ ssh_port: number | null }>('SELECT ssh_port FROM nodes WHERE id = $1', [
    node.id,
  ])
  const port = rows[0]?.ssh_port
  if (!port) {
    if (reservationId) await releasePlacement(o.db, reservationId).catch(() => undefined)
    throw new S0Error('unavailable', `node ${node.name} runs no SSH endpoint (S0_SSH_ENABLED on its agent)`, {
      retryAfterS: 2,
    })
  }
  // The agent listens on the host of its advertise URL (an IPv6 one without its brackets).
  const host = new URL(node.advertiseUrl).hostname.replace(/^\[(.*)\]$/, '$1')
  return { name: node.name, host, port, ...(reservationId ? { reservationId } : {}) }
}

/** The replica's connection to the agent, logged in as the sandbox with the cluster token. */
async function connectAgent(
  o: SshRelayOptions,
  who: Login,
  agentKey: Buffer,
  log: Logger,
): Promise<ssh2.Client> {
  const target = await agentEndpoint(o, who)
  const c = new ssh2.Client()
  try {
    await new Promise<void>((resolve, reject) => {
      c.once('ready', () => resolve())
      c.once('error', reject)
      c.connect({
        host: target.host,
        port: target.port,
        username: who.sandboxId,
        password: o.clusterToken,
        // An agent proves it is one with the cluster's host key: the token goes to nobody else.
        hostVerifier: (key: Buffer) => key.equals(agentKey),
        readyTimeout: limits.sshRelayReadyTimeoutMs,
        keepaliveInterval: limits.sshRelayKeepaliveMs,
      })
    })
  } catch (err) {
    c.end()
    log.warn('ssh relay: the agent refused or could not be reached', {
      err,
      node: target.name,
      sandboxId: who.sandboxId,
    })
    throw new S0Error('unavailable', `node ${target.name} did not accept the SSH relay`, {
      retryAfterS: 1,
      cause: err,
    })
  } finally {
    // The login at the agent woke the sandbox there (or failed): the lease has done its work.
    if (target.reservationId) await releasePlacement(o.db, target.reservationId).catch(() => undefined)
  }
  c.on('error', (err: unknown) => log.debug('ssh relay: agent connection error', { err }))
  return c
}

function relay(client: Connection, who: Login, agent: Promise<ssh2.Client>, log: Logger): void {
  agent.catch(() => undefined) // each channel reports it
  // Either side gone: so is the other.
  client.on(
    'close',
    () =>
      void agent.then(
        (a) => a.end(),
        () => undefined,
      ),
  )
  agent.then(
    (a) => a.on('close', () => client.end()),
    () => undefined,
  )
  const { opened, full } = channelBudget()
  client.on('session', (accept, reject) => {
    if (full()) return reject()
    relaySession(opened(accept()), agent, who, log)
  })
  client.on('tcpip', (accept, reject, info) => {
    if (full()) return reject()
    agent.then(
      (a) =>
        a.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, up) => {
          if (err) return reject() // the agent said why in its log (forward.ts)
          const ch = opened(accept())
          ch.on('error', () => up.close())
          up.on('error', () => ch.close())
          ch.pipe(up).pipe(ch)
          ch.once('close', () => up.close())
          up.once('close', () => ch.close())
        }),
      () => reject(),
    )
  })
  // As the endpoint itself: no remote forwarding, no Unix socket forwarding.
  client.on('request', (_accept, reject) => reject?.())
  client.on('openssh.streamlocal', (_accept, reject) => reject())
}

/** One session channel, relayed: its requests are kept until the program starts at the agent. */
function relaySession(session: Session, agent: Promise<ssh2.Client>, who: Login, log: Logger): void {
  let pty: PseudoTtyInfo | undefined
  const env: Record<string, string> = {}
  let up: ClientChannel | undefined
  let started = false
  let resized = false

  session.on('pty', (accept, reject, info) => {
    if (started) return reject?.()
    pty = info
    accept?.()
  })
  session.on('window-change', (accept, _reject, info) => {
    accept?.()
    if (pty) Object.assign(pty, { rows: info.rows, cols: info.cols, width: info.width, height: info.height })
    if (up) up.setWindow(info.rows, info.cols, info.height, info.width)
    else if (started) resized = true
  })
  session.on('env', (accept, reject, info) => {
    if (started || !ENV_NAME_PATTERN.test(info.key) || Object.keys(env).length >= limits.sshEnvVarsMax)
      return reject?.()
    env[info.key] = String(info.val)
    accept?.()
  })
  session.on('signal', (accept, reject, info) => {
    if (!up) return reject?.()
    accept?.()
    up.signal(String(info.name).replace(/^SIG/, ''))
  })
  session.on('auth-agent', (_accept, reject) => reject?.())
  session.on('x11', (_accept, reject) => reject?.())

  const start = (
    accept: () => ServerChannel | undefined,
    reject: () => void,
    open: (a: ssh2.Client, cb: (err: Error | undefined, ch: ClientChannel) => void) => void,
  ): void => {
    if (started) return reject()
    started = true
    // Accepted at once, as the endpoint does (session.ts): the client's stdin and EOF may come
    // before the reply; the channel buffers them until the agent's channel is open.
    const channel = accept()
    if (!channel) return
    let closed = false
    channel.on('error', () => undefined)
    channel.once('close', () => {
      closed = true
      up?.close() // the agent hangs its process up
    })
    agent
      .then(
        (a) =>
          new Promise<ClientChannel>((resolve, reject) =>
            open(a, (err, ch) => (err ? reject(err) : resolve(ch))),
          ),
      )
      .then(
        (ch) => {
          if (closed) return void ch.close()
          up = ch
          // A window change that came while the agent's channel opened was only noted. It is passed
          // on once the program speaks: the agent sizes the terminal from inside as the program
          // starts (session.ts), which would undo a resize sent before.
          if (resized && pty) {
            const p = pty
            ch.once('data', () => ch.setWindow(p.rows, p.cols, p.height, p.width))
          }
          pipeSession(channel, ch)
        },
        (err: unknown) => {
          if (!closed) fail(channel, err, who, log)
        },
      )
  }
  const ptyOptions = (): PseudoTtyOptions | undefined =>
    pty ? { term: pty.term, rows: pty.rows, cols: pty.cols, width: pty.width, height: pty.height } : undefined
  session.on('shell', (accept, reject) =>
    start(accept, reject, (a, cb) => a.shell(ptyOptions() ?? false, { env }, cb)),
  )
  session.on('exec', (accept, reject, info) =>
    start(accept, reject, (a, cb) => {
      const p = ptyOptions()
      a.exec(info.command, { env, ...(p ? { pty: p } : {}) }, cb)
    }),
  )
  // No 'sftp' listener: ssh2 then hands the sftp subsystem over as a raw channel, relayed as bytes.
  session.on('subsystem', (accept, reject, info) => {
    if (info.name !== 'sftp') return reject()
    start(accept, reject, (a, cb) => a.subsys('sftp', cb))
  })
}

/** Bytes both ways; then the agent's exit status, after every byte of output, then the close. */
function pipeSession(channel: ServerChannel, up: ClientChannel): void {
  let exit: [number] | [string, boolean, string] | undefined
  up.on('exit', (code: number | null, signal?: string, dumped?: boolean, desc?: string) => {
    exit =
      code !== null ? [code] : [String(signal ?? 'KILL').replace(/^SIG/, ''), dumped ?? false, desc ?? '']
  })
  up.on('error', () => channel.close())
  channel.pipe(up) // the user's EOF is passed on (half-close)
  up.pipe(channel, { end: false })
  up.stderr.pipe(channel.stderr, { end: false })
  up.once('close', () => {
    void (async () => {
      await Promise.race([
        Promise.all([ended(up), ended(up.stderr)]),
        new Promise((r) => setTimeout(r, limits.execKillGraceMs)),
      ])
      await Promise.all([flushed(channel, channel), flushed(channel.stderr, channel)])
      if (exit) {
        if (exit.length === 1) channel.exit(exit[0])
        else channel.exit(exit[0], exit[1], exit[2])
      }
      channel.end()
    })()
  })
}

function ended(r: NodeJS.ReadableStream & { readableEnded?: boolean }): Promise<void> {
  if (r.readableEnded) return Promise.resolve()
  return new Promise((resolve) => r.once('end', () => resolve()))
}

/** Once what was written to `w` has gone out (ssh2 writes in order; an empty write marks the end). */
function flushed(w: Writable, channel: ServerChannel): Promise<void> {
  if (w.writableLength === 0 || !w.writable) return Promise.resolve()
  return new Promise((resolve) => {
    channel.once('close', () => resolve())
    w.write(Buffer.alloc(0), () => resolve())
  })
}

/** A session the agent could not start: why, on stderr, and exit status 255 (as ssh's own failures). */
function fail(channel: ServerChannel, err: unknown, who: Login, log: Logger): void {
  const message = isS0Error(err) ? `${err.message} [${err.code}]` : 'the sandbox could not be reached'
  if (!isS0Error(err)) log.warn('ssh relay: session failed', { err, sandboxId: who.sandboxId })
  channel.stderr.write(`s0: ${message}\r\n`)
  channel.exit(255)
  channel.end()
}

/**
 * An agent's side: where its private SSH endpoint listens (null: it runs none), for the relays.
 * Written after its node row is registered, at every start (the row outlives a previous life).
 */
export async function setAgentSshPort(db: Db, nodeId: string, port: number | null): Promise<void> {
  await db.query('UPDATE nodes SET ssh_port = $2 WHERE id = $1', [nodeId, port])
}
