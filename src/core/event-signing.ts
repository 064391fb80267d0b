// Event integrity (Sandbox0's `ed25519-sha256-v1`): every stored event is signed by the server
// that wrote it, so an exported range can be checked offline against the server's public key and
// any edit of a row in Postgres shows as `invalid`. The signed payload is the event's canonical
// JSON (keys sorted at every level, no whitespace, times as ISO-8601 with milliseconds) with the
// `integrity` member left out; `payload_hash` is the hex SHA-256 of those bytes and `signature`
// the base64 Ed25519 signature of the 32-byte hash. FORMAT.md documents the payload.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from './errors.js'
import { readOrCreatePrivateFile } from './private-file.js'

export const EVENT_SIGNATURE_ALGORITHM = 'ed25519-sha256-v1'
/** Under the state directory: the 32-byte Ed25519 seed, mode 0600, created on first start. */
export const EVENT_SIGNING_KEY_FILE = 'events-signing.key'

// DER prefixes that wrap a raw 32-byte Ed25519 seed / public point (RFC 8410).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

export type SignatureStatus = 'verified' | 'invalid' | 'unavailable'

export interface Integrity {
  algorithm: typeof EVENT_SIGNATURE_ALGORITHM
  payload_hash: string
  signature: string
  signing_key_id: string
}

/** JSON with keys sorted at every level; undefined members dropped as JSON.stringify does. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null'
  if (value instanceof Date) return JSON.stringify(value.toISOString())
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
}

export function payloadHash(payload: unknown): Buffer {
  return createHash('sha256').update(canonicalJson(payload), 'utf8').digest()
}

/** A public key that verifies events: its id and the raw 32-byte point. */
export class EventVerifier {
  readonly id: string
  private readonly key: KeyObject

  constructor(readonly publicKey: Buffer) {
    if (publicKey.length !== 32) throw new S0Error('invalid_request', 'an Ed25519 public key is 32 bytes')
    this.key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
    this.id = keyId(publicKey)
  }

  /** `payload` is the event without `integrity`. */
  check(payload: unknown, integrity: Integrity): SignatureStatus {
    if (integrity.algorithm !== EVENT_SIGNATURE_ALGORITHM || integrity.signing_key_id !== this.id)
      return 'unavailable'
    const hash = payloadHash(payload)
    if (hash.toString('hex') !== integrity.payload_hash) return 'invalid'
    const signature = Buffer.from(integrity.signature, 'base64')
    return signature.length === 64 && verify(null, hash, this.key, signature) ? 'verified' : 'invalid'
  }
}

/** Checks events against every key it knows (the current one and any kept from before). */
export class EventKeyring {
  private readonly byId = new Map<string, EventVerifier>()

  constructor(verifiers: EventVerifier[]) {
    for (const v of verifiers) this.byId.set(v.id, v)
  }

  check(payload: unknown, integrity: Integrity | null): SignatureStatus {
    if (!integrity) return 'unavailable'
    const v = this.byId.get(integrity.signing_key_id)
    return v ? v.check(payload, integrity) : 'unavailable'
  }
}

export class EventSigner {
  readonly verifier: EventVerifier

  private constructor(private readonly key: KeyObject) {
    const der = createPublicKey(key).export({ format: 'der', type: 'spki' })
    this.verifier = new EventVerifier(der.subarray(SPKI_PREFIX.length))
  }

  get keyId(): string {
    return this.verifier.id
  }

  static fromSeed(seed: Buffer): EventSigner {
    if (seed.length !== 32) throw new S0Error('config_invalid', 'an Ed25519 signing key is a 32-byte seed')
    return new EventSigner(
      createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' }),
    )
  }

  /** A key that lives as long as the process (tests, benches that sign nothing they keep). */
  static ephemeral(): EventSigner {
    return new EventSigner(generateKeyPairSync('ed25519').privateKey)
  }

  /** The server's key, `<stateDir>/events-signing.key`, created on first use. */
  static async load(stateDir: string): Promise<EventSigner> {
    await mkdir(stateDir, { recursive: true, mode: 0o700 })
    const file = path.join(stateDir, EVENT_SIGNING_KEY_FILE)
    const seed = await readOrCreatePrivateFile(file, () => {
      const der = generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' })
      return der.subarray(PKCS8_PREFIX.length)
    })
    if (seed.length !== 32) throw new S0Error('config_invalid', `${file} must hold a 32-byte Ed25519 seed`)
    return EventSigner.fromSeed(seed)
  }

  /** `payload` is the event without `integrity`. */
  sign(payload: unknown): Integrity {
    const hash = payloadHash(payload)
    return {
      algorithm: EVENT_SIGNATURE_ALGORITHM,
      payload_hash: hash.toString('hex'),
      signature: sign(null, hash, this.key).toString('base64'),
      signing_key_id: this.keyId,
    }
  }
}

function keyId(publicKey: Buffer): string {
  return createHash('sha256').update(publicKey).digest('hex').slice(0, 16)
}
