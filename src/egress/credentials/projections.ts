// A resolved source turned into what the proxy applies, per a binding's projection:
// http_headers (headers to set), placeholder_substitution (what to swap where),
// tls_client_certificate, username_password (SOCKS5 login) and ssh_proxy (SSH re-origination).
import ssh2 from 'ssh2'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { CredentialBinding, ProjectionType, ResolverKind } from '../policy/types.js'
import { renderTemplate, templateFields } from './template.js'

/** A source's current version, decrypted: what templates and projections read. */
export interface ResolvedCredential {
  name: string
  version: number
  kind: ResolverKind
  /** The fields templates may name (spec.ts fieldsOf lists them per kind). */
  fields: Readonly<Record<string, string>>
}

export type PlaceholderLocation = 'header' | 'query' | 'body'

export type Projection =
  | { type: 'http_headers'; headers: Array<{ name: string; value: string }> }
  | {
      type: 'placeholder_substitution'
      replacements: Array<{ placeholder: string; value: string; locations: PlaceholderLocation[] }>
    }
  | { type: 'tls_client_certificate'; certPem: string; keyPem: string; caPem?: string }
  | { type: 'username_password'; username: string; password: string }
  | {
      type: 'ssh_proxy'
      privateKey: string
      passphrase?: string
      /** Unset: the name the sandbox logs in with. */
      upstreamUsername?: string
      knownHosts: string[]
      sandboxPublicKeys: string[]
    }

/**
 * Which kinds serve which projection: templates (headers, placeholders) read any kind's fields;
 * the structured projections need the kind that holds their material.
 */
const SERVED_BY: Record<ProjectionType, readonly ResolverKind[] | 'any'> = {
  http_headers: 'any',
  placeholder_substitution: 'any',
  tls_client_certificate: ['static_tls_client_certificate'],
  username_password: ['static_username_password'],
  ssh_proxy: ['static_ssh_private_key'],
}

export function projectionServedBy(type: ProjectionType, kind: ResolverKind): boolean {
  const kinds = SERVED_BY[type]
  return kinds === 'any' || kinds.includes(kind)
}

/** RFC 9110 token: what a header name may be. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const LOCATIONS: readonly PlaceholderLocation[] = ['header', 'query', 'body']

function mismatch(binding: CredentialBinding, why: string): S0Error {
  return new S0Error('credential_projection_mismatch', `binding ${binding.ref}: ${why}`, {
    details: { ref: binding.ref, sourceRef: binding.sourceRef, projection: binding.projection.type },
  })
}

/**
 * What can be checked without the secret (when a policy is stored): the projection has its
 * settings, fits the kind, and its templates parse. Returns the fields the templates read.
 */
export function checkBinding(binding: CredentialBinding, kind: ResolverKind): string[] {
  const p = binding.projection
  if (!projectionServedBy(p.type, kind))
    throw mismatch(binding, `a ${p.type} projection cannot be served by a ${kind} source`)
  const fields: string[] = []
  if (p.type === 'http_headers') {
    const headers = p.httpHeaders?.headers ?? []
    if (headers.length === 0) throw mismatch(binding, 'http_headers needs httpHeaders.headers')
    for (const h of headers) {
      if (!HEADER_NAME.test(h.name)) throw mismatch(binding, `${JSON.stringify(h.name)} is not a header name`)
      fields.push(...templateFields(h.valueTemplate))
    }
  }
  if (p.type === 'placeholder_substitution') {
    const reps = p.placeholderSubstitution?.replacements ?? []
    if (reps.length === 0) throw mismatch(binding, 'placeholder_substitution needs replacements')
    for (const r of reps) {
      if (r.placeholder === '') throw mismatch(binding, 'a placeholder must not be empty')
      if (r.locations.length === 0 || r.locations.some((l) => !LOCATIONS.includes(l)))
        throw mismatch(binding, 'locations are one or more of header, query, body')
      fields.push(...templateFields(r.valueTemplate))
    }
  }
  if (p.type === 'ssh_proxy') {
    // Without either list nothing could log in, or nothing could be verified: refuse it now.
    const keys = p.sshProxy?.sandboxPublicKeys ?? []
    const known = p.sshProxy?.knownHosts ?? []
    if (keys.length === 0 || keys.length > limits.sshSandboxPublicKeysMax)
      throw mismatch(
        binding,
        `ssh_proxy needs 1 to ${limits.sshSandboxPublicKeysMax} sshProxy.sandboxPublicKeys`,
      )
    keys.forEach((k, i) => {
      const parsed = ssh2.utils.parseKey(k.trim())
      if (parsed instanceof Error || Array.isArray(parsed) || parsed.isPrivateKey())
        throw mismatch(binding, `sshProxy.sandboxPublicKeys[${i}] is not an OpenSSH public key line`)
    })
    if (known.length === 0 || known.length > limits.sshKnownHostsLinesMax)
      throw mismatch(
        binding,
        `ssh_proxy needs 1 to ${limits.sshKnownHostsLinesMax} sshProxy.knownHosts lines`,
      )
  }
  return [...new Set(fields)]
}

/** The binding's projection of `cred` (the binding must name `cred`'s source). */
export function project(binding: CredentialBinding, cred: ResolvedCredential): Projection {
  checkBinding(binding, cred.kind)
  const p = binding.projection
  const f = cred.fields
  switch (p.type) {
    case 'http_headers':
      return {
        type: 'http_headers',
        headers: (p.httpHeaders?.headers ?? []).map((h) => {
          const value = renderTemplate(h.valueTemplate, f)
          // A line break would smuggle a second header (or a body) into the request.
          if (/[\r\n\0]/.test(value))
            throw new S0Error(
              'credential_value_invalid',
              `binding ${binding.ref}: header ${h.name} would hold CR, LF or NUL`,
            )
          return { name: h.name, value }
        }),
      }
    case 'placeholder_substitution':
      return {
        type: 'placeholder_substitution',
        replacements: (p.placeholderSubstitution?.replacements ?? []).map((r) => ({
          placeholder: r.placeholder,
          value: renderTemplate(r.valueTemplate, f),
          locations: [...new Set(r.locations)],
        })),
      }
    case 'tls_client_certificate':
      return {
        type: 'tls_client_certificate',
        certPem: f['certificatePem'] as string,
        keyPem: f['privateKeyPem'] as string,
        ...(f['caPem'] ? { caPem: f['caPem'] } : {}),
      }
    case 'username_password':
      return {
        type: 'username_password',
        username: f['username'] as string,
        password: f['password'] as string,
      }
    case 'ssh_proxy': {
      const s = p.sshProxy ?? {}
      return {
        type: 'ssh_proxy',
        privateKey: f['privateKeyPem'] as string,
        ...(f['passphrase'] ? { passphrase: f['passphrase'] } : {}),
        ...(s.upstreamUsername ? { upstreamUsername: s.upstreamUsername } : {}),
        knownHosts: [...(s.knownHosts ?? [])],
        sandboxPublicKeys: [...(s.sandboxPublicKeys ?? [])],
      }
    }
  }
}
