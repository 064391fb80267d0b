// SSH public keys in the SDK's wire shape (`SSHPublicKey`, snake_case).
import type { SshKeyInfo } from '../../accounts/index.js'
import { iso } from './time.js'

export function sshKeyJson(k: SshKeyInfo): Record<string, unknown> {
  return {
    id: k.id,
    name: k.name,
    public_key: k.publicKey,
    key_type: k.keyType,
    fingerprint_sha256: k.fingerprintSha256,
    ...(k.comment !== null ? { comment: k.comment } : {}),
    created_at: iso(k.createdAt),
    updated_at: iso(k.updatedAt),
  }
}
