// DNS messages (RFC 1035) read and written. Reading is strict and bounded: every length is
// checked against the packet, names are at most 255 octets, and a compression pointer must point
// before the name (or the previous pointer's target) it appears in, so pointers cannot loop; any
// violation is `dns_message_invalid`. Names inside the RDATA of the RFC 1035 types that allow
// compression (NS, CNAME, SOA, PTR, MX, ...) are decompressed on read, so every record's `data`
// stands alone and is written back verbatim; other RDATA (OPT included) passes through opaque.
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { formatIp } from '../policy/ip.js'

export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, OPT: 41, ANY: 255 }
export const CLASS_IN = 1
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 }
export const FLAG = { QR: 0x8000, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080 }

export interface DnsQuestion {
  /** Presentation form, case kept: labels joined by `.`, `\.` `\\` and `\DDD` escapes; root is ''. */
  name: string
  type: number
  class: number
}

export interface DnsRecord {
  name: string
  type: number
  /** For OPT: the requester's UDP payload size. */
  class: number
  /** For OPT: extended rcode, version and flags. */
  ttl: number
  /** Uncompressed RDATA. */
  data: Buffer
}

export interface DnsMessage {
  id: number
  /** The 16 flag bits: QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode. */
  flags: number
  questions: DnsQuestion[]
  answers: DnsRecord[]
  authorities: DnsRecord[]
  additionals: DnsRecord[]
}

export const opcodeOf = (flags: number): number => (flags >> 11) & 0xf
export const rcodeOf = (flags: number): number => flags & 0xf
const NAME_OCTETS_MAX = 255
const LABEL_OCTETS_MAX = 63
const HEADER_BYTES = 12

function invalid(why: string): never {
  throw new S0Error('dns_message_invalid', `DNS message: ${why}`)
}

function escapeLabel(b: Buffer, start: number, len: number): string {
  let s = ''
  for (let i = start; i < start + len; i++) {
    const c = b[i] as number
    if (c === 0x2e || c === 0x5c) s += `\\${String.fromCharCode(c)}`
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c)
    else s += `\\${c.toString().padStart(3, '0')}`
  }
  return s
}

/** A name at `off`: its text, and where the bytes after it begin (after the first pointer, if any). */
export function readName(b: Buffer, off: number): { name: string; next: number } {
  const labels: string[] = []
  let p = off
  let floor = off
  let next = -1
  let octets = 1
  let hops = 0
  for (;;) {
    if (p >= b.length) invalid('a name runs past the end')
    const len = b[p] as number
    if (len === 0) {
      if (next === -1) next = p + 1
      break
    }
    const kind = len & 0xc0
    if (kind === 0xc0) {
      if (p + 1 >= b.length) invalid('a compression pointer runs past the end')
      const target = ((len & 0x3f) << 8) | (b[p + 1] as number)
      if (next === -1) next = p + 2
      // Strictly before everything this name has read so far: pointers cannot loop.
      if (target >= floor) invalid('a compression pointer does not point backwards')
      if (++hops > limits.dnsCompressionHopsMax) invalid('too many compression pointers')
      floor = target
      p = target
      continue
    }
    if (kind !== 0) invalid('an unknown label type')
    if (p + 1 + len > b.length) invalid('a label runs past the end')
    octets += len + 1
    if (octets > NAME_OCTETS_MAX) invalid('a name longer than 255 octets')
    labels.push(escapeLabel(b, p + 1, len))
    p += 1 + len
  }
  return { name: labels.join('.'), next }
}

/** The wire labels of a presentation-form name. */
export function nameLabels(name: string): Buffer[] {
  if (name === '' || name === '.') return []
  const labels: Buffer[] = []
  let cur: number[] = []
  for (let i = 0; i < name.length; i++) {
    const ch = name[i] as string
    if (ch === '\\') {
      const dec = /^[0-9]{3}/.exec(name.slice(i + 1, i + 4))
      if (dec) {
        const v = Number(dec[0])
        if (v > 255) invalid(`bad escape in ${JSON.stringify(name)}`)
        cur.push(v)
        i += 3
      } else {
        if (i + 1 >= name.length) invalid(`a trailing backslash in ${JSON.stringify(name)}`)
        cur.push(name.charCodeAt(++i))
      }
      continue
    }
    if (ch === '.') {
      labels.push(Buffer.from(cur))
      cur = []
      continue
    }
    const c = name.charCodeAt(i)
    if (c > 0xff) invalid(`a non-ASCII character in ${JSON.stringify(name)}`)
    cur.push(c)
  }
  if (cur.length > 0 || labels.length === 0) labels.push(Buffer.from(cur))
  let octets = 1
  for (const l of labels) {
    if (l.length === 0 || l.length > LABEL_OCTETS_MAX)
      invalid(`a label of ${l.length} octets in ${JSON.stringify(name)}`)
    octets += l.length + 1
  }
  if (octets > NAME_OCTETS_MAX) invalid(`${JSON.stringify(name)} is longer than 255 octets`)
  return labels
}

function nameWire(name: string): Buffer {
  const labels = nameLabels(name)
  const out = Buffer.alloc(labels.reduce((n, l) => n + l.length + 1, 1))
  let p = 0
  for (const l of labels) {
    out[p++] = l.length
    l.copy(out, p)
    p += l.length
  }
  return out
}

/** RDATA layouts whose names may be compressed (RFC 1035; RFC 3597 section 4): 'n' a name, a number fixed bytes. */
const RDATA_NAMES: Record<number, ReadonlyArray<'n' | number>> = {
  2: ['n'], // NS
  3: ['n'], // MD
  4: ['n'], // MF
  5: ['n'], // CNAME
  6: ['n', 'n', 20], // SOA
  7: ['n'], // MB
  8: ['n'], // MG
  9: ['n'], // MR
  12: ['n'], // PTR
  14: ['n', 'n'], // MINFO
  15: [2, 'n'], // MX
}

function readRdata(b: Buffer, type: number, start: number, len: number): Buffer {
  const end = start + len
  const layout = RDATA_NAMES[type]
  if (layout === undefined) return Buffer.from(b.subarray(start, end))
  const parts: Buffer[] = []
  let p = start
  for (const part of layout) {
    if (part === 'n') {
      const { name, next } = readName(b, p)
      if (next > end) invalid('a name runs past its RDATA')
      parts.push(nameWire(name))
      p = next
    } else {
      if (p + part > end) invalid('RDATA too short')
      parts.push(b.subarray(p, p + part))
      p += part
    }
  }
  if (p !== end) invalid('RDATA longer than its contents')
  return Buffer.concat(parts)
}

function readRecords(b: Buffer, p: number, count: number, out: DnsRecord[]): number {
  for (let i = 0; i < count; i++) {
    const { name, next } = readName(b, p)
    if (next + 10 > b.length) invalid('a record runs past the end')
    const type = b.readUInt16BE(next)
    const klass = b.readUInt16BE(next + 2)
    const ttl = b.readUInt32BE(next + 4)
    const len = b.readUInt16BE(next + 8)
    const start = next + 10
    if (start + len > b.length) invalid('RDATA runs past the end')
    out.push({ name, type, class: klass, ttl, data: readRdata(b, type, start, len) })
    p = start + len
  }
  return p
}

export function parseMessage(b: Buffer): DnsMessage {
  if (b.length < HEADER_BYTES) invalid('shorter than a header')
  if (b.length > limits.dnsMessageBytesMax) invalid('longer than 65535 bytes')
  const m: DnsMessage = {
    id: b.readUInt16BE(0),
    flags: b.readUInt16BE(2),
    questions: [],
    answers: [],
    authorities: [],
    additionals: [],
  }
  const qd = b.readUInt16BE(4)
  let p = HEADER_BYTES
  for (let i = 0; i < qd; i++) {
    const { name, next } = readName(b, p)
    if (next + 4 > b.length) invalid('a question runs past the end')
    m.questions.push({ name, type: b.readUInt16BE(next), class: b.readUInt16BE(next + 2) })
    p = next + 4
  }
  p = readRecords(b, p, b.readUInt16BE(6), m.answers)
  p = readRecords(b, p, b.readUInt16BE(8), m.authorities)
  readRecords(b, p, b.readUInt16BE(10), m.additionals)
  return m
}

export function encodeMessage(m: DnsMessage): Buffer {
  const parts: Buffer[] = []
  const header = Buffer.alloc(HEADER_BYTES)
  header.writeUInt16BE(m.id, 0)
  header.writeUInt16BE(m.flags, 2)
  header.writeUInt16BE(m.questions.length, 4)
  header.writeUInt16BE(m.answers.length, 6)
  header.writeUInt16BE(m.authorities.length, 8)
  header.writeUInt16BE(m.additionals.length, 10)
  parts.push(header)
  for (const q of m.questions) {
    const fixed = Buffer.alloc(4)
    fixed.writeUInt16BE(q.type, 0)
    fixed.writeUInt16BE(q.class, 2)
    parts.push(nameWire(q.name), fixed)
  }
  for (const r of [...m.answers, ...m.authorities, ...m.additionals]) {
    if (r.data.length > 0xffff) invalid('RDATA longer than 65535 bytes')
    const fixed = Buffer.alloc(10)
    fixed.writeUInt16BE(r.type, 0)
    fixed.writeUInt16BE(r.class, 2)
    fixed.writeUInt32BE(r.ttl >>> 0, 4)
    fixed.writeUInt16BE(r.data.length, 8)
    parts.push(nameWire(r.name), fixed, r.data)
  }
  const out = Buffer.concat(parts)
  if (out.length > limits.dnsMessageBytesMax) invalid('longer than 65535 bytes')
  return out
}

/** The address of an A or AAAA record, as text (RFC 5952 for IPv6); undefined for others. */
export function recordAddress(r: DnsRecord): string | undefined {
  if (r.type === TYPE.A && r.data.length === 4) return formatIp({ v: 4, n: r.data.readUInt32BE(0) })
  if (r.type === TYPE.AAAA && r.data.length === 16) {
    const n = (r.data.readBigUInt64BE(0) << 64n) | r.data.readBigUInt64BE(8)
    return formatIp({ v: 6, n })
  }
  return undefined
}

/** The name a CNAME, NS or PTR record points to. */
export function recordTarget(r: DnsRecord): string | undefined {
  if (r.type !== TYPE.CNAME && r.type !== TYPE.NS && r.type !== TYPE.PTR) return undefined
  return readName(r.data, 0).name
}

/** An A (4 bytes) or AAAA (16 bytes) record. */
export function addressRecord(name: string, ip: Buffer, ttlS: number): DnsRecord {
  return { name, type: ip.length === 4 ? TYPE.A : TYPE.AAAA, class: CLASS_IN, ttl: ttlS, data: ip }
}
