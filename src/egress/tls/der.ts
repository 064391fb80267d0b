// Minimal DER (ITU-T X.690) for the certificates tls/x509.ts builds: an encoder for the few types
// X.509 needs, and a reader just deep enough to find fields in a certificate or key we made.
import { assert } from '../../core/assert.js'

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const

/** A tag, its length (short or long form) and the content. */
export function tlv(tag: number, content: Buffer): Buffer {
  assert(Number.isInteger(tag) && tag >= 0 && tag <= 0xff && (tag & 0x1f) !== 0x1f, 'der: one-byte tags only')
  const n = content.length
  if (n < 0x80) return Buffer.concat([Buffer.from([tag, n]), content])
  const len: number[] = []
  for (let x = n; x > 0; x = Math.floor(x / 256)) len.unshift(x & 0xff)
  return Buffer.concat([Buffer.from([tag, 0x80 | len.length, ...len]), content])
}

export function sequence(...items: Buffer[]): Buffer {
  return tlv(TAG.SEQUENCE, Buffer.concat(items))
}

/** SET OF: DER orders the members by their encodings. */
export function setOf(...items: Buffer[]): Buffer {
  return tlv(TAG.SET, Buffer.concat([...items].sort(Buffer.compare)))
}

/** A non-negative INTEGER from its unsigned big-endian bytes (or a safe integer), minimally encoded. */
export function integer(value: Buffer | number): Buffer {
  let bytes: Buffer
  if (typeof value === 'number') {
    assert(Number.isSafeInteger(value) && value >= 0, 'der: integers are non-negative')
    const b: number[] = []
    for (let x = value; x > 0; x = Math.floor(x / 256)) b.unshift(x & 0xff)
    bytes = Buffer.from(b)
  } else {
    bytes = value
  }
  let i = 0
  while (i < bytes.length - 1 && bytes[i] === 0) i++
  let body = bytes.length === 0 ? Buffer.from([0]) : bytes.subarray(i)
  if ((body[0] as number) & 0x80) body = Buffer.concat([Buffer.from([0]), body]) // stays positive
  return tlv(TAG.INTEGER, body)
}

export function boolean(value: boolean): Buffer {
  return tlv(TAG.BOOLEAN, Buffer.from([value ? 0xff : 0x00]))
}

export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number)
  assert(arcs.length >= 2 && arcs.every((a) => Number.isSafeInteger(a) && a >= 0), `der: bad OID ${dotted}`)
  const [a0, a1] = arcs as [number, number]
  assert(a0 <= 2 && (a0 === 2 || a1 < 40), `der: bad OID ${dotted}`)
  const out: number[] = []
  for (const arc of [a0 * 40 + a1, ...arcs.slice(2)]) {
    const base128: number[] = [arc & 0x7f]
    for (let x = Math.floor(arc / 128); x > 0; x = Math.floor(x / 128)) base128.unshift(0x80 | (x & 0x7f))
    out.push(...base128)
  }
  return tlv(TAG.OID, Buffer.from(out))
}

export function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  assert(unusedBits >= 0 && unusedBits < 8 && (bytes.length > 0 || unusedBits === 0), 'der: bad bit string')
  return tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]))
}

export function octetString(bytes: Buffer): Buffer {
  return tlv(TAG.OCTET_STRING, bytes)
}

export function utf8String(s: string): Buffer {
  return tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8'))
}

export function ia5String(s: string): Buffer {
  assert(/^[\x20-\x7e]*$/.test(s), 'der: IA5String takes printable ASCII only')
  return tlv(TAG.IA5_STRING, Buffer.from(s, 'latin1'))
}

/** X.509 Time (RFC 5280 §4.1.2.5): UTCTime through 2049, GeneralizedTime after; whole seconds, UTC. */
export function time(date: Date): Buffer {
  const iso = date.toISOString() // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') // YYYYMMDDHHMMSS
  const year = date.getUTCFullYear()
  assert(year >= 1950 && year <= 9999, 'der: certificate times are 1950..9999')
  if (year < 2050) return tlv(TAG.UTC_TIME, Buffer.from(digits.slice(2) + 'Z', 'latin1'))
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(digits + 'Z', 'latin1'))
}

/** `[n] EXPLICIT`: a constructed context tag around a whole encoding. */
export function explicit(n: number, inner: Buffer): Buffer {
  assert(n >= 0 && n < 31, 'der: context tags 0..30')
  return tlv(0xa0 | n, inner)
}

/** `[n] IMPLICIT` over a primitive type: the context tag replaces the type's own. */
export function implicitPrimitive(n: number, content: Buffer): Buffer {
  assert(n >= 0 && n < 31, 'der: context tags 0..30')
  return tlv(0x80 | n, content)
}

// ---- reading ------------------------------------------------------------------------------------

/** Input that is not the DER we expect (a damaged key or certificate): callers map it to a code. */
export class DerError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'DerError'
  }
}

/** One element: its tag and where its header and content lie in the buffer read. */
export interface Tlv {
  tag: number
  start: number
  contentStart: number
  end: number
}

export function readTlv(buf: Buffer, offset: number, limit = buf.length): Tlv {
  if (offset + 2 > limit) throw new DerError('der: truncated header')
  const tag = buf[offset] as number
  if ((tag & 0x1f) === 0x1f) throw new DerError('der: multi-byte tags are not supported')
  const first = buf[offset + 1] as number
  let len: number
  let contentStart: number
  if (first < 0x80) {
    len = first
    contentStart = offset + 2
  } else {
    const n = first & 0x7f
    if (n === 0 || n > 4) throw new DerError('der: indefinite or oversized length')
    if (offset + 2 + n > limit) throw new DerError('der: truncated length')
    len = 0
    for (let i = 0; i < n; i++) len = len * 256 + (buf[offset + 2 + i] as number)
    contentStart = offset + 2 + n
  }
  const end = contentStart + len
  if (end > limit) throw new DerError('der: content runs past its container')
  return { tag, start: offset, contentStart, end }
}

/** The elements inside a constructed element, in order. */
export function children(buf: Buffer, parent: Tlv): Tlv[] {
  const out: Tlv[] = []
  for (let at = parent.contentStart; at < parent.end;) {
    const t = readTlv(buf, at, parent.end)
    out.push(t)
    at = t.end
  }
  return out
}

export function content(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.contentStart, t.end)
}

export function whole(buf: Buffer, t: Tlv): Buffer {
  return buf.subarray(t.start, t.end)
}

/** The element at `path` (child indexes from the outermost one), checking each tag on the way. */
export function at(buf: Buffer, path: ReadonlyArray<[index: number, tag: number]>): Tlv {
  let cur = readTlv(buf, 0)
  for (const [index, tag] of path) {
    const kids = children(buf, cur)
    const next = kids[index]
    if (next === undefined || next.tag !== tag)
      throw new DerError(`der: no element with tag ${tag} at ${index}`)
    cur = next
  }
  return cur
}
