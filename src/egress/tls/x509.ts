// X.509 v3 certificates for TLS interception, built with tls/der.ts: a per-sandbox CA and the
// short-lived leaves it signs for the names a sandbox connects to. ECDSA P-256 keys, SHA-256
// signatures, random 128-bit serials; the extensions clients check (RFC 5280, CA/B baseline).
import crypto, { type KeyObject } from 'node:crypto'
import net from 'node:net'
import { assert } from '../../core/assert.js'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import * as der from './der.js'

/** A certificate and its private key, both PEM (a CA, or a leaf it issued). */
export interface CertificatePem {
  certPem: string
  keyPem: string
}

/** A CA ready to sign: parsed once, reused for every leaf. */
export interface SigningCa {
  readonly certPem: string
  readonly key: KeyObject
  /** The CA's subject Name, DER: the issuer of every leaf. */
  readonly subject: Buffer
  /** The CA's subjectKeyIdentifier: every leaf's authorityKeyIdentifier. */
  readonly keyId: Buffer
  readonly notAfter: Date
}

/** A server name as a certificate carries it: a DNS name (maybe `*.` wildcard) or an IP address. */
export type SubjectAltName = { kind: 'dns'; name: string } | { kind: 'ip'; name: string; bytes: Buffer }

/** The public half of a key pair as DER SubjectPublicKeyInfo, for a leaf about to be issued. */
export interface LeafKey {
  spkiDer: Buffer
  keyPem: string
}

const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  ecPublicKey: '1.2.840.10045.2.1',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const

/** RFC 5280 ub-common-name. */
const COMMON_NAME_CHARS_MAX = 64
const DNS_NAME_CHARS_MAX = 253
const ORGANIZATION = 's0 egress'
const SIGNATURE_ALGORITHM = der.sequence(der.oid(OID.ecdsaWithSha256))

// ---- names --------------------------------------------------------------------------------------

/**
 * Checks and normalises one server name (an SNI, an authority's host, a destination IP): lower
 * case, no trailing dot, labels of letters, digits, `-` and `_`, an optional leading `*.`; or an
 * IPv4/IPv6 address (brackets allowed). Anything else is `egress_tls_name_invalid`.
 */
export function parseServerName(raw: string): SubjectAltName {
  const unbracketed = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw
  const family = net.isIP(unbracketed)
  if (family === 4) return { kind: 'ip', name: unbracketed, bytes: ipv4Bytes(unbracketed) }
  if (family === 6) {
    const bytes = ipv6Bytes(unbracketed)
    if (bytes !== undefined) return { kind: 'ip', name: unbracketed.toLowerCase(), bytes }
  }
  const name = (raw.endsWith('.') ? raw.slice(0, -1) : raw).toLowerCase()
  const labels = name.split('.')
  const ok =
    name.length > 0 &&
    name.length <= DNS_NAME_CHARS_MAX &&
    labels.every((l, i) => (i === 0 && l === '*' && labels.length > 2) || /^[a-z0-9_-]{1,63}$/.test(l)) &&
    !/^[0-9.]+$/.test(name) // all-numeric but not an address: a malformed IPv4
  if (!ok) {
    throw new S0Error('egress_tls_name_invalid', `not a DNS name or IP address: ${JSON.stringify(raw)}`, {
      details: { serverName: raw.slice(0, DNS_NAME_CHARS_MAX + 2) },
    })
  }
  return { kind: 'dns', name }
}

function ipv4Bytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number))
}

/** The 16 bytes of an IPv6 address (`::` compression and a dotted IPv4 tail); zones are refused. */
export function ipv6Bytes(ip: string): Buffer | undefined {
  if (ip.includes('%')) return undefined
  let text = ip
  const tail: number[] = []
  const lastColon = text.lastIndexOf(':')
  const last = text.slice(lastColon + 1)
  if (last.includes('.')) {
    if (net.isIPv4(last) === false) return undefined
    const v4 = ipv4Bytes(last)
    tail.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number))
    text = text.slice(0, lastColon + 1) + '0:0' // two placeholder groups, replaced below
  }
  const halves = text.split('::')
  if (halves.length > 2) return undefined
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)))
  const head = parse(halves[0] as string)
  const rest = halves.length === 2 ? parse(halves[1] as string) : []
  let groups =
    halves.length === 2
      ? [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest]
      : head
  if (tail.length > 0) groups = [...groups.slice(0, -2), ...tail]
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  return out
}

function distinguishedName(commonName: string | undefined): Buffer {
  const rdn = (type: string, value: string): Buffer =>
    der.setOf(der.sequence(der.oid(type), der.utf8String(value)))
  const rdns = [rdn(OID.organization, ORGANIZATION)]
  if (commonName !== undefined) rdns.push(rdn(OID.commonName, commonName))
  return der.sequence(...rdns)
}

// ---- building -----------------------------------------------------------------------------------

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return der.sequence(der.oid(id), ...(critical ? [der.boolean(true)] : []), der.octetString(value))
}

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
function keyIdentifier(spkiDer: Buffer): Buffer {
  const bits = der.at(spkiDer, [[1, der.TAG.BIT_STRING]])
  return crypto.createHash('sha1').update(der.content(spkiDer, bits).subarray(1)).digest()
}

/** A random positive 128-bit serial (RFC 5280 allows 20 octets; CA/B wants 64 random bits). */
function serialNumber(): Buffer {
  const b = crypto.randomBytes(16)
  b[0] = ((b[0] as number) & 0x7f) | 0x01 // positive, and never zero
  return b
}

interface TbsFields {
  issuer: Buffer
  subject: Buffer
  notBefore: Date
  notAfter: Date
  spkiDer: Buffer
  extensions: Buffer[]
}

function tbsCertificate(f: TbsFields): Buffer {
  return der.sequence(
    der.explicit(0, der.integer(2)), // v3
    der.integer(serialNumber()),
    SIGNATURE_ALGORITHM,
    f.issuer,
    der.sequence(der.time(f.notBefore), der.time(f.notAfter)),
    f.subject,
    f.spkiDer,
    der.explicit(3, der.sequence(...f.extensions)),
  )
}

function certificatePem(tbs: Buffer, signature: Buffer): string {
  const body = der.sequence(tbs, SIGNATURE_ALGORITHM, der.bitString(signature)).toString('base64')
  return `-----BEGIN CERTIFICATE-----\n${body.replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`
}

function newKeyPair(): { spkiDer: Buffer; key: KeyObject; keyPem: string } {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  return {
    spkiDer: publicKey.export({ type: 'spki', format: 'der' }),
    key: privateKey,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  }
}

/**
 * A new self-signed CA: P-256 key, `basicConstraints` CA with path length 0 (it signs leaves
 * only), key usage certificate and CRL signing, valid from an hour ago for `validityMs`.
 */
export function createCa(commonName: string, opts: { now?: Date; validityMs?: number } = {}): CertificatePem {
  assert(commonName.length > 0 && commonName.length <= COMMON_NAME_CHARS_MAX, 'createCa: 1..64 characters')
  const now = opts.now ?? new Date()
  const pair = newKeyPair()
  const name = distinguishedName(commonName)
  const keyId = keyIdentifier(pair.spkiDer)
  const tbs = tbsCertificate({
    issuer: name,
    subject: name,
    notBefore: new Date(now.getTime() - limits.egressCertBackdateMs),
    notAfter: new Date(now.getTime() + (opts.validityMs ?? limits.egressCaValidityMs)),
    spkiDer: pair.spkiDer,
    extensions: [
      extension(OID.basicConstraints, true, der.sequence(der.boolean(true), der.integer(0))),
      // digitalSignature, keyCertSign, cRLSign: bits 0, 5, 6.
      extension(OID.keyUsage, true, der.bitString(Buffer.from([0x86]), 1)),
      extension(OID.subjectKeyIdentifier, false, der.octetString(keyId)),
    ],
  })
  return { certPem: certificatePem(tbs, crypto.sign('sha256', tbs, pair.key)), keyPem: pair.keyPem }
}

/** Parses a CA once for signing; `egress_tls_ca_invalid` when it cannot sign leaves. */
export function loadCa(ca: CertificatePem, now: Date = new Date()): SigningCa {
  const fail = (why: string, cause?: unknown): S0Error =>
    new S0Error('egress_tls_ca_invalid', `egress CA unusable: ${why}`, { cause })
  let cert: crypto.X509Certificate
  let key: KeyObject
  try {
    cert = new crypto.X509Certificate(ca.certPem)
    key = crypto.createPrivateKey(ca.keyPem)
  } catch (err) {
    throw fail('certificate or key does not parse', err)
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw fail('the key is not ECDSA P-256')
  if (!cert.checkPrivateKey(key)) throw fail('the key does not belong to the certificate')
  if (!cert.ca) throw fail('the certificate is not a CA')
  const notAfter = new Date(cert.validTo)
  if (notAfter.getTime() <= now.getTime()) throw fail(`expired on ${cert.validTo}`)
  try {
    const raw = cert.raw
    // Certificate → tbsCertificate → [v0, serial, sigAlg, issuer, validity, subject, spki, [3] exts]
    const subject = der.whole(
      raw,
      der.at(raw, [
        [0, der.TAG.SEQUENCE],
        [5, der.TAG.SEQUENCE],
      ]),
    )
    const spki = der.whole(
      raw,
      der.at(raw, [
        [0, der.TAG.SEQUENCE],
        [6, der.TAG.SEQUENCE],
      ]),
    )
    return { certPem: cert.toString(), key, subject, keyId: caKeyId(raw) ?? keyIdentifier(spki), notAfter }
  } catch (err) {
    throw fail('the certificate is not DER this proxy reads', err)
  }
}

/** The subjectKeyIdentifier extension of a certificate, when it has one. */
function caKeyId(raw: Buffer): Buffer | undefined {
  const tbs = der.at(raw, [[0, der.TAG.SEQUENCE]])
  const exts = der.children(raw, tbs).find((t) => t.tag === 0xa3)
  if (exts === undefined) return undefined
  const list = der.readTlv(raw, exts.contentStart, exts.end)
  for (const ext of der.children(raw, list)) {
    const parts = der.children(raw, ext)
    const id = parts[0]
    const value = parts[parts.length - 1]
    if (id === undefined || value === undefined) continue
    if (!der.whole(raw, id).equals(der.oid(OID.subjectKeyIdentifier))) continue
    const inner = der.readTlv(raw, value.contentStart, value.end)
    return Buffer.from(der.content(raw, inner))
  }
  return undefined
}

/** The to-be-signed part of a leaf for `names` (already parsed; the first one is the subject CN). */
export function leafTbs(
  ca: SigningCa,
  names: readonly SubjectAltName[],
  spkiDer: Buffer,
  opts: { now?: Date; validityMs?: number } = {},
): Buffer {
  assert(names.length > 0 && names.length <= limits.egressLeafNamesMax, 'issueLeaf: 1..16 names')
  const now = opts.now ?? new Date()
  const notAfterMs = Math.min(
    now.getTime() + (opts.validityMs ?? limits.egressLeafValidityMs),
    ca.notAfter.getTime(),
  )
  const first = names[0] as SubjectAltName
  const cn = first.name.length <= COMMON_NAME_CHARS_MAX ? first.name : undefined
  const san = der.sequence(
    ...names.map((n) =>
      n.kind === 'dns'
        ? der.implicitPrimitive(2, Buffer.from(n.name, 'latin1'))
        : der.implicitPrimitive(7, n.bytes),
    ),
  )
  return tbsCertificate({
    issuer: ca.subject,
    subject: distinguishedName(cn),
    notBefore: new Date(now.getTime() - limits.egressCertBackdateMs),
    notAfter: new Date(notAfterMs),
    spkiDer,
    extensions: [
      extension(OID.basicConstraints, true, der.sequence()),
      extension(OID.keyUsage, true, der.bitString(Buffer.from([0x80]), 7)), // digitalSignature
      extension(OID.extKeyUsage, false, der.sequence(der.oid(OID.serverAuth))),
      extension(OID.subjectAltName, cn === undefined, san),
      extension(OID.subjectKeyIdentifier, false, der.octetString(keyIdentifier(spkiDer))),
      extension(OID.authorityKeyIdentifier, false, der.sequence(der.implicitPrimitive(0, ca.keyId))),
    ],
  })
}

/** Signs a leaf's TBS on the libuv pool (ECDSA signing stays off the event loop). */
export function signLeafAsync(ca: SigningCa, tbs: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    crypto.sign('sha256', tbs, ca.key, (err, signature) => {
      if (err) reject(err)
      else resolve(certificatePem(tbs, signature))
    })
  })
}

/**
 * A leaf for `names` (DNS names and IP addresses; the first is also the subject CN), signed by
 * `ca`, with a fresh P-256 key: server authentication only, valid from an hour ago for
 * `validityMs` (never past the CA). Synchronous; tls/leaf-cache.ts issues off the event loop.
 */
export function issueLeaf(
  ca: CertificatePem | SigningCa,
  names: readonly string[],
  opts: { now?: Date; validityMs?: number } = {},
): CertificatePem {
  const signing = 'subject' in ca ? ca : loadCa(ca, opts.now)
  const pair = newKeyPair()
  const tbs = leafTbs(signing, names.map(parseServerName), pair.spkiDer, opts)
  return { certPem: certificatePem(tbs, crypto.sign('sha256', tbs, signing.key)), keyPem: pair.keyPem }
}
