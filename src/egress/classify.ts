// The protocol of a connection from the first bytes its client sends: TLS (SNI, ALPN), HTTP/1.x
// (Host, CONNECT, absolute-form targets), HTTP/2 prior knowledge, SSH, SOCKS5, MQTT, Redis,
// AMQP, MongoDB, DNS over TCP. Bounded (never more than limits.sniffBytesMax) and total: any input
// gives a verdict, never an exception. Detectors run in a fixed order; one that needs more bytes
// holds back the verdict of those after it.
import { limits } from '../core/limits.js'
import { sniffTls } from './classify-tls.js'
import { isIpLiteral, parseIpv6 } from './policy/ip.js'
import { hostNameProblem } from './policy/names.js'
import type { AppProtocol } from './policy/types.js'

export interface Sniffed {
  appProtocol?: AppProtocol
  /** TLS SNI, or the HTTP request's host (Host header, absolute-form or CONNECT target), lowercase. */
  serverName?: string
  /** TLS ALPN protocols, in the client's order. */
  alpn?: string[]
  /** The client has sent too little to tell yet (never when sniffBytesMax bytes were given). */
  needMore: boolean
  /**
   * Set when the bytes begin like TLS or HTTP but break its rules in a way servers disagree on
   * (two Host headers, a Host that disagrees with the target, a malformed ClientHello): no
   * protocol is reported, and the proxy should deny rather than pass such a flow.
   */
  malformed?: string
}

type Verdict = Sniffed | 'no' | 'more'

const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']
  .concat(['PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH', 'PURGE'])
  .map((m) => `${m} `)
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')
const REDIS_INLINE = new Set(
  (
    'PING AUTH HELLO SELECT INFO ECHO CLIENT QUIT COMMAND GET SET DEL EXISTS KEYS SCAN MGET MSET INCR ' +
    'DECR EXPIRE TTL TYPE FLUSHDB FLUSHALL DBSIZE CONFIG SUBSCRIBE PSUBSCRIBE PUBLISH MONITOR LPUSH ' +
    'RPUSH LPOP RPOP LRANGE HGET HSET HGETALL SADD SMEMBERS ZADD ZRANGE XADD XREAD'
  ).split(' '),
)
const REDIS_WORD_CHARS_MAX = 16
const MONGO_OPCODES = new Set([2013 /* OP_MSG */, 2004 /* OP_QUERY */, 2012 /* OP_COMPRESSED */])
const MONGO_MESSAGE_BYTES_MAX = 48_000_000

/** Whether `b` is a prefix of `full` (so more bytes could make it equal). */
function prefixOf(b: Buffer, full: Buffer | string): boolean {
  const f = typeof full === 'string' ? Buffer.from(full, 'latin1') : full
  const n = Math.min(b.length, f.length)
  return b.subarray(0, n).equals(f.subarray(0, n))
}

function startsWith(b: Buffer, s: string): boolean {
  return b.length >= s.length && b.toString('latin1', 0, s.length) === s
}

function tls(b: Buffer, capped: boolean): Verdict {
  const t = sniffTls(b, capped)
  switch (t.kind) {
    case 'no':
    case 'more':
      return t.kind
    case 'malformed':
      return { needMore: false, malformed: `TLS: ${t.why}` }
    case 'hello': {
      const s: Sniffed = { appProtocol: 'tls', needMore: false }
      if (t.serverName !== undefined) s.serverName = t.serverName
      if (t.alpn !== undefined) s.alpn = t.alpn
      return s
    }
  }
}

function http2(b: Buffer): Verdict {
  if (!prefixOf(b, H2_PREFACE)) return 'no'
  // The authority is in an HPACK-coded HEADERS frame: not read here; the IP's names decide.
  return b.length < H2_PREFACE.length ? 'more' : { appProtocol: 'http', needMore: false }
}

/** The host of an authority (`host`, `host:port`, `[v6]:port`), lowercase, or undefined. */
function authorityHost(a: string): string | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:@[\]]*))(?::[0-9]{0,5})?$/.exec(a)
  if (!m) return undefined
  if (m[1] !== undefined) return parseIpv6(m[1]) === undefined ? undefined : m[1].toLowerCase()
  let host = (m[2] as string).toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (isIpLiteral(host)) return host
  return hostNameProblem(host) === undefined ? host : undefined
}

function http1(b: Buffer, capped: boolean): Verdict {
  const head = b.toString('latin1', 0, Math.min(b.length, 16))
  const method = HTTP_METHODS.find((m) => head.startsWith(m))
  if (method === undefined) {
    return HTTP_METHODS.some((m) => m.startsWith(head)) && !capped ? 'more' : 'no'
  }
  const text = b.toString('latin1')
  const lineEnd = text.indexOf('\r\n')
  const line = lineEnd === -1 ? text : text.slice(0, lineEnd)
  // METHOD SP target SP HTTP/1.x, target of visible ASCII.
  const m = /^([A-Z]+) ([\x21-\x7e]+)(?: (H(?:T(?:T(?:P(?:\/(?:1(?:\.([01])?)?)?)?)?)?)?)?)?$/.exec(line)
  if (!m) return 'no'
  if (lineEnd === -1 || m[4] === undefined) {
    if (lineEnd !== -1) return 'no'
    return capped ? { needMore: false, malformed: 'HTTP: request line longer than the sniff bound' } : 'more'
  }
  const headEnd = text.indexOf('\r\n\r\n', lineEnd)
  const headers = text.slice(lineEnd + 2, headEnd === -1 ? undefined : headEnd + 2)
  if (/(^|[^\r])\n/.test(headers)) return { needMore: false, malformed: 'HTTP: a line ends in LF without CR' }
  if (headEnd === -1) {
    return capped ? { needMore: false, malformed: 'HTTP: headers longer than the sniff bound' } : 'more'
  }
  return httpHead(m[1] as string, m[2] as string, headers)
}

function httpHead(method: string, target: string, headers: string): Sniffed {
  const bad = (why: string): Sniffed => ({ needMore: false, malformed: `HTTP: ${why}` })
  const hosts: string[] = []
  for (const line of headers.split('\r\n')) {
    if (line === '') continue
    if (line.startsWith(' ') || line.startsWith('\t')) return bad('a folded header line')
    const colon = line.indexOf(':')
    if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(line.slice(0, colon)))
      return bad('a malformed header')
    if (line.slice(0, colon).toLowerCase() === 'host') hosts.push(line.slice(colon + 1).trim())
  }
  if (hosts.length > 1) return bad('two Host headers')
  let hostHeader: string | undefined
  if (hosts.length === 1) {
    hostHeader = authorityHost(hosts[0] as string)
    if (hostHeader === undefined) return bad(`Host ${JSON.stringify(hosts[0])} is not a host`)
  }
  // The target's authority wins over Host at the server (RFC 9112 3.2.2): it must agree.
  let targetHost: string | undefined
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(target)
  if (method === 'CONNECT' || absolute) {
    const authority = method === 'CONNECT' ? target : (absolute?.[1] as string)
    targetHost = authorityHost(authority.slice(authority.lastIndexOf('@') + 1))
    if (targetHost === undefined) return bad(`target ${JSON.stringify(target)} has no valid host`)
    if (hostHeader !== undefined && hostHeader !== targetHost)
      return bad('the target and Host name different hosts')
  }
  const s: Sniffed = { appProtocol: 'http', needMore: false }
  const serverName = targetHost ?? hostHeader
  if (serverName !== undefined) s.serverName = serverName
  return s
}

function ssh(b: Buffer): Verdict {
  for (const banner of ['SSH-2.0-', 'SSH-1.99-']) {
    if (startsWith(b, banner)) return { appProtocol: 'ssh', needMore: false }
    if (b.length < banner.length && prefixOf(b, banner)) return 'more'
  }
  return 'no'
}

function socks5(b: Buffer): Verdict {
  if (b[0] !== 0x05) return 'no'
  if (b.length < 2) return 'more'
  const n = b[1] as number
  if (n === 0) return 'no'
  if (b.length < 2 + n) return 'more'
  for (let i = 2; i < 2 + n; i++) if (b[i] === 0xff) return 'no'
  return { appProtocol: 'socks5', needMore: false }
}

function mqtt(b: Buffer): Verdict {
  if (b[0] !== 0x10) return 'no'
  let p = 1
  // Remaining length: 1 to 4 bytes, 7 bits each.
  for (;;) {
    if (p >= b.length) return 'more'
    const c = b[p++] as number
    if ((c & 0x80) === 0) break
    if (p > 4) return 'no'
  }
  for (const [name, levels] of [
    ['\x00\x04MQTT', [4, 5]],
    ['\x00\x06MQIsdp', [3]],
  ] as const) {
    const rest = b.subarray(p)
    if (!prefixOf(rest, name)) continue
    if (rest.length <= name.length) return 'more'
    return (levels as readonly number[]).includes(rest[name.length] as number)
      ? { appProtocol: 'mqtt', needMore: false }
      : 'no'
  }
  return 'no'
}

function amqp(b: Buffer): Verdict {
  // 0-9-1, and 1.0 (plain, TLS, SASL).
  const headers = [
    'AMQP\x00\x00\x09\x01',
    'AMQP\x00\x01\x00\x00',
    'AMQP\x02\x01\x00\x00',
    'AMQP\x03\x01\x00\x00',
  ]
  if (headers.some((h) => startsWith(b, h))) return { appProtocol: 'amqp', needMore: false }
  return b.length < 8 && headers.some((h) => prefixOf(b, h)) ? 'more' : 'no'
}

const RESP_START = /^\*[1-9][0-9]{0,6}\r\n\$[0-9]{1,9}\r\n/
const RESP_PARTIAL = /^\*(?:[1-9][0-9]{0,6}(?:\r(?:\n(?:\$(?:[0-9]{1,9}(?:\r)?)?)?)?)?)?$/
const RESP_START_CHARS_MAX = 24

function redis(b: Buffer): Verdict {
  if (b[0] === 0x2a) {
    // An array of bulk strings: *N\r\n$L\r\n...
    const head = b.toString('latin1', 0, Math.min(b.length, RESP_START_CHARS_MAX))
    if (RESP_START.test(head)) return { appProtocol: 'redis', needMore: false }
    return b.length < RESP_START_CHARS_MAX && RESP_PARTIAL.test(head) ? 'more' : 'no'
  }
  const text = b.toString('latin1', 0, Math.min(b.length, REDIS_WORD_CHARS_MAX + 1))
  const word = /^[A-Za-z]+/.exec(text)?.[0] ?? ''
  if (word.length === 0 || word.length > REDIS_WORD_CHARS_MAX) return 'no'
  const upper = word.toUpperCase()
  if (word.length === text.length) {
    // The word may go on: wait if it could still become a command.
    return [...REDIS_INLINE].some((c) => c.startsWith(upper)) ? 'more' : 'no'
  }
  if (!REDIS_INLINE.has(upper)) return 'no'
  const next = text[word.length]
  if (next !== ' ' && next !== '\r' && next !== '\n') return 'no'
  return b.includes(0x0a) ? { appProtocol: 'redis', needMore: false } : 'more'
}

function dnsTcp(b: Buffer): Verdict {
  if (b.length < 14) return b.length >= 2 && b.readUInt16BE(0) < 17 ? 'no' : 'more'
  const len = b.readUInt16BE(0)
  const flags = b.readUInt16BE(4)
  const query = (flags & 0x8000) === 0 && ((flags >> 11) & 0xf) === 0 && (flags & 0x000f) === 0
  const counts = b.readUInt16BE(6) === 1 && b.readUInt16BE(8) === 0 && b.readUInt16BE(10) === 0
  return len >= 17 && query && counts && b.readUInt16BE(12) <= 1
    ? { appProtocol: 'dns', needMore: false }
    : 'no'
}

function mongodb(b: Buffer): Verdict {
  if (b.length >= 4) {
    const len = b.readInt32LE(0)
    if (len < 21 || len > MONGO_MESSAGE_BYTES_MAX) return 'no'
  }
  if (b.length < 16) return 'more'
  const ok = b.readInt32LE(8) === 0 && MONGO_OPCODES.has(b.readInt32LE(12))
  return ok ? { appProtocol: 'mongodb', needMore: false } : 'no'
}

const NOTHING: Sniffed = Object.freeze({ needMore: false })
/** In order of precedence. */
const DETECTORS: ReadonlyArray<(b: Buffer, capped: boolean) => Verdict> = [
  tls,
  http2,
  http1,
  ssh,
  socks5,
  mqtt,
  amqp,
  redis,
  dnsTcp,
  mongodb,
]

export function sniff(first: Buffer): Sniffed {
  const capped = first.length >= limits.sniffBytesMax
  const b = capped ? first.subarray(0, limits.sniffBytesMax) : first
  if (b.length === 0) return { needMore: true }
  let waiting = false
  for (const detect of DETECTORS) {
    const v = detect(b, capped)
    if (v === 'no') continue
    if (v === 'more') {
      // Capped: it will never get more, so it is a no.
      if (!capped) waiting = true
      continue
    }
    return waiting ? { needMore: true } : v
  }
  return waiting ? { needMore: true } : { ...NOTHING }
}

/** A UDP payload: a DNS query (to any port), or plain `udp`. */
export function sniffDatagram(d: Buffer): AppProtocol {
  if (d.length < 17 || d.length > limits.dnsMessageBytesMax) return 'udp'
  const framed = Buffer.allocUnsafe(2 + Math.min(d.length, 12))
  framed.writeUInt16BE(d.length, 0)
  d.copy(framed, 2, 0, 12)
  const v = dnsTcp(framed)
  return typeof v === 'object' ? 'dns' : 'udp'
}
