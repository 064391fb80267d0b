// `ssh -L` into a sandbox (direct-tcpip): only to the sandbox itself. Its address on its veth,
// its id, `localhost` and 127.0.0.1 / ::1 all mean the sandbox (a connection goes to its address,
// so a service must listen there, not only on its own loopback); any other destination (the
// host, another sandbox, the internet) is refused. Without a sandbox network there is nothing to
// dial. The connection comes from the host's end of the sandbox's veth, as the ingress does.
import net from 'node:net'
import type { ServerChannel, TcpipRequestInfo } from 'ssh2'
import { limits } from '../../core/limits.js'
import type { SessionDeps } from './session.js'

const SELF_NAMES = new Set(['localhost', '127.0.0.1', '::1', '0.0.0.0'])

export function forwardIntoSandbox(
  accept: () => ServerChannel,
  reject: () => void,
  info: TcpipRequestInfo,
  deps: SessionDeps,
): void {
  const { teamId, sandboxId } = deps.login
  const port = info.destPort
  const refuse = (why: string): void => {
    deps.log.info('ssh: forward refused', { sandboxId, dest: `${info.destIP}:${port}`, why })
    reject()
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) return refuse('bad port')
  deps.sandboxes.running(teamId, sandboxId).then(
    (row) => {
      const address = deps.sandboxes.addressOf(row.id)
      if (!address) return refuse('the sandbox has no network address (S0_SANDBOX_NETWORK=false?)')
      const dest = info.destIP.toLowerCase()
      if (!SELF_NAMES.has(dest) && dest !== address && dest !== row.id)
        return refuse('only the sandbox itself may be forwarded to')
      const sock = net.connect({ host: address, port })
      const timer = setTimeout(
        () => sock.destroy(new Error('connect timeout')),
        limits.sshForwardConnectTimeoutMs,
      )
      sock.once('error', (err) => {
        clearTimeout(timer)
        refuse(`connect failed: ${err.message}`)
      })
      sock.once('connect', () => {
        clearTimeout(timer)
        sock.removeAllListeners('error')
        const channel = accept()
        sock.on('error', () => channel.destroy())
        channel.on('error', () => sock.destroy())
        channel.pipe(sock).pipe(channel)
        channel.once('close', () => sock.destroy())
      })
    },
    (err: unknown) => refuse(`sandbox not running: ${(err as Error).message}`),
  )
}
