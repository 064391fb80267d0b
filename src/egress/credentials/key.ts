// The server secret key that seals credential sources: 32 random bytes in <stateDir>/secret.key
// (created once with mode 0600, refused when anyone but the owner may read it), or S0_SECRET_KEY,
// which wins. The key never leaves this module's objects in a printable form.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { inspect } from 'node:util'
import { S0Error } from '../../core/errors.js'
import { readOrCreatePrivateFile } from '../../core/private-file.js'

export { readOrCreatePrivateFile }

export const SECRET_KEY_FILE = 'secret.key'
export const SECRET_KEY_BYTES = 32

/** A 32-byte key. Printing, inspecting or serialising it shows only its id. */
export class SecretKey {
  readonly #bytes: Buffer
  /** A short, non-secret name of the key (a hash of it), stored beside what it seals. */
  readonly id: string

  private constructor(bytes: Buffer) {
    if (bytes.length !== SECRET_KEY_BYTES)
      throw new S0Error('config_invalid', `a secret key must be ${SECRET_KEY_BYTES} bytes`)
    this.#bytes = Buffer.from(bytes)
    this.id = createHash('sha256').update('s0 secret key id\0').update(bytes).digest('hex').slice(0, 16)
  }

  static fromBytes(bytes: Buffer): SecretKey {
    return new SecretKey(bytes)
  }

  static generate(): SecretKey {
    return new SecretKey(randomBytes(SECRET_KEY_BYTES))
  }

  /** The key material, for the cipher only (seal.ts). */
  material(): Buffer {
    return this.#bytes
  }

  toString(): string {
    return `[SecretKey ${this.id}]`
  }

  toJSON(): string {
    return this.toString()
  }

  [inspect.custom](): string {
    return this.toString()
  }
}

/**
 * The server's key: `envValue` (S0_SECRET_KEY: 64 hex digits or base64 of 32 bytes) when set,
 * otherwise `<stateDir>/secret.key`, created on first use.
 */
export async function loadSecretKey(opts: {
  stateDir: string
  envValue?: string | undefined
}): Promise<SecretKey> {
  if (opts.envValue !== undefined && opts.envValue !== '')
    return SecretKey.fromBytes(parseKeyText(opts.envValue))
  await mkdir(opts.stateDir, { recursive: true, mode: 0o700 })
  const bytes = await readOrCreatePrivateFile(path.join(opts.stateDir, SECRET_KEY_FILE), () =>
    randomBytes(SECRET_KEY_BYTES),
  )
  if (bytes.length !== SECRET_KEY_BYTES)
    throw new S0Error(
      'config_invalid',
      `${path.join(opts.stateDir, SECRET_KEY_FILE)} must hold exactly ${SECRET_KEY_BYTES} bytes (it holds ${bytes.length})`,
    )
  return SecretKey.fromBytes(bytes)
}

/** S0_SECRET_KEY's value; the error never repeats it. */
function parseKeyText(text: string): Buffer {
  const t = text.trim()
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex')
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(t)) {
    const bytes = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64')
    if (bytes.length === SECRET_KEY_BYTES) return bytes
  }
  throw new S0Error(
    'config_invalid',
    `S0_SECRET_KEY must be ${SECRET_KEY_BYTES} bytes written as 64 hex digits or base64 (e.g. \`openssl rand -base64 32\`)`,
  )
}
