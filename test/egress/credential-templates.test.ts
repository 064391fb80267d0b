// Value templates (the `{{ .field }}` subset of Go templates), Go durations, and the projections
// of a resolved source for each binding type.
import { describe, expect, it } from 'vitest'
import { isS0Error, type ErrorCode } from '../../src/core/errors.js'
import {
  checkBinding,
  parseGoDurationMs,
  project,
  renderTemplate,
  templateFields,
  type ResolvedCredential,
} from '../../src/egress/credentials/index.js'
import type { CredentialBinding, ProjectionSpec } from '../../src/egress/policy/types.js'
import { generateEd25519 } from '../../src/core/ssh-keygen.js'

function code(fn: () => unknown): ErrorCode | 'no error' {
  try {
    fn()
    return 'no error'
  } catch (err) {
    if (!isS0Error(err)) throw err
    return err.code
  }
}

describe('value templates', () => {
  const fields = { token: 'tok-123', user: 'ann', a_b2: 'x' }

  it('replaces {{ .field }} in every spacing, and leaves other text alone', () => {
    expect(renderTemplate('Bearer {{ .token }}', fields)).toBe('Bearer tok-123')
    expect(renderTemplate('Bearer {{.token}}', fields)).toBe('Bearer tok-123')
    expect(renderTemplate('{{  .user\t}}:{{ .token}}', fields)).toBe('ann:tok-123')
    expect(renderTemplate('{{.a_b2}}{{.a_b2}}', fields)).toBe('xx')
    expect(renderTemplate('no actions } here }}', fields)).toBe('no actions } here }}')
    expect(renderTemplate('', fields)).toBe('')
  })

  it("trims white space as Go's {{- and -}} do", () => {
    expect(renderTemplate('key =  {{- .user -}}  ;', fields)).toBe('key =ann;')
    expect(renderTemplate('a {{- .user }} b', fields)).toBe('aann b')
    expect(renderTemplate('a {{ .user -}}\n b', fields)).toBe('a annb')
  })

  it('lists the fields a template reads', () => {
    expect(templateFields('{{ .user }}:{{ .token }} {{.user}}')).toEqual(['user', 'token'])
  })

  it('refuses everything but field references', () => {
    for (const t of [
      '{{ .token | printf "%s" }}',
      '{{ printf "%s" .token }}',
      '{{ . }}',
      '{{ .a.b }}',
      '{{ index . "x-y" }}',
      '{{/* comment */}}',
      '{{ range . }}x{{ end }}',
      'Bearer {{ .token',
      '{{ $x := .token }}',
      '{{ .9x }}',
    ])
      expect(
        code(() => renderTemplate(t, fields)),
        t,
      ).toBe('credential_template_invalid')
    expect(code(() => renderTemplate('x'.repeat(5000), fields))).toBe('credential_template_invalid')
  })

  it('an unknown field is a typed error naming it, never a value', () => {
    try {
      renderTemplate('Bearer {{ .missing }}', fields)
      expect.unreachable()
    } catch (err) {
      expect(isS0Error(err, 'credential_field_unknown')).toBe(true)
      expect((err as Error).message).toContain('.missing')
      expect((err as Error).message).not.toContain('tok-123')
    }
  })
})

describe('Go durations', () => {
  it('parses what time.ParseDuration parses', () => {
    expect(parseGoDurationMs('30s')).toBe(30_000)
    expect(parseGoDurationMs('5m')).toBe(300_000)
    expect(parseGoDurationMs('1h30m')).toBe(5_400_000)
    expect(parseGoDurationMs('1.5s')).toBe(1_500)
    expect(parseGoDurationMs('250ms')).toBe(250)
    expect(parseGoDurationMs('0')).toBe(0)
    expect(parseGoDurationMs('+2s')).toBe(2_000)
    expect(parseGoDurationMs('1500us')).toBe(1.5)
    expect(parseGoDurationMs('.5m')).toBe(30_000)
  })

  it('refuses anything else', () => {
    for (const bad of ['', '30', 's', '1d', '-5s', '5 m', '1h 30m', 'PT30S', '1e3s'])
      expect(
        code(() => parseGoDurationMs(bad)),
        bad,
      ).toBe('invalid_request')
  })
})

describe('projections', () => {
  const headersSource: ResolvedCredential = {
    name: 'gh',
    version: 3,
    kind: 'static_headers',
    fields: { token: 'tok-123', org: 'acme' },
  }
  const userpass: ResolvedCredential = {
    name: 'proxy',
    version: 1,
    kind: 'static_username_password',
    fields: { username: 'ann', password: 'pw-456' },
  }
  const tls: ResolvedCredential = {
    name: 'mtls',
    version: 1,
    kind: 'static_tls_client_certificate',
    fields: { certificatePem: 'CERT', privateKeyPem: 'KEY', caPem: 'CA' },
  }
  const ssh: ResolvedCredential = {
    name: 'git',
    version: 1,
    kind: 'static_ssh_private_key',
    fields: { privateKeyPem: 'SSHKEY', passphrase: 'pp' },
  }
  const binding = (projection: ProjectionSpec): CredentialBinding => ({
    ref: 'r',
    sourceRef: 's',
    projection,
  })

  it('http_headers renders each header', () => {
    const b = binding({
      type: 'http_headers',
      httpHeaders: {
        headers: [
          { name: 'Authorization', valueTemplate: 'Bearer {{ .token }}' },
          { name: 'X-Org', valueTemplate: '{{.org}}' },
        ],
      },
    })
    expect(project(b, headersSource)).toEqual({
      type: 'http_headers',
      headers: [
        { name: 'Authorization', value: 'Bearer tok-123' },
        { name: 'X-Org', value: 'acme' },
      ],
    })
    // Templates read any kind's fields.
    const basic = binding({
      type: 'http_headers',
      httpHeaders: { headers: [{ name: 'X-User', valueTemplate: '{{ .username }}:{{ .password }}' }] },
    })
    expect(project(basic, userpass)).toEqual({
      type: 'http_headers',
      headers: [{ name: 'X-User', value: 'ann:pw-456' }],
    })
  })

  it('placeholder_substitution renders each replacement with its locations', () => {
    const b = binding({
      type: 'placeholder_substitution',
      placeholderSubstitution: {
        replacements: [
          {
            placeholder: 'S0_PLACEHOLDER_TOKEN',
            valueTemplate: '{{ .token }}',
            locations: ['header', 'body', 'body'],
          },
        ],
      },
    })
    expect(project(b, headersSource)).toEqual({
      type: 'placeholder_substitution',
      replacements: [
        { placeholder: 'S0_PLACEHOLDER_TOKEN', value: 'tok-123', locations: ['header', 'body'] },
      ],
    })
  })

  it('tls_client_certificate, username_password and ssh_proxy hand over their material', () => {
    expect(project(binding({ type: 'tls_client_certificate', tlsClientCertificate: {} }), tls)).toEqual({
      type: 'tls_client_certificate',
      certPem: 'CERT',
      keyPem: 'KEY',
      caPem: 'CA',
    })
    expect(project(binding({ type: 'username_password', usernamePassword: {} }), userpass)).toEqual({
      type: 'username_password',
      username: 'ann',
      password: 'pw-456',
    })
    const sandboxKey = generateEd25519().public
    const sshProxy = {
      sandboxPublicKeys: [sandboxKey],
      upstreamUsername: 'git',
      knownHosts: ['h k v'],
    }
    expect(project(binding({ type: 'ssh_proxy', sshProxy }), ssh)).toEqual({
      type: 'ssh_proxy',
      privateKey: 'SSHKEY',
      passphrase: 'pp',
      upstreamUsername: 'git',
      knownHosts: ['h k v'],
      sandboxPublicKeys: [sandboxKey],
    })
    const notAKey = { ...sshProxy, sandboxPublicKeys: ['ssh-ed25519 AAAA'] }
    expect(code(() => project(binding({ type: 'ssh_proxy', sshProxy: notAKey }), ssh))).toBe(
      'credential_projection_mismatch',
    )
  })

  it('a projection the kind cannot serve, or one without its settings, is a mismatch', () => {
    expect(code(() => project(binding({ type: 'ssh_proxy', sshProxy: {} }), headersSource))).toBe(
      'credential_projection_mismatch',
    )
    expect(code(() => project(binding({ type: 'username_password' }), tls))).toBe(
      'credential_projection_mismatch',
    )
    expect(code(() => project(binding({ type: 'tls_client_certificate' }), ssh))).toBe(
      'credential_projection_mismatch',
    )
    expect(
      code(() => project(binding({ type: 'http_headers', httpHeaders: { headers: [] } }), headersSource)),
    ).toBe('credential_projection_mismatch')
    expect(
      code(() => checkBinding(binding({ type: 'ssh_proxy', sshProxy: { knownHosts: ['x'] } }), ssh.kind)),
    ).toBe('credential_projection_mismatch')
    expect(
      code(() =>
        checkBinding(
          binding({
            type: 'http_headers',
            httpHeaders: { headers: [{ name: 'Bad Name', valueTemplate: 'x' }] },
          }),
          'static_headers',
        ),
      ),
    ).toBe('credential_projection_mismatch')
  })

  it('a header value with a line break is refused (no header smuggling)', () => {
    const b = binding({
      type: 'http_headers',
      httpHeaders: { headers: [{ name: 'X-A', valueTemplate: '{{ .token }}\r\nX-Evil: 1' }] },
    })
    expect(code(() => project(b, headersSource))).toBe('credential_value_invalid')
  })

  it('checkBinding returns the fields the templates read', () => {
    const b = binding({
      type: 'http_headers',
      httpHeaders: {
        headers: [
          { name: 'A', valueTemplate: '{{ .token }}' },
          { name: 'B', valueTemplate: '{{ .org }}-{{ .token }}' },
        ],
      },
    })
    expect(checkBinding(b, 'static_headers')).toEqual(['token', 'org'])
  })
})
