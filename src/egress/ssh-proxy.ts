// SSH re-origination for the ssh_proxy projection: the sandbox logs in to us with its own key
// (publickey only, one of the binding's sandboxPublicKeys); we log in to the real server with the
// real key after checking its host key against knownHosts, and relay each session (exec, shell,
// subsystems such as sftp) with its data, stderr, exit status or signal, pty and window changes.
// The real key never reaches the sandbox. direct-tcpip is relayed only to the same destination.
import path from 'node:path'
import type { Duplex } from 'node:stream'
import ssh2 from 'ssh2'
import type { AuthContext, Client as SshClient, Connection, ParsedKey } from 'ssh2'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { readOrCreatePrivateFile } from './credentials/key.js'
import { checkKnownHost, sshFingerprint, type KnownHostCheck } from './known-hosts.js'
import { relay, serveSession, type SshChannelRecord, type SshProxySummary } from './ssh-relay.js'
import { generateEd25519 } from '../core/ssh-keygen.js'

export type { SshChannelRecord, SshProxySummary } from './ssh-relay.js'

export const SSH_HOST_KEY_FILE = 'ssh_host_ed25519_key'

/**
 * The proxy's own host key: one ed25519 key per server, generated on first use into
 * `<stateDir>/ssh_host_ed25519_key` (OpenSSH format, mode 0600), so sandboxes see a stable key.
 */
export async function loadSshHostKey(stateDir: string): Promise<string> {
  const file = path.join(stateDir, SSH_HOST_KEY_FILE)
  const bytes = await readOrCreatePrivateFile(file, () =>
    Buffer.from(generateEd25519({ comment: 's0 egress ssh proxy' }).private),
  )
  return bytes.toString('utf8')
}

export interface SshProxyUpstream {
  host: string
  port: number
  /** The login on the real server; unset: the name the sandbox logged in with. */
  username?: string
  privateKey: string
  passphrase?: string
  /** OpenSSH known_hosts lines the server's host key must match (see known-hosts.ts). */
  knownHosts: readonly string[]
  /** More names the server is known by in knownHosts (the DNS name the sandbox resolved). */
  hostNames?: readonly string[]
  /** An open stream to the server (a SOCKS5 tunnel, say); unset: TCP to host:port. */
  sock?: Duplex
}

export interface SshProxyOptions {
  /** The proxy's host key (loadSshHostKey). */
  hostKey: string | Buffer
  /** OpenSSH public key lines (`ssh-ed25519 AAAA… comment`) the sandbox may log in with. */
  sandboxPublicKeys: readonly string[]
  upstream: SshProxyUpstream
  /** Called once, when the connection is over, with what happened (for the audit event). */
  onDone(summary: SshProxySummary): void
  /** Lower bounds for tests (defaults: limits.sshProxyAuthTimeoutMs, sshUpstreamReadyTimeoutMs). */
  authTimeoutMs?: number
  upstreamReadyTimeoutMs?: number
}

export interface SshProxyConnection {
  /** Ends both sides now. */
  close(): void
}

/** Serves one sandbox SSH connection arriving on `socket`; see the file comment. */
export function handleSshConnection(socket: Duplex, opts: SshProxyOptions): SshProxyConnection {
  const { upstream: target } = opts
  const allowed = parsePublicKeys(opts.sandboxPublicKeys)
  const summary: SshProxySummary = {
    outcome: 'relayed',
    channels: [],
    channelCount: 0,
    bytesFromSandbox: 0,
    bytesToSandbox: 0,
  }
  const where = `${target.host}:${target.port}`
  let conn: Connection | undefined
  let upstream: SshClient | undefined
  let ready: Promise<SshClient> | undefined
  let authenticated = false
  let attempts = 0
  let openChannels = 0
  let finished = false
  let graceTimer: NodeJS.Timeout | undefined

  const fail = (outcome: SshProxySummary['outcome'], error: S0Error): void => {
    if (summary.error) return
    summary.outcome = outcome
    summary.error = error
  }
  const finish = (): void => {
    if (finished) return
    finished = true
    clearTimeout(authTimer)
    clearTimeout(graceTimer)
    if (!authenticated)
      fail(
        'sandbox_auth_failed',
        new S0Error(
          'ssh_sandbox_auth_failed',
          attempts > 0 ? 'the sandbox offered no key of sandboxPublicKeys' : 'the sandbox did not log in',
        ),
      )
    upstream?.end()
    conn?.end()
    socket.destroy()
    opts.onDone(summary)
  }
  const authTimer = setTimeout(() => {
    fail('sandbox_auth_failed', new S0Error('ssh_sandbox_auth_failed', 'the sandbox did not log in in time'))
    finish()
  }, opts.authTimeoutMs ?? limits.sshProxyAuthTimeoutMs)

  const record = (r: SshChannelRecord): SshChannelRecord => {
    summary.channelCount++
    if (summary.channels.length < limits.sshProxySummaryChannelsMax) summary.channels.push(r)
    return r
  }

  const onAuth = (ctx: AuthContext): void => {
    const refuse = (): void => {
      if (ctx.method !== 'none') attempts++
      ctx.reject(['publickey'])
      if (attempts >= limits.sshProxyAuthAttemptsMax) finish()
    }
    if (ctx.method !== 'publickey') return refuse()
    const key = allowed.find((k) => k.getPublicSSH().equals(ctx.key.data))
    if (!key) return refuse()
    // Without a signature the client only asks whether this key would do.
    if (!ctx.signature || !ctx.blob) return ctx.accept()
    if (key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return refuse()
    summary.sandboxUser = ctx.username
    summary.sandboxKey = sshFingerprint(ctx.key.data)
    ctx.accept()
  }

  const connectUpstream = (username: string): Promise<SshClient> => {
    summary.upstreamUser = username
    const client = new ssh2.Client()
    upstream = client
    let check: KnownHostCheck | undefined
    return new Promise((resolve, reject) => {
      let up = false
      client.on('error', (err: Error & { level?: string }) => {
        if (up) return // after login, a failure ends the connection through 'close'
        reject(upstreamError(where, username, err, check))
      })
      client.once('ready', () => {
        up = true
        if (finished) client.end() // the sandbox left while we were logging in
        resolve(client)
      })
      client.once('close', () => {
        if (!up) reject(new S0Error('ssh_upstream_failed', `${where} closed the connection before the login`))
        else conn?.end()
      })
      try {
        client.connect({
          host: target.host,
          port: target.port,
          ...(target.sock ? { sock: target.sock as never } : {}),
          username,
          privateKey: target.privateKey,
          ...(target.passphrase ? { passphrase: target.passphrase } : {}),
          readyTimeout: opts.upstreamReadyTimeoutMs ?? limits.sshUpstreamReadyTimeoutMs,
          keepaliveInterval: limits.sshKeepaliveIntervalMs,
          hostVerifier: (key: Buffer) => {
            check = checkKnownHost(
              target.knownHosts,
              [target.host, ...(target.hostNames ?? [])],
              target.port,
              key,
            )
            summary.upstreamHostKey = check.fingerprint
            return check.verdict === 'trusted'
          },
        })
      } catch (err) {
        reject(new S0Error('ssh_upstream_failed', `${where}: cannot use the private key`, { cause: err }))
      }
    })
  }

  const server = new ssh2.Server({ hostKeys: [opts.hostKey], ident: 's0-egress-ssh' }, (c) => {
    conn = c
    c.on('error', () => undefined) // a broken connection ends in 'close'
    c.on('close', finish)
    c.on('authentication', onAuth)
    c.on('ready', () => {
      authenticated = true
      clearTimeout(authTimer)
      ready = connectUpstream(target.username ?? summary.sandboxUser ?? '')
      ready.catch((err: unknown) => {
        fail('upstream_failed', err as S0Error)
        if (finished) return
        // Sessions asked for now or soon learn why on their stderr; then the connection ends.
        graceTimer = setTimeout(() => conn?.end(), limits.sshProxyFailureGraceMs)
      })
    })
    c.on('session', (accept, reject) => {
      if (openChannels >= limits.sshProxyChannelsMax) return reject()
      const session = accept()
      openChannels++
      session.once('close', () => void openChannels--)
      serveSession(session, () => ready as Promise<SshClient>, record, summary)
    })
    c.on('tcpip', (accept, reject, info) => {
      const dest = `${info.destIP}:${info.destPort}`
      const rec = record({ type: 'direct-tcpip', detail: dest })
      const same =
        info.destPort === target.port && [target.host, ...(target.hostNames ?? [])].includes(info.destIP)
      if (!same || openChannels >= limits.sshProxyChannelsMax) {
        rec.refused = same ? 'too many channels' : `only ${where} may be reached through this connection`
        return reject()
      }
      openChannels++
      ;(ready as Promise<SshClient>).then(
        (client) =>
          client.forwardOut(info.srcIP, info.srcPort, target.host, target.port, (err, up) => {
            if (err) {
              openChannels--
              rec.refused = err.message
              return reject()
            }
            const ch = accept()
            ch.once('close', () => void openChannels--)
            relay(ch, up, summary)
          }),
        (err: S0Error) => {
          openChannels--
          rec.refused = err.message
          reject()
        },
      )
    })
  })
  socket.on('error', () => undefined)
  socket.once('close', finish)
  server.injectSocket(socket as never)
  return { close: finish }
}

function upstreamError(
  where: string,
  username: string,
  err: Error & { level?: string },
  check: KnownHostCheck | undefined,
): S0Error {
  if (check && check.verdict !== 'trusted') {
    const why = {
      revoked: 'which knownHosts marks @revoked',
      'unknown-key': 'which is not the key knownHosts lists for it',
      'unknown-host': 'and knownHosts has no entry for it',
    }[check.verdict]
    return new S0Error('ssh_host_key_mismatch', `${where} presented host key ${check.fingerprint}, ${why}`, {
      details: { fingerprint: check.fingerprint, verdict: check.verdict },
    })
  }
  if (err.level === 'client-authentication')
    return new S0Error('ssh_upstream_failed', `${where} refused the key for user ${username}`)
  if (err.level === 'client-timeout')
    return new S0Error('ssh_upstream_failed', `${where} did not answer in time`)
  return new S0Error('ssh_upstream_failed', `${where}: ${err.message}`)
}

function parsePublicKeys(lines: readonly string[]): ParsedKey[] {
  const out: ParsedKey[] = []
  for (const line of lines.slice(0, limits.sshSandboxPublicKeysMax)) {
    const k = ssh2.utils.parseKey(line.trim())
    const key = Array.isArray(k) ? (k as ParsedKey[])[0] : k
    if (key && !(key instanceof Error)) out.push(key)
  }
  return out
}
