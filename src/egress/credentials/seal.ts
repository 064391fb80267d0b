// AES-256-GCM sealing of credential specs: a random 96-bit nonce per seal, and the identity of
// the row it is stored in as associated data, so that a sealed value moved to another team,
// name, version or kind does not open.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { assert } from '../../core/assert.js'
import { S0Error } from '../../core/errors.js'
import type { SecretKey } from './key.js'

const NONCE_BYTES = 12
const TAG_BYTES = 16
/** Changes only with the layout of the associated data below. */
const AAD_VERSION = 1

export interface Sealed {
  keyId: string
  nonce: Buffer
  ciphertext: Buffer
  tag: Buffer
}

/** What a sealed value is bound to: the row that stores it. */
export interface SealedRowIdentity {
  teamId: string
  name: string
  version: number
  resolverKind: string
}

function aad(row: SealedRowIdentity): Buffer {
  // JSON of an array: unambiguous whatever characters the parts hold.
  return Buffer.from(
    JSON.stringify([
      's0-credential-source',
      AAD_VERSION,
      row.teamId,
      row.name,
      row.version,
      row.resolverKind,
    ]),
  )
}

export function seal(key: SecretKey, plaintext: Buffer, row: SealedRowIdentity): Sealed {
  return sealWith(key, plaintext, aad(row))
}

export function open(key: SecretKey, sealed: Sealed, row: SealedRowIdentity): Buffer {
  return openWith(key, sealed, aad(row), `credential source ${row.name} version ${row.version}`)
}

/**
 * Other secrets of the server (a sandbox's CA key): `context` names what the value is and where
 * it is stored, and is the associated data (its first part must not be `s0-credential-source`).
 */
export function sealBytes(key: SecretKey, plaintext: Buffer, context: readonly string[]): Sealed {
  assert(context[0] !== 's0-credential-source', 'sealBytes context collides with credential sources')
  return sealWith(key, plaintext, Buffer.from(JSON.stringify(context)))
}

export function openBytes(key: SecretKey, sealed: Sealed, context: readonly string[]): Buffer {
  return openWith(key, sealed, Buffer.from(JSON.stringify(context)), context.join(' '))
}

function sealWith(key: SecretKey, plaintext: Buffer, associated: Buffer): Sealed {
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', key.material(), nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(associated)
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return { keyId: key.id, nonce, ciphertext, tag: cipher.getAuthTag() }
}

function openWith(key: SecretKey, sealed: Sealed, associated: Buffer, where: string): Buffer {
  if (sealed.keyId !== key.id)
    throw new S0Error(
      'credential_decrypt_failed',
      `${where} was sealed with secret key ${sealed.keyId}, not this server's (${key.id}): start the server with the key that wrote it, or write the source again`,
    )
  if (sealed.nonce.length !== NONCE_BYTES || sealed.tag.length !== TAG_BYTES)
    throw new S0Error('credential_decrypt_failed', `${where}: malformed sealed value`)
  const decipher = createDecipheriv('aes-256-gcm', key.material(), sealed.nonce, { authTagLength: TAG_BYTES })
  decipher.setAAD(associated)
  decipher.setAuthTag(sealed.tag)
  try {
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()])
  } catch {
    throw new S0Error('credential_decrypt_failed', `${where}: the sealed value does not authenticate`)
  }
}
