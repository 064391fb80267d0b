// One SSH session channel: a shell or a command in the sandbox (with a terminal when the client
// asked for a pty), or the SFTP subsystem. Processes start through SandboxService.spawn, the
// runtime's one exec path (a paused sandbox is woken first). The terminal's size is set inside
// at start (so the first command sees it) and outside on every window change (pty-resize.ts).
// stdin EOF is passed on; the exit status goes back before the channel closes; a channel the
// client closes hangs up its process.
import { S0Error, isS0Error } from '../../core/errors.js'
import { ENV_NAME_PATTERN, type TeamId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { SandboxProcess } from '../../runtime/sandbox-runtime.js'
import type { ServerChannel, Session } from 'ssh2'
import type { SandboxService } from '../service.js'
import { SandboxTree } from '../files/paths.js'
import { serveSftp } from './sftp.js'

export interface Login {
  teamId: TeamId
  sandboxId: string
  /** 'cluster': an agent's login by a replica relaying a user (login.ts). */
  method: 'publickey' | 'api_key' | 'cluster'
}

export interface SessionDeps {
  sandboxes: SandboxService
  login: Login
  log: Logger
}

interface Pty {
  term: string
  rows: number
  cols: number
}

// Like sshd: commands and shells start in $HOME; a login shell is bash where there is one.
const TO_HOME = 'cd "$HOME" 2>/dev/null || cd /'
const LOGIN_SHELL = 'if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l'
const SIGNALS = new Set([
  'ABRT',
  'ALRM',
  'FPE',
  'HUP',
  'ILL',
  'INT',
  'KILL',
  'PIPE',
  'QUIT',
  'SEGV',
  'TERM',
  'USR1',
  'USR2',
])

/** The argv of a shell (`command` undefined) or a command, as sshd runs them: `sh -c`. */
export function sessionArgv(command: string | undefined, pty: Pty | undefined): string[] {
  const size =
    pty && pty.rows > 0 && pty.cols > 0 ? `stty rows ${pty.rows} cols ${pty.cols} 2>/dev/null; ` : ''
  if (command === undefined) return ['/bin/sh', '-c', `${TO_HOME}; ${size}${LOGIN_SHELL}`]
  return ['/bin/sh', '-c', `${TO_HOME}; ${size}eval "$1"`, 'sh', command]
}

export function serveSession(session: Session, deps: SessionDeps): void {
  let pty: Pty | undefined
  const env: Record<string, string> = {}
  let proc: SandboxProcess | undefined
  let started = false

  session.on('pty', (accept, reject, info) => {
    if (started) return reject?.()
    pty = { term: info.term || 'xterm', rows: info.rows, cols: info.cols }
    accept?.()
  })
  session.on('window-change', (accept, _reject, info) => {
    accept?.()
    if (pty) {
      pty.rows = info.rows
      pty.cols = info.cols
    }
    proc
      ?.resize(info.rows, info.cols)
      .catch((err: unknown) => deps.log.debug('ssh: resize failed', { err, sandboxId: deps.login.sandboxId }))
  })
  session.on('env', (accept, reject, info) => {
    if (started || !ENV_NAME_PATTERN.test(info.key) || Object.keys(env).length >= limits.sshEnvVarsMax)
      return reject?.()
    env[info.key] = String(info.val)
    accept?.()
  })
  session.on('signal', (accept, reject, info) => {
    const name = String(info.name).replace(/^SIG/, '')
    if (!proc || !SIGNALS.has(name)) return reject?.()
    accept?.()
    proc.kill(`SIG${name}` as NodeJS.Signals).catch(() => undefined)
  })
  // Refused: agent and X11 forwarding (nothing of the host is handed to the sandbox).
  session.on('auth-agent', (_accept, reject) => reject?.())
  session.on('x11', (_accept, reject) => reject?.())

  const start = (
    accept: () => ServerChannel | undefined,
    reject: () => void,
    command: string | undefined,
  ): void => {
    if (started) return reject()
    started = true
    // Accepted at once: OpenSSH sends stdin (and its EOF) without waiting for the reply, and
    // ssh2 drops a session whose EOF comes before its channel exists. The channel buffers it.
    const channel = accept()
    if (!channel) return
    let closed = false
    channel.once('close', () => (closed = true))
    channel.on('error', () => undefined)
    const argv = sessionArgv(command, pty)
    const { teamId, sandboxId } = deps.login
    deps.sandboxes
      .spawn(teamId, sandboxId, argv, {
        env: { ...env, ...(pty ? { TERM: pty.term } : {}) },
        ...(pty ? { tty: true } : {}),
        ...(pty && pty.rows > 0 && pty.cols > 0 ? { ttySize: { rows: pty.rows, cols: pty.cols } } : {}),
        timeoutMs: limits.sshSessionLifetimeMs,
      })
      .then(
        (p) => {
          proc = p
          // The client left while the process started: it is hung up at once.
          if (closed) return void p.kill('SIGKILL').catch(() => undefined)
          attach(channel, p, pty, deps)
        },
        (err: unknown) => {
          if (!closed) fail(channel, err, deps)
        },
      )
  }
  session.on('shell', (accept, reject) => start(accept, reject, undefined))
  session.on('exec', (accept, reject, info) => start(accept, reject, info.command))
  session.on('sftp', (accept, reject) => {
    if (started) return reject()
    started = true
    // Accepted at once (the client's INIT may come before the reply); requests wait for the tree.
    const sftp = accept()
    const tree = deps.sandboxes
      .view(deps.login.teamId, deps.login.sandboxId)
      .then((view) => SandboxTree.open(view))
    tree.catch((err: unknown) =>
      deps.log.debug('ssh: sftp without a tree', { err, sandboxId: deps.login.sandboxId }),
    )
    serveSftp(sftp, tree, deps.log)
  })
  session.on('subsystem', (_accept, reject) => reject())
}

/** A session that could not start: why, on stderr, and exit status 255 (as ssh's own failures). */
function fail(channel: ServerChannel, err: unknown, deps: SessionDeps): void {
  const message = isS0Error(err) ? `${err.message} [${err.code}]` : 'internal error'
  if (!isS0Error(err)) deps.log.warn('ssh: session failed', { err, sandboxId: deps.login.sandboxId })
  channel.stderr.write(`s0: ${message}\r\n`)
  channel.exit(255)
  channel.end()
}

function attach(channel: ServerChannel, proc: SandboxProcess, pty: Pty | undefined, deps: SessionDeps): void {
  let exited = false
  proc.stdin.on('error', () => undefined) // EPIPE once the process is gone
  channel.pipe(proc.stdin)
  if (pty)
    proc
      .resize(pty.rows, pty.cols)
      .catch((err: unknown) => deps.log.debug('ssh: initial resize failed', { err }))
  const outputs = [proc.stdout, proc.stderr].map(
    (stream) => new Promise<void>((resolve) => stream.once('end', resolve).once('close', resolve)),
  )
  proc.stdout.pipe(channel, { end: false })
  proc.stderr.pipe(channel.stderr, { end: false })
  // Hang up a process whose client went away; it gets limits.execKillGraceMs before a KILL.
  channel.once('close', () => {
    if (exited) return
    proc.kill('SIGHUP').catch(() => undefined)
    setTimeout(() => {
      if (!exited) proc.kill('SIGKILL').catch(() => undefined)
    }, limits.execKillGraceMs).unref()
  })
  proc.wait().then(
    async (res) => {
      exited = true
      // Everything printed goes out before the exit status (bounded: a process that left a
      // child holding its output is not waited for past the kill grace).
      await Promise.race([Promise.all(outputs), new Promise((r) => setTimeout(r, limits.execKillGraceMs))])
      if (res.exitCode !== null) channel.exit(res.exitCode)
      else channel.exit((res.signal ?? 'SIGKILL').replace(/^SIG/, ''), false, res.timedOut ? 'timed out' : '')
      channel.end()
    },
    (err: unknown) => {
      exited = true
      fail(channel, err instanceof S0Error ? err : new S0Error('runtime_failed', 'the process failed'), deps)
    },
  )
}
