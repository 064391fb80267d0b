// The relaying half of the SSH proxy (ssh-proxy.ts): a sandbox session's settings (env, pty) kept
// until it starts a program, the program started on the upstream connection, and both channels
// piped with the exit status or signal passed on after the last byte of output.
import type { Writable } from 'node:stream'
import type {
  Client as SshClient,
  ClientChannel,
  PseudoTtyInfo,
  PseudoTtyOptions,
  ServerChannel,
  Session,
} from 'ssh2'
import type { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'

/** What a command line or subsystem name is cut to in a summary. */
export const DETAIL_CHARS_MAX = 1024

export interface SshChannelRecord {
  type: 'exec' | 'shell' | 'subsystem' | 'direct-tcpip'
  /** The command (first 1 KiB), the subsystem, or host:port. */
  detail?: string
  /** Why it was not relayed. */
  refused?: string
  exitCode?: number
  exitSignal?: string
}

export interface SshProxySummary {
  /** `relayed`: the sandbox logged in and the upstream connection was made (whatever came after). */
  outcome: 'relayed' | 'sandbox_auth_failed' | 'upstream_failed'
  /** ssh_sandbox_auth_failed, ssh_host_key_mismatch or ssh_upstream_failed. */
  error?: S0Error
  sandboxUser?: string
  /** `SHA256:…` of the sandbox key that logged in. */
  sandboxKey?: string
  upstreamUser?: string
  /** `SHA256:…` of the host key the upstream presented. */
  upstreamHostKey?: string
  /** The first limits.sshProxySummaryChannelsMax channels. */
  channels: SshChannelRecord[]
  channelCount: number
  bytesFromSandbox: number
  bytesToSandbox: number
}

type Accept = (() => void) | undefined
type Reject = (() => void) | undefined

/** One sandbox session: its settings are kept until it starts a program, then it is relayed. */
export function serveSession(
  session: Session,
  upstream: () => Promise<SshClient>,
  record: (r: SshChannelRecord) => SshChannelRecord,
  summary: SshProxySummary,
): void {
  const env: Record<string, string> = {}
  let pty: PseudoTtyOptions | undefined
  let up: ClientChannel | undefined
  let closed = false
  const ok = (accept: Accept): void => accept?.()
  session.on('env', (accept: Accept, reject: Reject, info: { key: string; val: string }) => {
    if (Object.keys(env).length >= limits.sshProxyEnvVarsMax) return reject?.()
    env[info.key] = info.val
    ok(accept)
  })
  session.on('pty', (accept: Accept, _reject: Reject, info: PseudoTtyInfo) => {
    pty = {
      rows: info.rows,
      cols: info.cols,
      width: info.width,
      height: info.height,
      term: info.term,
      modes: info.modes,
    }
    ok(accept)
  })
  session.on(
    'window-change',
    (accept: Accept, _r: Reject, info: { rows: number; cols: number; width: number; height: number }) => {
      if (up) up.setWindow(info.rows, info.cols, info.height, info.width)
      else if (pty) pty = { ...pty, rows: info.rows, cols: info.cols, width: info.width, height: info.height }
      ok(accept)
    },
  )
  session.on('signal', (accept: Accept, _r: Reject, info: { name: string }) => {
    up?.signal(info.name.replace(/^SIG/, ''))
    ok(accept)
  })
  session.on('close', () => {
    closed = true
    up?.close()
  })

  const start = (
    rec: SshChannelRecord,
    accept: () => ServerChannel | undefined,
    reject: Reject,
    open: (client: SshClient, cb: (err: Error | undefined, ch: ClientChannel) => void) => void,
  ): void => {
    upstream().then(
      (client) =>
        open(client, (err, channel) => {
          if (err) {
            rec.refused = err.message
            return reject ? reject() : void accept()?.close()
          }
          if (closed) return void channel.close()
          up = channel
          const ch = accept()
          if (!ch) return void channel.close()
          relay(ch, channel, summary, rec)
        }),
      (err: S0Error) => {
        rec.refused = err.message
        if (rec.type === 'subsystem') return reject ? reject() : void accept()?.close()
        // A program asked for: say why on its stderr, as ssh itself would.
        const ch = accept()
        if (!ch) return
        ch.stderr.write(`s0 egress ssh proxy: ${err.message}\r\n`)
        ch.exit(255)
        ch.end()
      },
    )
  }
  session.on('exec', (accept: () => ServerChannel, reject: Reject, info: { command: string }) => {
    const rec = record({ type: 'exec', detail: info.command.slice(0, DETAIL_CHARS_MAX) })
    start(rec, accept, reject, (c, cb) => c.exec(info.command, { env, ...(pty ? { pty } : {}) }, cb))
  })
  session.on('shell', (accept: () => ServerChannel, reject: Reject) => {
    const rec = record({ type: 'shell' })
    start(rec, accept, reject, (c, cb) => c.shell(pty ?? false, { env }, cb))
  })
  // No 'sftp' listener: ssh2 then hands sftp over as a raw subsystem, relayed byte for byte.
  session.on('subsystem', (accept: () => ServerChannel, reject: Reject, info: { name: string }) => {
    const rec = record({ type: 'subsystem', detail: info.name.slice(0, DETAIL_CHARS_MAX) })
    start(rec, accept, reject, (c, cb) => c.subsys(info.name, cb))
  })
}

/**
 * Relays a sandbox channel and an upstream one both ways. What the upstream sends ends with its
 * exit status or signal, sent only after all of its output, then EOF and close.
 */
export function relay(
  ch: ServerChannel,
  up: ClientChannel,
  summary: SshProxySummary,
  rec?: SshChannelRecord,
): void {
  ch.on('data', (d: Buffer) => void (summary.bytesFromSandbox += d.length))
  up.on('data', (d: Buffer) => void (summary.bytesToSandbox += d.length))
  up.stderr.on('data', (d: Buffer) => void (summary.bytesToSandbox += d.length))
  ch.on('error', () => up.close())
  up.on('error', () => ch.close())
  ch.pipe(up) // the sandbox's EOF becomes the upstream's
  up.pipe(ch, { end: false })
  up.stderr.pipe(ch.stderr, { end: false })
  let exit: unknown[] | undefined
  up.on('exit', (...args: unknown[]) => void (exit = args))
  up.once('close', () => {
    if (!ch.writable) return
    flush(ch, () =>
      flush(ch.stderr, () => {
        if (exit && rec) {
          const [code, signal, dump, desc] = exit
          if (typeof code === 'number') {
            rec.exitCode = code
            ch.exit(code)
          } else if (typeof signal === 'string') {
            rec.exitSignal = signal.replace(/^SIG/, '')
            ch.exit(rec.exitSignal, Boolean(dump), typeof desc === 'string' ? desc : '')
          }
        }
        ch.end()
      }),
    )
  })
  ch.once('close', () => up.close())
}

/** Calls `then` once everything written to `w` so far has gone out (writes complete in order). */
function flush(w: Writable, then: () => void): void {
  if (!w.writable) return then()
  w.write(Buffer.alloc(0), () => then())
}
