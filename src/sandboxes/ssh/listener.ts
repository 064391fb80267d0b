// An SSH listener: the ssh2 server, its connections (ended on close) and its bound on them. The
// endpoint into sandboxes (server.ts) and an API replica's relay (relay.ts) both listen this way.
import type { AddressInfo } from 'node:net'
import ssh2 from 'ssh2'
import type { Connection } from 'ssh2'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'

export class SshListener {
  private readonly connections = new Set<Connection>()
  private closing = false

  private constructor(private readonly server: ssh2.Server) {}

  static async listen(o: {
    hostKey: string | Buffer
    host: string
    port: number
    log: Logger
    onConnection: (c: Connection) => void
  }): Promise<SshListener> {
    const server = new ssh2.Server({ hostKeys: [o.hostKey], ident: 's0' })
    const l = new SshListener(server)
    server.on('connection', (c: Connection) => {
      if (l.closing) return void c.end()
      l.connections.add(c)
      c.on('error', (err: unknown) => o.log.debug('ssh connection error', { err }))
      c.on('close', () => l.connections.delete(c))
      o.onConnection(c)
    })
    server.maxConnections = limits.sshConnectionsMax
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(o.port, o.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err: unknown) => o.log.warn('ssh listener error', { err }))
    return l
  }

  get address(): { host: string; port: number } {
    const a = this.server.address() as AddressInfo
    return { host: a.address, port: a.port }
  }

  /** Stops listening and ends every connection. */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    const closed = new Promise<void>((r) => this.server.close(() => r()))
    for (const c of this.connections) c.end()
    await closed
  }
}

/** One connection's open channels, bounded by limits.sshChannelsPerConnectionMax (server and relay). */
export function channelBudget(): {
  opened<T extends { once(e: 'close', l: () => void): unknown }>(ch: T): T
  full(): boolean
} {
  let channels = 0
  return {
    opened: (ch) => {
      channels++
      ch.once('close', () => channels--)
      return ch
    },
    full: () => channels >= limits.sshChannelsPerConnectionMax,
  }
}
