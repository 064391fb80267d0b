// The egress proxy: every TCP connection a sandbox opens arrives here (nftables redirects it;
// SO_ORIGINAL_DST says where it was going). Per connection: who (the sandbox, by source address),
// where (the original destination; its names from the sandbox's own DNS answers, or the TLS SNI
// / HTTP Host checked to resolve to that address), what (the first bytes classify it), then the
// policy decides. Denied: HTTP gets a 403 naming the rule, anything else a reset. Allowed: a plain
// pipe, or, where a protocol or credential rule needs to see requests, the HTTP layer (TLS
// terminated with the sandbox's own CA and re-originated with full verification). Every decision
// is a network_audit event.
import { randomUUID } from 'node:crypto'
import net from 'node:net'
import os from 'node:os'
import { assert, crashOnBug } from '../../core/assert.js'
import { isS0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { native, socketFd } from '../../core/native.js'
import { sniff, type Sniffed } from '../classify.js'
import { parseCidr, parseIp, type IpRange } from '../policy/ip.js'
import { alwaysDenied, decide, type Decision, type Flow } from '../policy/match.js'
import type { Projection } from '../credentials/projections.js'
import type { ResolverDirectory } from '../dns/resolver.js'
import type { CredentialBinding } from '../policy/types.js'
import { auditFlow } from './audit.js'
import type { EgressSandbox } from './directory.js'
import type { Classified, EgressProxyOptions, ProxyContext } from './types.js'
import { interceptHttp, plainHttp, routeFor, sshProxy } from './routes.js'
import { connectUpstream, pipeBoth } from './upstream.js'
export type { Classified, EgressProxyOptions } from './types.js'

export class EgressProxy implements ProxyContext {
  private server: net.Server | undefined
  private readonly hostAddresses = new Set<string>()
  private readonly pool: IpRange | undefined
  private readonly sockets = new Set<net.Socket>()
  /** Allowed connections being served, per sandbox: a policy change re-decides them. */
  private readonly flows = new Map<string, Map<net.Socket, Flow>>()
  /** Connections since start, by outcome (metrics). */
  readonly counters = { allowed: 0, denied: 0, errors: 0, revoked: 0 }

  constructor(readonly o: EgressProxyOptions) {
    o.directory.onPolicyChange((e) => this.recheck(e))
    for (const addrs of Object.values(os.networkInterfaces()))
      for (const a of addrs ?? []) this.hostAddresses.add(a.address)
    this.pool = parseCidr(o.sandboxCidr)
  }

  /** Listens on `port` of every address (nftables lets only sandbox traffic reach it). */
  async listen(port: number, host = '0.0.0.0'): Promise<number> {
    // noDelay: request/response traffic through a pipe must not wait on Nagle.
    const server = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.accept(s))
    server.maxConnections = limits.egressConnectionsMax
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => resolve())
    })
    this.server = server
    return (server.address() as net.AddressInfo).port
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()))
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket)
    socket.on('close', () => this.sockets.delete(socket))
    socket.on('error', () => undefined) // each handler reports its own failures; a reset here is normal
    this.handle(socket).catch((err: unknown) => {
      crashOnBug(err, this.o.log)
      this.counters.errors++
      this.o.log.warn('egress connection failed', { err })
      socket.destroy()
    })
  }

  /** A binding's source, resolved for the connection's sandbox and projected (cached per the binding's ttl). */
  async projection(c: Classified, binding: CredentialBinding): Promise<Projection> {
    return (await this.o.credentials.resolveBinding(c.sandbox.teamId, binding)).projection
  }

  /** A destination no policy may allow: the host itself, another sandbox, loopback, link-local. */
  forbidden(ip: string): string | undefined {
    const always = alwaysDenied(ip)
    if (always) return always
    if (this.hostAddresses.has(ip)) return 'the host itself is never a destination'
    const parsed = parseIp(ip)
    if (
      this.pool &&
      parsed &&
      parsed.v === 4 &&
      this.pool.v === 4 &&
      parsed.n >= this.pool.lo &&
      parsed.n <= this.pool.hi
    )
      return 'another sandbox is never a destination'
    return undefined
  }

  private async handle(socket: net.Socket): Promise<void> {
    const source = socket.remoteAddress ?? ''
    const sandbox = this.o.directory.lookup(source)
    if (!sandbox) return void socket.resetAndDestroy() // not a sandbox of this host
    assert(
      typeof native?.originalDst === 'function',
      'the egress proxy needs the native addon with originalDst (SO_ORIGINAL_DST): rebuild it with `npx node-gyp rebuild` (or `npm install`)',
    )
    const dst = native.originalDst(socketFd(socket))
    const operationId = randomUUID()
    const base = { sandbox, operationId, action: 'connect' as const }
    const forbidden = this.forbidden(dst.address)
    if (forbidden) {
      this.deny(socket, undefined, { action: 'deny', reason: forbidden }, base, dst)
      return
    }
    const { sniffed, first } = await readFirst(socket)
    if (sniffed.malformed) {
      this.deny(socket, sniffed, { action: 'deny', reason: `malformed ${sniffed.malformed}` }, base, dst)
      return
    }
    const verified = await this.verifiedName(sandbox, dst.address, sniffed.serverName)
    if (verified.refused) {
      this.deny(socket, sniffed, { action: 'deny', reason: verified.refused }, base, dst)
      return
    }
    const flow: Flow = {
      transport: 'tcp',
      ip: dst.address,
      port: dst.port,
      names: verified.names,
      ...(sniffed.appProtocol ? { appProtocol: sniffed.appProtocol } : {}),
    }
    const decision = decide(sandbox.policy, flow)
    const c: Classified = {
      sandbox,
      ip: dst.address,
      port: dst.port,
      sniffed,
      first,
      name: verified.names[0],
      operationId,
    }
    if (decision.action === 'deny') return this.deny(socket, sniffed, decision, base, dst, c.name)
    this.counters.allowed++
    let open = this.flows.get(sandbox.sandboxId)
    if (!open) this.flows.set(sandbox.sandboxId, (open = new Map()))
    open.set(socket, flow)
    try {
      await this.serve(socket, c, decision)
    } finally {
      open.delete(socket)
      if (open.size === 0 && this.flows.get(sandbox.sandboxId) === open) this.flows.delete(sandbox.sandboxId)
    }
  }

  /**
   * After a live policy change: an open connection the new policy denies is reset (and audited);
   * the others go on. Protocol and credential rules apply from the next request.
   */
  private recheck(sandbox: EgressSandbox): void {
    for (const [socket, flow] of this.flows.get(sandbox.sandboxId) ?? []) {
      const d = decide(sandbox.policy, flow)
      if (d.action === 'allow') continue
      this.counters.revoked++
      auditFlow(this.o.events, {
        sandbox,
        action: 'revoke',
        outcome: 'denied',
        destination: {
          ip: flow.ip,
          port: flow.port,
          transport: 'tcp',
          ...(flow.names[0] !== undefined ? { name: flow.names[0] } : {}),
        },
        rule: d.reason,
        ...(flow.appProtocol ? { appProtocol: flow.appProtocol } : {}),
      })
      socket.resetAndDestroy()
    }
  }

  /** The resolver's view of the same sandboxes: their policies, their name maps, their audit. */
  resolverDirectory(): ResolverDirectory {
    return {
      lookup: (sourceIp) => {
        const sandbox = this.o.directory.lookup(sourceIp)
        if (!sandbox) return undefined
        return {
          get policy() {
            return sandbox.policy
          },
          onAnswer: (name, ips, ttlS) => sandbox.names.add(name, ips, ttlS),
          audit: (d) =>
            auditFlow(this.o.events, {
              sandbox,
              action: 'dns_query',
              outcome: d.action === 'allow' ? 'succeeded' : d.action === 'deny' ? 'denied' : 'error',
              destination: { name: d.name, port: 53, transport: d.transport },
              rule: d.reason,
              appProtocol: 'dns',
              attributes: { qtype: d.qtype, rcode: d.rcode },
            }),
        }
      },
    }
  }

  /**
   * The names a connection to `ip` may be known by. A TLS SNI or HTTP Host must name that
   * address (by the sandbox's own DNS answer, or by resolving it now): an allowed name on a
   * connection to another address would front for it. Without one, the names the sandbox
   * resolved to this address.
   */
  private async verifiedName(
    sandbox: EgressSandbox,
    ip: string,
    serverName: string | undefined,
  ): Promise<{ names: string[]; refused?: string }> {
    const resolved = sandbox.names.namesOf(ip)
    if (serverName === undefined) return { names: resolved }
    if (parseIp(serverName)) {
      return serverName === ip
        ? { names: resolved }
        : { names: [], refused: `the server name ${serverName} is not the destination ${ip}` }
    }
    if (resolved.includes(serverName)) return { names: [serverName] }
    const ips = await this.o.lookup(serverName).catch(() => [] as string[])
    if (ips.includes(ip)) return { names: [serverName] }
    return {
      names: [],
      refused: `${serverName} does not resolve to ${ip} (a TLS SNI or HTTP Host must name the address it connects to)`,
    }
  }

  private deny(
    socket: net.Socket,
    sniffed: Sniffed | undefined,
    d: Decision,
    base: { sandbox: EgressSandbox; operationId: string; action: 'connect' },
    dst: { address: string; port: number },
    name?: string,
  ): void {
    this.counters.denied++
    auditFlow(this.o.events, {
      ...base,
      outcome: 'denied',
      destination: { ip: dst.address, port: dst.port, transport: 'tcp', ...(name ? { name } : {}) },
      rule: d.reason,
      ...(sniffed?.appProtocol ? { appProtocol: sniffed.appProtocol } : {}),
    })
    if (sniffed?.appProtocol === 'http') {
      const body = JSON.stringify({
        error: 'egress_denied',
        rule: d.reason,
        destination: `${name ?? dst.address}:${dst.port}`,
      })
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      )
      return
    }
    socket.resetAndDestroy()
  }

  /** An allowed connection: piped as it is, or through the HTTP layer where a rule must see requests. */
  private async serve(socket: net.Socket, c: Classified, d: Decision): Promise<void> {
    const route = routeFor(c)
    let bytesOut = 0
    let bytesIn = 0
    let error: string | undefined
    try {
      if (route === 'intercept') await interceptHttp(this, socket, c)
      else if (route === 'http') await plainHttp(this, socket, c)
      else if (route === 'ssh') await sshProxy(this, socket, c)
      else {
        const upstream = await connectUpstream(this, c)
        const counts = await pipeBoth(socket, upstream, c.first)
        bytesOut = counts.out
        bytesIn = counts.in
      }
    } catch (err) {
      crashOnBug(err, this.o.log)
      error = isS0Error(err) ? `${err.code}: ${err.message}` : (err as Error).message
      socket.destroy()
    }
    auditFlow(this.o.events, {
      sandbox: c.sandbox,
      operationId: c.operationId,
      action: 'connect',
      outcome: error ? 'error' : 'succeeded',
      destination: { ip: c.ip, port: c.port, transport: 'tcp', ...(c.name ? { name: c.name } : {}) },
      rule: d.reason,
      ...(c.sniffed.appProtocol ? { appProtocol: c.sniffed.appProtocol } : {}),
      attributes: { route, bytes_out: bytesOut, bytes_in: bytesIn, ...(error ? { error } : {}) },
    })
  }
}

/**
 * The first bytes the client sends, until they classify the connection, sniffBytesMax arrive, or
 * egressSniffTimeoutMs passes in silence (a protocol whose server speaks first).
 */
async function readFirst(socket: net.Socket): Promise<{ sniffed: Sniffed; first: Buffer }> {
  const chunks: Buffer[] = []
  let length = 0
  return new Promise((resolve) => {
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', finish)
      socket.pause()
      const first = Buffer.concat(chunks, length)
      const s = first.length > 0 ? sniff(first) : { needMore: false }
      resolve({ sniffed: { ...s, needMore: false }, first })
    }
    const onData = (b: Buffer): void => {
      chunks.push(b)
      length += b.length
      if (length >= limits.sniffBytesMax || !sniff(Buffer.concat(chunks, length)).needMore) finish()
    }
    const timer = setTimeout(finish, limits.egressSniffTimeoutMs)
    socket.on('data', onData)
    socket.on('end', finish)
    socket.resume()
  })
}
