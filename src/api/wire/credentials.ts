// Credential sources on the wire (camelCase): metadata only. The spec is write-only and has no
// way out of the server.
import type { CredentialSourceInfo } from '../../egress/credentials/index.js'

export function credentialSourceJson(s: CredentialSourceInfo): Record<string, unknown> {
  return {
    name: s.name,
    resolverKind: s.resolverKind,
    currentVersion: s.currentVersion,
    status: s.status,
    createdAt: s.createdAt.toISOString(),
    updatedAt: s.updatedAt.toISOString(),
  }
}
