// The sandboxes' DNS server (UDP and TCP on one address): a query is answered for the sandbox its
// source address belongs to, under that sandbox's current policy. A name no flow could be
// allowed to gets NXDOMAIN and never leaves this host (so it cannot carry data out either); the
// hosts file answers next; the rest is forwarded upstream as a query rebuilt from its question
// (nothing else the sandbox wrote goes along), and A/AAAA answers are reported so the
// proxy knows which names an IP was resolved from. Unknown sources get REFUSED, malformed packets
// nothing. Every answered query is audited through the sandbox's callback.
import dgram from 'node:dgram'
import net from 'node:net'
import { crashOnBug } from '../../core/assert.js'
import { isS0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { CompiledPolicy } from '../policy/compile.js'
import { formatIp, ipBytes, parseIp } from '../policy/ip.js'
import { nameDecision } from '../policy/match.js'
import { normalizeName } from '../policy/names.js'
import { HostsFile } from './hosts.js'
import {
  addressRecord,
  CLASS_IN,
  encodeMessage,
  FLAG,
  opcodeOf,
  parseMessage,
  RCODE,
  rcodeOf,
  recordAddress,
  recordTarget,
  TYPE,
  type DnsMessage,
  type DnsRecord,
} from './message.js'
import { defaultUpstream, forward, parseUpstream, type Upstream } from './upstream.js'

/** A DNS decision in the shape of a network_audit event's attributes. */
export interface AuditDecision {
  kind: 'dns'
  /** The queried name, normalized (lowercase, no trailing dot). */
  name: string
  qtype: string
  action: 'allow' | 'deny' | 'error'
  /** The rule (`egress.trafficRules[0] "x"`, `mode block-all`) and, when answered, from where. */
  reason: string
  rcode: string
  transport: 'udp' | 'tcp'
}

export interface ResolverClient {
  /** The sandbox's current policy (looked up per query, so a live change applies at once). */
  policy: CompiledPolicy
  /** A/AAAA addresses `name` resolved to, with the smallest TTL of the records used. */
  onAnswer(name: string, ips: readonly string[], ttlS: number): void
  audit(event: AuditDecision): void
}

export interface ResolverDirectory {
  /** The sandbox that owns a source address, or undefined (the query is REFUSED). */
  lookup(sourceIp: string): ResolverClient | undefined
}

export interface EgressResolverOptions {
  host: string
  /** 0: any free port (the same for UDP and TCP). */
  port: number
  directory: ResolverDirectory
  /** `address[:port]` (S0_EGRESS_RESOLVER); default: the first nameserver of `resolvConf`. */
  upstream?: string
  resolvConf?: string
  /** A hosts-format file consulted before upstream (S0_EGRESS_HOSTS). */
  hostsFile?: string
  hostsCheckIntervalMs?: number
  /** Answer AAAA queries (default false: IPv6 is not routed for sandboxes, so they get none). */
  answerAaaa?: boolean
  upstreamAttemptTimeoutMs?: number
  upstreamAttempts?: number
  log?: Logger
}

const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED']
const TYPE_NAMES = new Map(Object.entries(TYPE).map(([k, v]) => [v, k]))
/** The UDP payload size we advertise in our own OPT records (the DNS flag day 2020 value). */
const EDNS_UDP_BYTES = 1232
const UDP_PLAIN_BYTES = 512
/** The most a client's OPT may ask upstream for (4096: larger UDP answers fragment). */
const EDNS_UDP_BYTES_MAX = 4_096
/** The DO bit of an OPT record's TTL field. */
const DNSSEC_OK = 0x8000
const TCP_QUERIES_IN_FLIGHT_MAX = 16

function typeName(t: number): string {
  return TYPE_NAMES.get(t) ?? `TYPE${t}`
}

function sourceOf(address: string | undefined): string {
  const ip = address === undefined ? undefined : parseIp(address)
  return ip === undefined ? (address ?? '') : formatIp(ip)
}

export class EgressResolver {
  private readonly udp: dgram.Socket
  private readonly tcp: net.Server
  private readonly sockets = new Set<net.Socket>()
  private readonly hosts: HostsFile | undefined
  private readonly aborter = new AbortController()
  private readonly inFlightBySource = new Map<string, number>()
  private inFlight = 0
  private closed = false

  private constructor(
    private readonly opts: EgressResolverOptions,
    private readonly upstream: Upstream,
    sockets: { udp: dgram.Socket; tcp: net.Server },
  ) {
    this.udp = sockets.udp
    this.tcp = sockets.tcp
    this.hosts =
      opts.hostsFile === undefined
        ? undefined
        : new HostsFile(opts.hostsFile, { checkIntervalMs: opts.hostsCheckIntervalMs, log: opts.log })
    this.udp.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo))
    this.udp.on('error', (err) => opts.log?.warn('dns: UDP socket error', { err }))
    this.tcp.on('connection', (sock) => this.onConnection(sock))
    this.tcp.on('error', (err) => opts.log?.warn('dns: TCP server error', { err }))
  }

  static async start(opts: EgressResolverOptions): Promise<EgressResolver> {
    const upstream =
      opts.upstream !== undefined ? parseUpstream(opts.upstream) : await defaultUpstream(opts.resolvConf)
    const family = net.isIPv6(opts.host) ? 'udp6' : 'udp4'
    // With port 0 the UDP port is chosen first; TCP may find it taken, then both try again.
    for (let attempt = 0; ; attempt++) {
      const udp = dgram.createSocket({ type: family })
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject)
        udp.bind({ address: opts.host, port: opts.port, exclusive: true }, () => {
          udp.off('error', reject)
          resolve()
        })
      })
      const port = udp.address().port
      const tcp = net.createServer()
      tcp.maxConnections = limits.dnsTcpConnectionsMax
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject)
          tcp.listen({ host: opts.host, port, exclusive: true }, () => {
            tcp.off('error', reject)
            resolve()
          })
        })
      } catch (err) {
        udp.close()
        if (opts.port !== 0 || attempt >= 4) throw err
        continue
      }
      return new EgressResolver(opts, upstream, { udp, tcp })
    }
  }

  get address(): { host: string; port: number } {
    return { host: this.opts.host, port: this.udp.address().port }
  }

  /**
   * The IPv4 addresses `name` has for this host, as a sandbox would be told (hosts file, then
   * upstream): what the proxy checks a TLS SNI or HTTP Host against. No policy, no audit.
   */
  async lookupAddresses(name: string): Promise<string[]> {
    const normalized = normalizeName(name)
    const entry = this.hosts === undefined ? undefined : await this.hosts.lookup(normalized)
    if (entry !== undefined) return entry.v4.map(formatIp)
    const question = { name: normalized, type: TYPE.A, class: CLASS_IN }
    const query = encodeMessage({
      id: 0,
      flags: FLAG.RD,
      questions: [question],
      answers: [],
      authorities: [],
      additionals: [],
    })
    const { message } = await forward(query, question, {
      upstream: this.upstream,
      transport: 'udp',
      attemptTimeoutMs: this.opts.upstreamAttemptTimeoutMs,
      attempts: this.opts.upstreamAttempts,
      signal: this.aborter.signal,
    })
    return rcodeOf(message.flags) === RCODE.NOERROR ? chainAddresses(normalized, message.answers).ips : []
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.aborter.abort()
    for (const s of this.sockets) s.destroy()
    await Promise.all([
      new Promise<void>((resolve) => this.udp.close(() => resolve())),
      new Promise<void>((resolve) => this.tcp.close(() => resolve())),
    ])
  }

  private failed(err: unknown): void {
    crashOnBug(err, this.opts.log)
    this.opts.log?.warn('dns: query failed', { err })
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.answer(msg, sourceOf(rinfo.address), 'udp').then((reply) => {
      if (reply !== undefined && !this.closed) this.udp.send(reply, rinfo.port, rinfo.address)
    }, this.failed.bind(this))
  }

  private onConnection(sock: net.Socket): void {
    this.sockets.add(sock)
    const source = sourceOf(sock.remoteAddress)
    let buf: Buffer = Buffer.alloc(0)
    let pending = 0
    sock.setTimeout(limits.dnsTcpIdleTimeoutMs, () => sock.destroy())
    sock.on('close', () => this.sockets.delete(sock))
    sock.on('error', () => sock.destroy())
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0)
        if (len === 0) {
          sock.destroy()
          return
        }
        if (buf.length < 2 + len) break
        const msg = Buffer.from(buf.subarray(2, 2 + len))
        buf = buf.subarray(2 + len)
        if (++pending >= TCP_QUERIES_IN_FLIGHT_MAX) sock.pause()
        this.answer(msg, source, 'tcp')
          .then((reply) => {
            if (reply === undefined || sock.destroyed) return
            const frame = Buffer.alloc(2)
            frame.writeUInt16BE(reply.length, 0)
            sock.write(Buffer.concat([frame, reply]))
          }, this.failed.bind(this))
          .finally(() => {
            if (--pending < TCP_QUERIES_IN_FLIGHT_MAX && !sock.destroyed) sock.resume()
          })
      }
    })
  }

  /** The reply to one query, or undefined to send nothing. */
  private async answer(raw: Buffer, source: string, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let query: DnsMessage
    try {
      query = parseMessage(raw)
    } catch (err) {
      if (isS0Error(err, 'dns_message_invalid')) return undefined // malformed: dropped
      throw err
    }
    if ((query.flags & FLAG.QR) !== 0) return undefined
    const client = this.opts.directory.lookup(source)
    if (client === undefined) return this.reply(query, RCODE.REFUSED, [], transport)
    if (opcodeOf(query.flags) !== 0) return this.reply(query, RCODE.NOTIMP, [], transport)
    const q = query.questions[0]
    if (query.questions.length !== 1 || q === undefined)
      return this.reply(query, RCODE.FORMERR, [], transport)
    if (q.class !== CLASS_IN) return this.reply(query, RCODE.NOTIMP, [], transport)
    const name = normalizeName(q.name)
    const audit = (action: AuditDecision['action'], reason: string, rcode: number): void =>
      client.audit({
        kind: 'dns',
        name,
        qtype: typeName(q.type),
        action,
        reason,
        rcode: rcodeName(rcode),
        transport,
      })

    const decision = nameDecision(client.policy, name)
    if (decision.action === 'deny') {
      audit('deny', decision.reason, RCODE.NXDOMAIN)
      return this.reply(query, RCODE.NXDOMAIN, [], transport)
    }
    if (q.type === TYPE.AAAA && !this.opts.answerAaaa) {
      audit('allow', `${decision.reason}; no AAAA: IPv6 is not routed for sandboxes`, RCODE.NOERROR)
      return this.reply(query, RCODE.NOERROR, [], transport)
    }
    const entry = this.hosts === undefined ? undefined : await this.hosts.lookup(name)
    if (entry !== undefined) {
      const ips = q.type === TYPE.A ? entry.v4 : q.type === TYPE.AAAA ? entry.v6 : []
      const ttl = limits.dnsHostsAnswerTtlS
      const records = ips.map((ip) => addressRecord(q.name, ipBytes(ip), ttl))
      if (ips.length > 0) client.onAnswer(name, ips.map(formatIp), ttl)
      audit('allow', `${decision.reason}; hosts file`, RCODE.NOERROR)
      return this.reply(query, RCODE.NOERROR, records, transport)
    }
    return this.forwardFor(client, query, source, transport, (action, reason, rcode) =>
      audit(action, `${decision.reason}; ${reason}`, rcode),
    )
  }

  private async forwardFor(
    client: ResolverClient,
    query: DnsMessage,
    source: string,
    transport: 'udp' | 'tcp',
    audit: (action: AuditDecision['action'], reason: string, rcode: number) => void,
  ): Promise<Buffer | undefined> {
    const mine = this.inFlightBySource.get(source) ?? 0
    if (this.inFlight >= limits.dnsUpstreamInFlightMax || mine >= limits.dnsUpstreamInFlightPerSourceMax) {
      audit('error', 'too many queries in flight', RCODE.SERVFAIL)
      return this.reply(query, RCODE.SERVFAIL, [], transport)
    }
    this.inFlight++
    this.inFlightBySource.set(source, mine + 1)
    try {
      const q = query.questions[0] as DnsMessage['questions'][number]
      const { bytes, message } = await forward(upstreamQuery(query), q, {
        upstream: this.upstream,
        transport,
        attemptTimeoutMs: this.opts.upstreamAttemptTimeoutMs,
        attempts: this.opts.upstreamAttempts,
        signal: this.aborter.signal,
      })
      const rcode = rcodeOf(message.flags)
      if (rcode === RCODE.NOERROR) {
        const found = chainAddresses(q.name, message.answers)
        if (found.ips.length > 0) client.onAnswer(normalizeName(q.name), found.ips, found.ttlS)
      }
      audit('allow', 'upstream', rcode)
      return bytes
    } catch (err) {
      if (this.closed) return undefined
      if (!isS0Error(err)) throw err
      audit('error', err.message, RCODE.SERVFAIL)
      return this.reply(query, RCODE.SERVFAIL, [], transport)
    } finally {
      this.inFlight--
      const left = (this.inFlightBySource.get(source) ?? 1) - 1
      if (left === 0) this.inFlightBySource.delete(source)
      else this.inFlightBySource.set(source, left)
    }
  }

  /** A reply of ours: the question echoed, RD copied, RA set, OPT answered with OPT. */
  private reply(query: DnsMessage, rcode: number, answers: DnsRecord[], transport: 'udp' | 'tcp'): Buffer {
    const opt = query.additionals.find((r) => r.type === TYPE.OPT)
    const flags = FLAG.QR | (query.flags & (0xf << 11)) | (query.flags & FLAG.RD) | FLAG.RA | rcode
    const m: DnsMessage = {
      id: query.id,
      flags,
      questions: query.questions,
      answers,
      authorities: [],
      additionals:
        opt === undefined
          ? []
          : [{ name: '', type: TYPE.OPT, class: EDNS_UDP_BYTES, ttl: 0, data: Buffer.alloc(0) }],
    }
    const out = encodeMessage(m)
    const max = transport === 'tcp' ? limits.dnsMessageBytesMax : Math.max(UDP_PLAIN_BYTES, opt?.class ?? 0)
    if (out.length <= max) return out
    // Too big for the client's UDP buffer: TC set, answers left out; it asks again over TCP.
    return encodeMessage({ ...m, flags: m.flags | FLAG.TC, answers: [] })
  }
}

/**
 * The query as it goes upstream, rebuilt from what was parsed: the question, RD and CD, and an
 * OPT carrying only the payload size and the DO bit. Whatever else the sandbox put in its packet
 * (EDNS options such as client-subnet, extra records) does not leave this host.
 */
export function upstreamQuery(query: DnsMessage): Buffer {
  const opt = query.additionals.find((r) => r.type === TYPE.OPT)
  const CD = 0x0010
  return encodeMessage({
    id: query.id,
    flags: query.flags & (FLAG.RD | CD),
    questions: query.questions,
    answers: [],
    authorities: [],
    additionals:
      opt === undefined
        ? []
        : [
            {
              name: '',
              type: TYPE.OPT,
              class: Math.min(Math.max(opt.class, UDP_PLAIN_BYTES), EDNS_UDP_BYTES_MAX),
              ttl: opt.ttl & DNSSEC_OK,
              data: Buffer.alloc(0),
            },
          ],
  })
}

function rcodeName(rcode: number): string {
  return RCODE_NAMES[rcode] ?? `RCODE${rcode}`
}

/** The A/AAAA addresses `qname` resolves to through the answer's CNAME chain, and their least TTL. */
export function chainAddresses(
  qname: string,
  answers: readonly DnsRecord[],
): { ips: string[]; ttlS: number } {
  const names = new Set([normalizeName(qname)])
  let ttlS = Infinity
  // Each pass follows at least one more CNAME, or stops.
  for (let pass = 0; pass <= answers.length; pass++) {
    const before = names.size
    for (const r of answers) {
      if (r.type !== TYPE.CNAME || !names.has(normalizeName(r.name))) continue
      const target = recordTarget(r)
      if (target !== undefined && !names.has(normalizeName(target))) {
        names.add(normalizeName(target))
        ttlS = Math.min(ttlS, r.ttl)
      }
    }
    if (names.size === before) break
  }
  const ips: string[] = []
  for (const r of answers) {
    const ip = recordAddress(r)
    if (ip === undefined || !names.has(normalizeName(r.name)) || ips.includes(ip)) continue
    ips.push(ip)
    ttlS = Math.min(ttlS, r.ttl)
  }
  return { ips, ttlS: ips.length === 0 ? 0 : ttlS }
}
