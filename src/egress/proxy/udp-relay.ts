// UDP other than DNS: nftables redirects every such datagram of a sandbox to this relay's port.
// A UDP socket has no SO_ORIGINAL_DST, so the destination of a new flow (source address and
// port) is read from the kernel's connection tracking table, where the redirect recorded it.
// The policy decides once per flow (audited); an allowed flow gets a socket of its own connected
// to the destination, and replies go back from the relay's port, which conntrack turns back into
// the destination's address for the sandbox. A flow idle for limits.egressUdpFlowIdleMs ends; a
// live policy change ends the flows it now denies. Denied flows are remembered (so a flood of
// datagrams costs one table read) and dropped silently, as the network would.
import dgram from 'node:dgram'
import { readFile } from 'node:fs/promises'
import { randomUUID } from 'node:crypto'
import type { EventLog } from '../../core/events.js'
import { crashOnBug } from '../../core/assert.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import { decide, type Flow } from '../policy/match.js'
import { auditFlow } from './audit.js'
import { normalizeSource, type EgressDirectory, type EgressSandbox } from './directory.js'

export interface UdpRelayOptions {
  directory: EgressDirectory
  events: EventLog
  /** Why a destination is never allowed (the host, another sandbox, loopback...), or undefined. */
  forbidden(ip: string): string | undefined
  log: Logger
  /** The conntrack table to read (tests of the parser give another file). */
  conntrackFile?: string
}

interface UdpFlow {
  sandbox: EgressSandbox
  source: { address: string; port: number }
  flow: Flow
  allowed: boolean
  outbound: dgram.Socket | undefined
  idle: NodeJS.Timeout
  operationId: string
  bytesOut: number
  bytesIn: number
}

/** The original destination of a redirected UDP flow, from `/proc/net/nf_conntrack` text. */
export function findOriginalUdpDestination(
  table: string,
  source: { address: string; port: number },
  relayPort: number,
): { address: string; port: number } | undefined {
  for (const line of table.split('\n')) {
    if (!line.startsWith('ipv4') || !line.includes(' udp ')) continue
    const src = [...line.matchAll(/\bsrc=(\S+)/g)].map((m) => m[1])
    const dst = [...line.matchAll(/\bdst=(\S+)/g)].map((m) => m[1])
    const sport = [...line.matchAll(/\bsport=(\d+)/g)].map((m) => Number(m[1]))
    const dport = [...line.matchAll(/\bdport=(\d+)/g)].map((m) => Number(m[1]))
    // Original tuple: the sandbox's; reply tuple: from the relay's port back to it.
    if (src[0] !== source.address || sport[0] !== source.port) continue
    if (sport[1] !== relayPort || dst[1] !== source.address || dport[1] !== source.port) continue
    const address = dst[0]
    const port = dport[0]
    if (address === undefined || port === undefined) continue
    return { address, port }
  }
  return undefined
}

export class UdpRelay {
  private readonly flows = new Map<string, UdpFlow>()
  /** New flows whose destination is being looked up: their datagrams wait (bounded). */
  private readonly pending = new Map<string, Buffer[]>()
  private closed = false
  /** Flows since start, by outcome (metrics). */
  readonly counters = { allowed: 0, denied: 0, dropped: 0 }

  private constructor(
    private readonly o: UdpRelayOptions,
    private readonly socket: dgram.Socket,
  ) {
    socket.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo))
    socket.on('error', (err) => o.log.warn('udp relay: socket error', { err }))
    o.directory.onPolicyChange((e) => this.recheck(e))
  }

  static async start(o: UdpRelayOptions, host = '0.0.0.0', port = 0): Promise<UdpRelay> {
    const socket = dgram.createSocket('udp4')
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject)
      socket.bind({ address: host, port, exclusive: true }, () => {
        socket.off('error', reject)
        resolve()
      })
    })
    return new UdpRelay(o, socket)
  }

  get port(): number {
    return this.socket.address().port
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    // Flows end with the relay: their bytes are audited now.
    for (const f of this.flows.values()) this.end(f)
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const source = { address: normalizeSource(rinfo.address), port: rinfo.port }
    const key = `${source.address}:${source.port}`
    const flow = this.flows.get(key)
    if (flow) {
      flow.idle.refresh()
      if (flow.outbound) {
        flow.bytesOut += msg.length
        flow.outbound.send(msg)
      }
      return
    }
    const waiting = this.pending.get(key)
    if (waiting) {
      if (waiting.length < limits.egressUdpPendingDatagramsMax) waiting.push(msg)
      else this.counters.dropped++
      return
    }
    if (this.flows.size + this.pending.size >= limits.egressUdpFlowsMax) {
      this.counters.dropped++
      return
    }
    this.pending.set(key, [msg])
    this.open(key, source).catch((err: unknown) => {
      crashOnBug(err, this.o.log)
      this.o.log.warn('udp relay: flow failed', { err, source })
      this.pending.delete(key)
    })
  }

  private async open(key: string, source: { address: string; port: number }): Promise<void> {
    const sandbox = this.o.directory.lookup(source.address)
    const table = sandbox ? await readFile(this.o.conntrackFile ?? '/proc/net/nf_conntrack', 'utf8') : ''
    const dst = sandbox ? findOriginalUdpDestination(table, source, this.port) : undefined
    const waiting = this.pending.get(key) ?? []
    this.pending.delete(key)
    if (!sandbox || !dst || this.closed) {
      this.counters.dropped += waiting.length
      return
    }
    const flow: Flow = {
      transport: 'udp',
      ip: dst.address,
      port: dst.port,
      names: sandbox.names.namesOf(dst.address),
      appProtocol: 'udp',
    }
    const forbidden = this.o.forbidden(dst.address)
    const decision = forbidden ? { action: 'deny' as const, reason: forbidden } : decide(sandbox.policy, flow)
    const f: UdpFlow = {
      sandbox,
      source,
      flow,
      allowed: decision.action === 'allow',
      outbound: undefined,
      idle: setTimeout(() => this.end(f), limits.egressUdpFlowIdleMs).unref(),
      operationId: randomUUID(),
      bytesOut: 0,
      bytesIn: 0,
    }
    this.flows.set(key, f)
    auditFlow(this.o.events, {
      sandbox,
      action: 'connect',
      outcome: f.allowed ? 'succeeded' : 'denied',
      destination: {
        ip: dst.address,
        port: dst.port,
        transport: 'udp',
        ...(flow.names[0] !== undefined ? { name: flow.names[0] } : {}),
      },
      rule: decision.reason,
      appProtocol: 'udp',
      operationId: f.operationId,
    })
    if (!f.allowed) {
      this.counters.denied++
      return
    }
    this.counters.allowed++
    const out = dgram.createSocket('udp4')
    f.outbound = out
    out.on('error', (err) => {
      this.o.log.debug('udp relay: destination socket error', { err, destination: dst })
      this.end(f)
    })
    out.on('message', (reply) => {
      f.idle.refresh()
      f.bytesIn += reply.length
      if (!this.closed) this.socket.send(reply, source.port, source.address)
    })
    await new Promise<void>((resolve) => out.connect(dst.port, dst.address, () => resolve()))
    for (const m of waiting) {
      f.bytesOut += m.length
      out.send(m)
    }
  }

  /** The flow is over (idle, revoked, closing): an allowed one is audited again with its bytes. */
  private end(f: UdpFlow, revokedBy?: string): void {
    clearTimeout(f.idle)
    const key = `${f.source.address}:${f.source.port}`
    if (this.flows.get(key) !== f) return
    this.flows.delete(key)
    f.outbound?.close()
    f.outbound = undefined
    if (!f.allowed) return
    auditFlow(this.o.events, {
      sandbox: f.sandbox,
      action: revokedBy ? 'revoke' : 'flow_end',
      outcome: revokedBy ? 'denied' : 'succeeded',
      destination: { ip: f.flow.ip, port: f.flow.port, transport: 'udp' },
      rule: revokedBy ?? 'idle',
      appProtocol: 'udp',
      operationId: f.operationId,
      attributes: { bytes_out: f.bytesOut, bytes_in: f.bytesIn },
    })
  }

  /** A policy change: allowed flows it now denies end (audited); denied ones are decided again. */
  private recheck(sandbox: EgressSandbox): void {
    for (const f of [...this.flows.values()]) {
      if (f.sandbox.sandboxId !== sandbox.sandboxId) continue
      if (!f.allowed) {
        this.end(f) // the next datagram is a new flow, decided by the new policy
        continue
      }
      const d = decide(sandbox.policy, f.flow)
      if (d.action === 'allow') continue
      this.end(f, d.reason)
      // Later datagrams of this source port are a new flow: denied (and audited) by the policy.
    }
  }
}
