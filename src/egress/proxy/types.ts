// What the proxy's routes (routes.ts, upstream.ts) see of it: its options, a connection as
// classified, and the credential projection of a binding. Its own module so that the routes do
// not import the proxy that imports them.
import type { EventLog } from '../../core/events.js'
import type { Logger } from '../../core/log.js'
import type { Sniffed } from '../classify.js'
import type { Projection } from '../credentials/projections.js'
import type { CredentialResolver } from '../credentials/resolve.js'
import type { CredentialBinding } from '../policy/types.js'
import type { EgressDirectory, EgressSandbox } from './directory.js'

export interface EgressProxyOptions {
  directory: EgressDirectory
  events: EventLog
  /** Credential sources of every team, decrypted on demand and cached briefly. */
  credentials: CredentialResolver
  /** The SSH proxy's host key (what a sandbox's ssh sees for every ssh_proxy destination). */
  sshHostKey: string
  /** Trust for re-originated TLS (a PEM bundle, S0_EGRESS_CA_FILE); unset: Node's default store. */
  upstreamCa: string | undefined
  /** Resolves a name as the sandbox's resolver would (hosts file, then upstream DNS). */
  lookup(name: string): Promise<string[]>
  /** The sandbox address pool: another sandbox is never a destination. */
  sandboxCidr: string
  log: Logger
}

/** What the proxy decided for a connection, with what it knows of it. */
export interface Classified {
  sandbox: EgressSandbox
  ip: string
  port: number
  sniffed: Sniffed
  /** The bytes read to classify it (given again to whatever handles it). */
  first: Buffer
  /** Its verified name (SNI / Host checked against the address, or the sandbox's DNS answer). */
  name: string | undefined
  operationId: string
}

export interface ProxyContext {
  readonly o: EgressProxyOptions
  /** A binding's source, resolved for the connection's sandbox and projected. */
  projection(c: Classified, binding: CredentialBinding): Promise<Projection>
}
