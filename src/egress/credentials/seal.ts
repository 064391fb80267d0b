// AES-256-GCM sealing of credential specs: a random 96-bit nonce per seal, and the identity of
// the row it is stored in as associated data, so that a sealed value moved to another team,
// name, version or kind does not open.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
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
  const nonce = randomBytes(NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', key.material(), nonce, { authTagLength: TAG_BYTES })
  cipher.setAAD(aad(row))
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return { keyId: key.id, nonce, ciphertext, tag: cipher.getAuthTag() }
}

export function open(key: SecretKey, sealed: Sealed, row: SealedRowIdentity): Buffer {
  const where = `credential source ${row.name} version ${row.version}`
  if (sealed.keyId !== key.id)
    throw new S0Error(
      'credential_decrypt_failed',
      `${where} was sealed with secret key ${sealed.keyId}, not this server's (${key.id}): start the server with the key that wrote it, or write the source again`,
    )
  if (sealed.nonce.length !== NONCE_BYTES || sealed.tag.length !== TAG_BYTES)
    throw new S0Error('credential_decrypt_failed', `${where}: malformed sealed value`)
  const decipher = createDecipheriv('aes-256-gcm', key.material(), sealed.nonce, { authTagLength: TAG_BYTES })
  decipher.setAAD(aad(row))
  decipher.setAuthTag(sealed.tag)
  try {
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()])
  } catch {
    throw new S0Error('credential_decrypt_failed', `${where}: the sealed value does not authenticate`)
  }
}
