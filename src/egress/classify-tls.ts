// The TLS part of the classifier: a ClientHello reassembled from one or more handshake records,
// then its server_name (SNI) and ALPN extensions read with every length checked against its
// container. Nothing here throws on input: a bad length is a verdict.
import { limits } from '../core/limits.js'

/** Record payloads are at most 2^14 bytes (RFC 8446 5.1). */
const RECORD_BYTES_MAX = 16_384
const EXT_SERVER_NAME = 0
const EXT_ALPN = 16

export type TlsSniff =
  | { kind: 'no' }
  | { kind: 'more' }
  | { kind: 'malformed'; why: string }
  | { kind: 'hello'; serverName: string | undefined; alpn: string[] | undefined }

const NO: TlsSniff = { kind: 'no' }
const MORE: TlsSniff = { kind: 'more' }

function malformed(why: string): TlsSniff {
  return { kind: 'malformed', why }
}

/**
 * `b` (already cut to the sniff bound): the records of a ClientHello. `capped` says no more bytes
 * will come, so a hello that does not fit is malformed rather than awaited.
 */
export function sniffTls(b: Buffer, capped: boolean): TlsSniff {
  if (b.length === 0) return MORE
  if (b[0] !== 0x16) return NO
  if (b.length >= 2 && b[1] !== 0x03) return NO
  if (b.length >= 3 && (b[2] as number) > 0x04) return NO
  const tooBig = malformed('ClientHello larger than the sniff bound')
  const pieces: Buffer[] = []
  let collected = 0
  let bodyLen = -1
  let off = 0
  for (;;) {
    if (off + 5 > b.length) return capped ? tooBig : MORE
    if (b[off] !== 0x16) return malformed('a record other than handshake inside the ClientHello')
    if (b[off + 1] !== 0x03) return malformed('bad record version')
    const len = b.readUInt16BE(off + 3)
    if (len === 0 || len > RECORD_BYTES_MAX) return malformed(`record length ${len}`)
    const end = off + 5 + len
    // A record cut short still tells its handshake header; the rest has to wait.
    const piece = b.subarray(off + 5, Math.min(end, b.length))
    pieces.push(piece)
    collected += piece.length
    if (off === 0 && piece.length > 0 && piece[0] !== 0x01) {
      return malformed('the first handshake message is not a ClientHello')
    }
    if (bodyLen === -1 && collected >= 4) {
      bodyLen = Buffer.concat(pieces, collected).readUIntBE(1, 3)
      // It cannot arrive within the bound: say so now rather than wait for it.
      if (4 + bodyLen > limits.sniffBytesMax - 5) return tooBig
    }
    if (bodyLen !== -1 && collected >= 4 + bodyLen) {
      return parseClientHello(Buffer.concat(pieces, collected).subarray(4, 4 + bodyLen))
    }
    if (end > b.length) return capped ? tooBig : MORE
    off = end
  }
}

/** A ClientHello body (after the 4-byte handshake header). */
export function parseClientHello(h: Buffer): TlsSniff {
  let p = 0
  const need = (n: number): boolean => p + n <= h.length
  if (!need(2 + 32 + 1)) return malformed('ClientHello too short')
  if (h[p] !== 0x03) return malformed('bad ClientHello version')
  p += 2 + 32
  const sid = h[p] as number
  p += 1
  if (sid > 32 || !need(sid + 2)) return malformed('bad session id')
  p += sid
  const suites = h.readUInt16BE(p)
  p += 2
  if (suites < 2 || suites % 2 !== 0 || !need(suites + 1)) return malformed('bad cipher suites')
  p += suites
  const comp = h[p] as number
  p += 1
  if (comp < 1 || !need(comp)) return malformed('bad compression methods')
  p += comp
  if (p === h.length) return { kind: 'hello', serverName: undefined, alpn: undefined } // no extensions
  if (!need(2)) return malformed('bad extensions length')
  const extLen = h.readUInt16BE(p)
  p += 2
  if (p + extLen !== h.length) return malformed('extensions do not fill the ClientHello')
  const seen = new Set<number>()
  let serverName: string | undefined
  let alpn: string[] | undefined
  while (p < h.length) {
    if (!need(4)) return malformed('truncated extension')
    const type = h.readUInt16BE(p)
    const len = h.readUInt16BE(p + 2)
    p += 4
    if (!need(len)) return malformed('extension longer than the ClientHello')
    if (seen.has(type)) return malformed(`extension ${type} twice`)
    seen.add(type)
    const body = h.subarray(p, p + len)
    p += len
    if (type === EXT_SERVER_NAME) {
      const r = parseServerName(body)
      if (typeof r !== 'string' || r === '') return malformed(r === '' ? 'empty server_name' : r.why)
      serverName = r
    } else if (type === EXT_ALPN) {
      const r = parseAlpn(body)
      if (!Array.isArray(r)) return malformed(r.why)
      alpn = r
    }
  }
  return { kind: 'hello', serverName, alpn }
}

function parseServerName(b: Buffer): string | { why: string } {
  // An empty server_name extension is what a server sends back, never a client.
  if (b.length < 2 || b.readUInt16BE(0) !== b.length - 2) return { why: 'bad server_name list length' }
  let p = 2
  let host: string | undefined
  while (p < b.length) {
    if (p + 3 > b.length) return { why: 'truncated server_name entry' }
    const type = b[p] as number
    const len = b.readUInt16BE(p + 1)
    p += 3
    if (p + len > b.length) return { why: 'server_name entry longer than its list' }
    if (type === 0) {
      if (host !== undefined) return { why: 'two host names in server_name' }
      const name = b.subarray(p, p + len)
      // Host names are ASCII letters, digits, dots, hyphens and underscores: anything else is
      // refused, not guessed at (NUL bytes, UTF-8, `/`).
      for (const c of name) {
        const ok =
          (c >= 0x61 && c <= 0x7a) ||
          (c >= 0x41 && c <= 0x5a) ||
          (c >= 0x30 && c <= 0x39) ||
          c === 0x2e ||
          c === 0x2d ||
          c === 0x5f
        if (!ok) return { why: 'server_name has a character a host name cannot' }
      }
      host = name.toString('latin1').toLowerCase()
      if (host.endsWith('.')) host = host.slice(0, -1)
      if (host.length > 253) return { why: 'server_name longer than 253 characters' }
    }
    p += len
  }
  return host ?? { why: 'server_name without a host name' }
}

function parseAlpn(b: Buffer): string[] | { why: string } {
  if (b.length < 2 || b.readUInt16BE(0) !== b.length - 2) return { why: 'bad ALPN list length' }
  const out: string[] = []
  let p = 2
  while (p < b.length) {
    const len = b[p] as number
    p += 1
    if (len === 0 || p + len > b.length) return { why: 'bad ALPN protocol length' }
    out.push(b.subarray(p, p + len).toString('latin1'))
    p += len
  }
  if (out.length === 0) return { why: 'empty ALPN list' }
  return out
}
