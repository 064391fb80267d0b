// What a credential source's write must be (name, kind, exactly the spec member the kind names,
// parseable PEMs, bounded sizes), and the fields each kind offers to value templates. Errors name
// the field and never quote a value: every value here may be a secret.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import ssh2 from 'ssh2'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import {
  RESOLVER_KINDS,
  type CredentialSourceSpec,
  type CredentialSourceWrite,
  type ResolverKind,
} from '../policy/types.js'

/** A source's name: a DNS label (lowercase letters, digits, `-`; up to 63). */
export const CREDENTIAL_SOURCE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** Keys of `staticHeaders.values` (only identifier-like ones are reachable from templates). */
const VALUE_KEY = /^[A-Za-z0-9_.-]+$/

/** The spec member each kind stores. */
export const SPEC_MEMBER: Record<ResolverKind, keyof CredentialSourceSpec> = {
  static_headers: 'staticHeaders',
  static_tls_client_certificate: 'staticTLSClientCertificate',
  static_username_password: 'staticUsernamePassword',
  static_ssh_private_key: 'staticSSHPrivateKey',
}

function invalid(field: string, why: string): S0Error {
  return new S0Error('invalid_request', `${field}: ${why}`, { details: { field } })
}

export function isResolverKind(value: unknown): value is ResolverKind {
  return typeof value === 'string' && (RESOLVER_KINDS as readonly string[]).includes(value)
}

export function checkSourceName(name: unknown, field = 'name'): string {
  if (
    typeof name !== 'string' ||
    name.length > limits.credentialSourceNameCharsMax ||
    !CREDENTIAL_SOURCE_NAME.test(name)
  )
    throw invalid(field, 'must be a DNS label (a-z, 0-9 and -; up to 63 characters)')
  return name
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function onlyKeys(obj: Record<string, unknown>, field: string, allowed: readonly string[]): void {
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) throw invalid(`${field}.${k}`, 'unknown field')
}

function text(
  obj: Record<string, unknown>,
  field: string,
  key: string,
  o: { required: boolean; bytesMax: number; nonBlank?: boolean },
): string | undefined {
  const v = obj[key]
  if (v === undefined || v === null) {
    if (o.required) throw invalid(`${field}.${key}`, 'is required')
    return undefined
  }
  if (typeof v !== 'string') throw invalid(`${field}.${key}`, 'must be a string')
  if (Buffer.byteLength(v) > o.bytesMax)
    throw invalid(`${field}.${key}`, `is longer than ${o.bytesMax} bytes`)
  if (o.nonBlank && v.trim() === '') throw invalid(`${field}.${key}`, 'must not be empty')
  if (v.includes('\0')) throw invalid(`${field}.${key}`, 'must not contain NUL')
  return v
}

/** The PEM blocks of `type` in `pem` (at least one), each parsed by `parse`. */
function pemBlocks<T>(pem: string, field: string, type: string, parse: (block: string) => T): T[] {
  const re = new RegExp(`-----BEGIN ${type}-----[\\s\\S]*?-----END ${type}-----`, 'g')
  const blocks = pem.match(re) ?? []
  if (blocks.length === 0) throw invalid(field, `holds no PEM ${type} block`)
  return blocks.map((b) => {
    try {
      return parse(b)
    } catch {
      throw invalid(field, `is not a valid PEM ${type}`)
    }
  })
}

/**
 * The write, checked and reduced to what is stored: the name, the kind and a spec with exactly
 * the member the kind names. Throws `invalid_request` naming the offending field.
 */
export function checkWrite(write: unknown): CredentialSourceWrite {
  if (!isObject(write)) throw invalid('body', 'must be an object')
  const name = checkSourceName(write['name'])
  const resolverKind = write['resolverKind']
  if (!isResolverKind(resolverKind))
    throw invalid('resolverKind', `must be one of ${RESOLVER_KINDS.join(', ')}`)
  const spec = write['spec']
  if (!isObject(spec)) throw invalid('spec', 'must be an object')
  const member = SPEC_MEMBER[resolverKind]
  const present = Object.keys(spec).filter((k) => spec[k] !== undefined && spec[k] !== null)
  for (const k of present)
    if (!(Object.values(SPEC_MEMBER) as string[]).includes(k)) throw invalid(`spec.${k}`, 'unknown field')
  if (present.length !== 1 || present[0] !== member)
    throw invalid('spec', `a ${resolverKind} source holds exactly one member, spec.${member}`)
  const body = spec[member]
  if (!isObject(body)) throw invalid(`spec.${member}`, 'must be an object')
  const checked = checkMember(resolverKind, body, `spec.${member}`)
  if (Buffer.byteLength(JSON.stringify(checked)) > limits.credentialSpecBytesMax)
    throw invalid('spec', `is larger than ${limits.credentialSpecBytesMax} bytes`)
  return { name, resolverKind, spec: checked }
}

function checkMember(kind: ResolverKind, body: Record<string, unknown>, field: string): CredentialSourceSpec {
  const pem = { required: true, bytesMax: limits.credentialPemBytesMax, nonBlank: true }
  switch (kind) {
    case 'static_headers': {
      onlyKeys(body, field, ['values'])
      const raw = body['values'] ?? {}
      if (!isObject(raw)) throw invalid(`${field}.values`, 'must be a map of strings')
      const keys = Object.keys(raw)
      if (keys.length > limits.credentialHeaderValuesMax)
        throw invalid(`${field}.values`, `holds more than ${limits.credentialHeaderValuesMax} values`)
      // No prototype: a key such as `__proto__` is a key like any other.
      const values = Object.create(null) as Record<string, string>
      for (const k of keys) {
        if (k.length > limits.credentialFieldNameCharsMax || !VALUE_KEY.test(k))
          throw invalid(`${field}.values`, 'keys are letters, digits, `_`, `.` and `-` (up to 128)')
        const v = text(raw, `${field}.values`, k, {
          required: true,
          bytesMax: limits.credentialHeaderValueBytesMax,
        })
        // These values end up in HTTP headers: a line break would split one into two.
        if (/[\r\n]/.test(v as string)) throw invalid(`${field}.values.${k}`, 'must not contain CR or LF')
        values[k] = v as string
      }
      return { staticHeaders: { values } }
    }
    case 'static_username_password': {
      onlyKeys(body, field, ['username', 'password'])
      const o = { required: true, bytesMax: limits.credentialUsernamePasswordBytesMax, nonBlank: true }
      const username = text(body, field, 'username', o) as string
      const password = text(body, field, 'password', o) as string
      return { staticUsernamePassword: { username, password } }
    }
    case 'static_tls_client_certificate': {
      onlyKeys(body, field, ['certificatePem', 'privateKeyPem', 'caPem'])
      const certificatePem = text(body, field, 'certificatePem', pem) as string
      const privateKeyPem = text(body, field, 'privateKeyPem', pem) as string
      const caPem = text(body, field, 'caPem', { ...pem, required: false })
      const certs = pemBlocks(
        certificatePem,
        `${field}.certificatePem`,
        'CERTIFICATE',
        (b) => new X509Certificate(b),
      )
      let key: KeyObject
      try {
        key = createPrivateKey(privateKeyPem)
      } catch {
        throw invalid(`${field}.privateKeyPem`, 'is not an unencrypted PEM private key')
      }
      if (!(certs[0] as X509Certificate).checkPrivateKey(key))
        throw invalid(`${field}.privateKeyPem`, 'does not match the first certificate of certificatePem')
      if (caPem !== undefined && caPem.trim() !== '')
        pemBlocks(caPem, `${field}.caPem`, 'CERTIFICATE', (b) => new X509Certificate(b))
      const out = { certificatePem, privateKeyPem, ...(caPem?.trim() ? { caPem } : {}) }
      return { staticTLSClientCertificate: out }
    }
    case 'static_ssh_private_key': {
      onlyKeys(body, field, ['privateKeyPem', 'passphrase'])
      const privateKeyPem = text(body, field, 'privateKeyPem', pem) as string
      const passphrase = text(body, field, 'passphrase', {
        required: false,
        bytesMax: limits.credentialPassphraseBytesMax,
      })
      // The SSH proxy signs with ssh2, so the key must be one ssh2 reads: OpenSSH format (any
      // type, passphrase or not) or PEM RSA / EC / DSA.
      const parsed = ssh2.utils.parseKey(privateKeyPem, passphrase || undefined)
      const first = Array.isArray(parsed) ? (parsed as unknown[])[0] : parsed
      if (first instanceof Error || !first || (first as { isPrivateKey(): boolean }).isPrivateKey() !== true)
        throw invalid(
          `${field}.privateKeyPem`,
          'is not an SSH private key (OpenSSH format, or PEM RSA/EC/DSA) that opens with the passphrase given',
        )
      return { staticSSHPrivateKey: { privateKeyPem, ...(passphrase ? { passphrase } : {}) } }
    }
  }
}

/**
 * The fields a source offers to value templates (`{{ .field }}`), by kind:
 * - static_headers: each key of `values`;
 * - static_username_password: `username`, `password`;
 * - static_tls_client_certificate: `certificatePem`, `privateKeyPem`, `caPem` (when set);
 * - static_ssh_private_key: `privateKeyPem`, `passphrase` (when set).
 */
export function fieldsOf(kind: ResolverKind, spec: CredentialSourceSpec): Record<string, string> {
  switch (kind) {
    case 'static_headers':
      return { ...(spec.staticHeaders?.values ?? {}) }
    case 'static_username_password': {
      const s = spec.staticUsernamePassword
      return s ? { username: s.username, password: s.password } : {}
    }
    case 'static_tls_client_certificate': {
      const s = spec.staticTLSClientCertificate
      if (!s) return {}
      return {
        certificatePem: s.certificatePem,
        privateKeyPem: s.privateKeyPem,
        ...(s.caPem ? { caPem: s.caPem } : {}),
      }
    }
    case 'static_ssh_private_key': {
      const s = spec.staticSSHPrivateKey
      if (!s) return {}
      return { privateKeyPem: s.privateKeyPem, ...(s.passphrase ? { passphrase: s.passphrase } : {}) }
    }
  }
}
