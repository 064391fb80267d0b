// One host's egress, assembled: the proxy and the resolver (src/egress) listening on every
// address, the sandbox network (src/runtime) whose nftables table sends each sandbox's TCP to the
// proxy and its DNS to the resolver, and the sandbox side (egress.ts: CAs, trust, directory).
// The order matters: the ports exist before the table that redirects to them, and the table goes
// after the last sandbox is detached (close).
import { mkdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import type { EventLog } from '../core/events.js'
import type { Logger } from '../core/log.js'
import { native } from '../core/native.js'
import type { CredentialResolver } from '../egress/credentials/resolve.js'
import type { SecretKey } from '../egress/credentials/key.js'
import { EgressResolver } from '../egress/dns/resolver.js'
import { EgressDirectory } from '../egress/proxy/directory.js'
import { EgressProxy } from '../egress/proxy/server.js'
import { UdpRelay } from '../egress/proxy/udp-relay.js'
import { loadSshHostKey } from '../egress/ssh-proxy.js'
import { SandboxNetwork } from '../runtime/network.js'
import { SandboxEgress } from './egress.js'

export interface EgressStackOptions {
  db: Db
  key: SecretKey
  events: EventLog
  credentials: CredentialResolver
  /** The SSH proxy's host key and the files bound into sandboxes live here. */
  stateDir: string
  /** This server's name on the host ([a-z0-9]{1,6}): its veths and nftables table carry it. */
  tag: string
  cidr: string
  /** S0_EGRESS_RESOLVER; unset: the host's resolv.conf. */
  resolverUpstream?: string | undefined
  /** S0_EGRESS_HOSTS. */
  hostsFile?: string | undefined
  /** S0_EGRESS_CA_FILE. */
  upstreamCaFile?: string | undefined
  log: Logger
}

export class EgressStack {
  private constructor(
    readonly network: SandboxNetwork,
    readonly egress: SandboxEgress,
    readonly proxy: EgressProxy,
    readonly resolver: EgressResolver,
    readonly udp: UdpRelay,
  ) {}

  static async open(o: EgressStackOptions): Promise<EgressStack> {
    const log = o.log.child({ component: 'egress' })
    if (typeof native?.originalDst !== 'function')
      throw new S0Error(
        'config_invalid',
        'sandbox networking needs the native addon with originalDst (SO_ORIGINAL_DST); rebuild it with `npx node-gyp rebuild` (or `npm install`), or set S0_SANDBOX_NETWORK=false',
      )
    await mkdir(o.stateDir, { recursive: true, mode: 0o700 })
    const upstreamCa =
      o.upstreamCaFile === undefined
        ? undefined
        : await readFile(o.upstreamCaFile, 'utf8').catch((err: unknown) => {
            throw new S0Error(
              'config_invalid',
              `S0_EGRESS_CA_FILE ${o.upstreamCaFile}: ${(err as Error).message}`,
            )
          })
    // The directory finds a sandbox by its source address, which the network hands out.
    let network: SandboxNetwork | undefined
    const directory = new EgressDirectory((ip) => network?.sandboxOf(ip))
    let resolver: EgressResolver | undefined
    let udp: UdpRelay | undefined
    const proxy = new EgressProxy({
      directory,
      events: o.events,
      credentials: o.credentials,
      sshHostKey: await loadSshHostKey(o.stateDir),
      upstreamCa,
      lookup: (name) => (resolver ? resolver.lookupAddresses(name) : Promise.resolve([])),
      sandboxCidr: o.cidr,
      log,
    })
    try {
      const proxyPort = await proxy.listen(0, '0.0.0.0')
      resolver = await EgressResolver.start({
        host: '0.0.0.0',
        port: 0,
        directory: proxy.resolverDirectory(),
        ...(o.resolverUpstream ? { upstream: o.resolverUpstream } : {}),
        ...(o.hostsFile ? { hostsFile: o.hostsFile } : {}),
        log,
      })
      udp = await UdpRelay.start({
        directory,
        events: o.events,
        forbidden: (ip) => proxy.forbidden(ip),
        log,
      })
      network = await SandboxNetwork.open({
        tag: o.tag,
        cidr: o.cidr,
        proxyPort,
        dnsPort: resolver.address.port,
        udpPort: udp.port,
        log,
      })
      log.info('egress ready', { proxyPort, dnsPort: resolver.address.port, udpPort: udp.port, cidr: o.cidr })
    } catch (err) {
      await proxy.close()
      await resolver?.close()
      await udp?.close()
      throw err
    }
    const egress = new SandboxEgress({
      db: o.db,
      key: o.key,
      directory,
      stateDir: path.join(o.stateDir, 'sandbox-files'),
      log,
    })
    return new EgressStack(network, egress, proxy, resolver, udp)
  }

  /**
   * After the sandboxes are closed. Running ones stay fenced by the table until the next start
   * takes them back; `removeAll` (tests) deletes the table and every veth of this server too.
   */
  async close(opts: { removeAll?: boolean } = {}): Promise<void> {
    await this.proxy.close()
    await this.resolver.close()
    await this.udp.close()
    await this.network.close(opts)
  }
}
