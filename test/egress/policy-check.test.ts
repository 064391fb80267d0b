// checkPolicy: what a policy may say, the field path of every refusal, and the normalized copy.
import { describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { limits } from '../../src/core/limits.js'
import { checkPolicy, compilePolicy, goDurationMs } from '../../src/egress/policy/compile.js'
import type { SandboxNetworkPolicy } from '../../src/egress/policy/types.js'

/** A policy using every field, as the SDK would send it. */
function everything(): SandboxNetworkPolicy {
  return {
    mode: 'block-all',
    egress: {
      trafficRules: [
        {
          name: 'github',
          action: 'allow',
          domains: ['*.GitHub.com', 'api.example.org.'],
          ports: [{ port: 443 }],
        },
        {
          action: 'deny',
          cidrs: ['10.0.0.0/8', 'fd00::/8'],
          ports: [{ port: 1, endPort: 1024, protocol: 'UDP' }],
        },
        { action: 'allow', appProtocols: ['ssh', 'dns'] },
      ],
      protocolRules: [
        {
          name: 'api',
          protocol: 'http',
          domains: ['api.example.org'],
          ports: [{ port: 80, protocol: 'tcp' }],
          httpMatch: { methods: ['get'], pathPrefixes: ['/v1/'] },
          http: {
            methods: { denied: ['DELETE'] },
            paths: { deniedPrefixes: ['/admin'], allowedPrefixes: ['/v1/'] },
          },
        },
        {
          protocol: 'mcp',
          tlsMode: 'terminate-reoriginate',
          domains: ['mcp.example.org'],
          mcp: { tools: { allowed: ['search'], denied: ['shell'] } },
        },
      ],
      credentialRules: [
        {
          name: 'gh',
          credentialRef: 'gh-token',
          protocol: 'https',
          tlsMode: 'terminate-reoriginate',
          failurePolicy: 'fail-closed',
          rollout: 'enabled',
          domains: ['api.github.com'],
          ports: [{ port: 443 }],
          httpMatch: {
            methods: ['GET', 'POST'],
            paths: ['/user'],
            pathPrefixes: ['/repos/'],
            query: [{ name: 'per_page', values: ['100'] }],
            headers: [{ name: 'X-Trace', present: false }],
          },
        },
        { credentialRef: 'ssh', protocol: 'ssh', domains: ['git.example.org'] },
      ],
      proxy: { type: 'socks5', address: 'proxy.internal:1080', credentialRef: 'proxy-login' },
    },
    credentialBindings: [
      {
        ref: 'gh-token',
        sourceRef: 'github-source',
        projection: {
          type: 'http_headers',
          httpHeaders: { headers: [{ name: 'Authorization', valueTemplate: 'Bearer {{ .token }}' }] },
        },
        cachePolicy: { ttl: '5m' },
      },
      {
        ref: 'swap',
        sourceRef: 'api-source',
        projection: {
          type: 'placeholder_substitution',
          placeholderSubstitution: {
            replacements: [
              { placeholder: 's0env_token', valueTemplate: '{{.token}}', locations: ['header', 'body'] },
            ],
          },
        },
      },
      {
        ref: 'ssh',
        sourceRef: 'deploy-key',
        projection: {
          type: 'ssh_proxy',
          sshProxy: {
            sandboxPublicKeys: ['ssh-ed25519 AAAA sandbox'],
            upstreamUsername: 'git',
            knownHosts: ['x'],
          },
        },
      },
      {
        ref: 'proxy-login',
        sourceRef: 'proxy-source',
        projection: { type: 'username_password', usernamePassword: {} },
      },
      {
        ref: 'mtls',
        sourceRef: 'cert',
        projection: { type: 'tls_client_certificate', tlsClientCertificate: {} },
      },
    ],
  }
}

function refusal(value: unknown, at?: string): string {
  const before = JSON.stringify(value)
  try {
    checkPolicy(value, at)
  } catch (err) {
    expect(isS0Error(err, 'bad_request'), String(err)).toBe(true)
    // Pure: the refused input is as it was.
    expect(JSON.stringify(value)).toBe(before)
    return (err as Error).message
  }
  throw new Error(`accepted: ${before}`)
}

/** A block-all policy with these egress fields. */
function egress(e: Record<string, unknown>, extra: Record<string, unknown> = {}): unknown {
  return { mode: 'block-all', egress: e, ...extra }
}

describe('checkPolicy accepts', () => {
  it('every field of the SDK model, normalized, without touching its input', () => {
    const input = everything()
    const before = structuredClone(input)
    const out = checkPolicy(input)
    expect(input).toEqual(before)
    const rules = out.egress?.trafficRules ?? []
    expect(rules[0]?.domains).toEqual(['*.github.com', 'api.example.org'])
    expect(rules[1]?.ports).toEqual([{ port: 1, endPort: 1024, protocol: 'udp' }])
    expect(out.credentialBindings?.map((b) => b.ref)).toEqual([
      'gh-token',
      'swap',
      'ssh',
      'proxy-login',
      'mtls',
    ])
    // A normalized policy is a fixed point.
    expect(checkPolicy(out)).toEqual(out)
    expect(compilePolicy(input).policy).toEqual(out)
  })

  it('treats null as absent and keeps empty lists', () => {
    const out = checkPolicy({
      mode: 'allow-all',
      egress: { allowedDomains: null, deniedCidrs: [], proxy: null },
    })
    expect(out).toEqual({ mode: 'allow-all', egress: { deniedCidrs: [] } })
    // Empty legacy lists do not count as legacy lists next to trafficRules.
    expect(() =>
      checkPolicy({
        mode: 'allow-all',
        egress: { deniedCidrs: [], trafficRules: [{ action: 'deny', ports: [{ port: 25 }] }] },
      }),
    ).not.toThrow()
  })

  it('names the field under the path it is given (a template spec)', () => {
    expect(refusal({ mode: 'allow' }, 'spec.network')).toBe(
      'spec.network.mode: "allow" is not one of allow-all, block-all',
    )
  })
})

describe('checkPolicy refuses, naming the field', () => {
  const cases: Array<[string, unknown, string | RegExp]> = [
    ['a missing mode', {}, 'network.mode: is required (allow-all or block-all)'],
    ['an unknown mode', { mode: 'open' }, 'network.mode: "open" is not one of allow-all, block-all'],
    ['a policy that is not an object', [], 'network: must be an object, not []'],
    ['an unknown field', { mode: 'allow-all', egres: {} }, /^network\.egres: is not a field/],
    [
      'a misspelt list',
      egress({ deniedDomain: ['x.com'] }),
      /^network\.egress\.deniedDomain: is not a field/,
    ],
    [
      'a malformed CIDR',
      egress({
        trafficRules: [
          { action: 'allow', domains: ['a.com'] },
          { action: 'allow', domains: ['b.com'] },
          { action: 'allow', cidrs: ['10.0.0.0/33'] },
        ],
      }),
      'network.egress.trafficRules[2].cidrs[0]: "10.0.0.0/33" is not a CIDR (address/prefix-length, IPv4 or IPv6)',
    ],
    [
      'a CIDR without prefix',
      egress({ allowedCidrs: ['1.2.3.4'] }),
      /allowedCidrs\[0\]: .*for one address write 1\.2\.3\.4\/32$/,
    ],
    [
      'a malformed IPv6 CIDR',
      egress({ deniedCidrs: ['fd00::g/8'] }),
      /^network\.egress\.deniedCidrs\[0\]: "fd00::g\/8" is not a CIDR/,
    ],
    [
      'an IPv6 prefix over 128',
      egress({ deniedCidrs: ['::/129'] }),
      /deniedCidrs\[0\]: "::\/129" is not a CIDR/,
    ],
    [
      'a domain with a scheme',
      egress({ allowedDomains: ['https://a.com'] }),
      /allowedDomains\[0\]: .* has a scheme/,
    ],
    ['a domain with a port', egress({ allowedDomains: ['a.com:443'] }), /allowedDomains\[0\]: .* has a port/],
    ['a domain with a path', egress({ allowedDomains: ['a.com/x'] }), /allowedDomains\[0\]: .* has a path/],
    ['an inner wildcard', egress({ allowedDomains: ['a.*.com'] }), /only as its first label/],
    ['a bare wildcard', egress({ allowedDomains: ['*'] }), /is a bare wildcard/],
    ['an address as a domain', egress({ allowedDomains: ['10.0.0.1'] }), /is an IP address \(use cidrs\)/],
    ['an empty label', egress({ allowedDomains: ['a..com'] }), /has an empty label/],
    ['a bad character', egress({ allowedDomains: ['a$b.com'] }), /characters other than/],
    ['a 64-character label', egress({ allowedDomains: [`${'a'.repeat(64)}.com`] }), /label longer than 63/],
    [
      'port 0',
      egress({ allowedPorts: [{ port: 0 }] }),
      'network.egress.allowedPorts[0].port: 0 is not an integer from 1 to 65535',
    ],
    [
      'port 65536',
      egress({ allowedPorts: [{ port: 65_536 }] }),
      /allowedPorts\[0\]\.port: 65536 is not an integer/,
    ],
    [
      'a fractional port',
      egress({ allowedPorts: [{ port: 80.5 }] }),
      /allowedPorts\[0\]\.port: 80\.5 is not an integer/,
    ],
    [
      'a port as text',
      egress({ allowedPorts: [{ port: '80' }] }),
      /allowedPorts\[0\]\.port: "80" is not an integer/,
    ],
    [
      'endPort below port',
      egress({ allowedPorts: [{ port: 90, endPort: 80 }] }),
      'network.egress.allowedPorts[0].endPort: 80 is below port 90',
    ],
    [
      'protocol sctp',
      egress({ deniedPorts: [{ port: 9, protocol: 'sctp' }] }),
      'network.egress.deniedPorts[0].protocol: "sctp" is not tcp or udp',
    ],
    [
      'an unknown app protocol',
      egress({ trafficRules: [{ action: 'allow', appProtocols: ['ftp'] }] }),
      /trafficRules\[0\]\.appProtocols\[0\]: "ftp" is not one of http, tls/,
    ],
    [
      'an unknown action',
      egress({ trafficRules: [{ action: 'permit', ports: [{ port: 1 }] }] }),
      /trafficRules\[0\]\.action: "permit" is not one of allow, deny/,
    ],
    [
      'a rule matching nothing',
      egress({ trafficRules: [{ action: 'deny', domains: [] }] }),
      /trafficRules\[0\]: matches nothing/,
    ],
    [
      'legacy lists with trafficRules',
      egress({ allowedDomains: ['a.com'], trafficRules: [{ action: 'allow', domains: ['b.com'] }] }),
      'network.egress: egress.trafficRules may not be combined with the legacy allowed*/denied* lists (this policy also has allowedDomains)',
    ],
    [
      'two rules of one name',
      egress({
        trafficRules: [
          { name: 'x', action: 'allow', ports: [{ port: 1 }] },
          { name: 'x', action: 'deny', ports: [{ port: 2 }] },
        ],
      }),
      'network.egress.trafficRules[1].name: "x" is used by an earlier rule',
    ],
    [
      'a control character',
      egress({ trafficRules: [{ name: 'a\nb', action: 'allow', ports: [{ port: 1 }] }] }),
      /trafficRules\[0\]\.name: has a control character/,
    ],
    [
      'a credentialRef naming no binding',
      egress({ credentialRules: [{ credentialRef: 'nope' }] }),
      'network.egress.credentialRules[0].credentialRef: "nope" names no credentialBindings[].ref',
    ],
    [
      'a proxy credentialRef naming no binding',
      egress({ proxy: { type: 'socks5', address: '10.0.0.1:1080', credentialRef: 'nope' } }),
      'network.egress.proxy.credentialRef: "nope" names no credentialBindings[].ref',
    ],
    [
      'a proxy address without port',
      egress({ proxy: { type: 'socks5', address: 'proxy' } }),
      /^network\.egress\.proxy\.address: "proxy" is not host:port/,
    ],
    [
      'a proxy port out of range',
      egress({ proxy: { type: 'socks5', address: 'proxy:70000' } }),
      /proxy\.address: .*port 70000/,
    ],
    [
      'a bare IPv6 proxy',
      egress({ proxy: { type: 'socks5', address: 'fd00::1:1080' } }),
      /proxy\.address: .*\[ipv6\]:port/,
    ],
    [
      'an http proxy',
      egress({ proxy: { type: 'http', address: 'p:1' } }),
      'network.egress.proxy.type: "http" is not one of socks5',
    ],
    [
      'a passthrough protocol rule',
      egress({ protocolRules: [{ protocol: 'http', tlsMode: 'passthrough', http: {} }] }),
      /protocolRules\[0\]\.tlsMode: must be terminate-reoriginate/,
    ],
    [
      'an http rule without http',
      egress({ protocolRules: [{ protocol: 'http' }] }),
      'network.egress.protocolRules[0].http: is required for protocol http',
    ],
    [
      'an mcp rule with http',
      egress({ protocolRules: [{ protocol: 'mcp', mcp: {}, http: {} }] }),
      'network.egress.protocolRules[0].http: does not belong to protocol mcp',
    ],
    [
      'an unknown method',
      egress({ protocolRules: [{ protocol: 'http', http: { methods: { denied: ['BREW'] } } }] }),
      /protocolRules\[0\]\.http\.methods\.denied\[0\]: "BREW" is not one of GET/,
    ],
    [
      'a method listed twice',
      egress({ protocolRules: [{ protocol: 'http', http: { methods: { denied: ['GET', 'get'] } } }] }),
      /methods\.denied\[1\]: "get" is listed twice/,
    ],
    [
      'a relative path',
      egress({ protocolRules: [{ protocol: 'http', http: { paths: { denied: ['admin'] } } }] }),
      /paths\.denied\[0\]: "admin" must start with \//,
    ],
    [
      'a udp protocol-rule port',
      egress({ protocolRules: [{ protocol: 'http', http: {}, ports: [{ port: 80, protocol: 'udp' }] }] }),
      /protocolRules\[0\]\.ports\[0\]\.protocol: "udp" is not tcp/,
    ],
  ]
  for (const [what, value, message] of cases) {
    it(what, () => {
      const got = refusal(value)
      if (typeof message === 'string') expect(got).toBe(message)
      else expect(got).toMatch(message)
    })
  }
})

describe('checkPolicy: credential bindings', () => {
  const binding = (projection: unknown, more: Record<string, unknown> = {}): unknown => ({
    mode: 'block-all',
    credentialBindings: [{ ref: 'a', sourceRef: 'src', projection, ...more }],
  })
  const cases: Array<[string, unknown, string | RegExp]> = [
    [
      'an unknown projection',
      binding({ type: 'cookie' }),
      /^network\.credentialBindings\[0\]\.projection\.type: "cookie" is not one of http_headers/,
    ],
    [
      'a missing sub-object',
      binding({ type: 'http_headers' }),
      'network.credentialBindings[0].projection.httpHeaders: is required for type http_headers',
    ],
    [
      "another type's sub-object",
      binding({ type: 'username_password', usernamePassword: {}, sshProxy: {} }),
      'network.credentialBindings[0].projection.sshProxy: does not belong to type username_password',
    ],
    [
      'no headers',
      binding({ type: 'http_headers', httpHeaders: { headers: [] } }),
      /httpHeaders\.headers: must list at least one header/,
    ],
    [
      'a bad header name',
      binding({ type: 'http_headers', httpHeaders: { headers: [{ name: 'A B', valueTemplate: 'x' }] } }),
      /headers\[0\]\.name: "A B" is not a header name/,
    ],
    [
      'a broken template',
      binding({
        type: 'http_headers',
        httpHeaders: { headers: [{ name: 'A', valueTemplate: 'Bearer {{ token }}' }] },
      }),
      /valueTemplate: .* has a \{\{ \}\} that is not \{\{ \.field \}\}/,
    ],
    [
      'an unclosed template',
      binding({
        type: 'http_headers',
        httpHeaders: { headers: [{ name: 'A', valueTemplate: '{{ .token' }] },
      }),
      /valueTemplate: /,
    ],
    [
      'a placeholder without locations',
      binding({
        type: 'placeholder_substitution',
        placeholderSubstitution: { replacements: [{ placeholder: 'p', valueTemplate: 'v', locations: [] }] },
      }),
      /replacements\[0\]\.locations: must list at least one of header, query, body/,
    ],
    [
      'a placeholder twice in one location',
      binding({
        type: 'placeholder_substitution',
        placeholderSubstitution: {
          replacements: [
            { placeholder: 'p', valueTemplate: 'v', locations: ['body'] },
            { placeholder: 'p', valueTemplate: 'w', locations: ['body'] },
          ],
        },
      }),
      /replacements\[1\]\.locations\[0\]: "p" is already replaced in the body/,
    ],
    [
      'an ssh proxy without known hosts',
      binding({ type: 'ssh_proxy', sshProxy: { sandboxPublicKeys: ['k'], upstreamUsername: 'git' } }),
      /sshProxy\.knownHosts: must list/,
    ],
    [
      'an ssh proxy without keys',
      binding({ type: 'ssh_proxy', sshProxy: { upstreamUsername: 'git', knownHosts: ['h'] } }),
      /sshProxy\.sandboxPublicKeys: must list/,
    ],
    [
      'a bad ttl',
      binding({ type: 'username_password', usernamePassword: {} }, { cachePolicy: { ttl: '5 minutes' } }),
      'network.credentialBindings[0].cachePolicy.ttl: "5 minutes" is not a duration such as 30s, 5m or 1h30m',
    ],
    [
      'an empty ref',
      {
        mode: 'block-all',
        credentialBindings: [
          { ref: ' ', sourceRef: 's', projection: { type: 'username_password', usernamePassword: {} } },
        ],
      },
      'network.credentialBindings[0].ref: must not be empty',
    ],
  ]
  for (const [what, value, message] of cases) {
    it(what, () => {
      const got = refusal(value)
      if (typeof message === 'string') expect(got).toBe(message)
      else expect(got).toMatch(message)
    })
  }

  const up = { ref: 'up', sourceRef: 's', projection: { type: 'username_password', usernamePassword: {} } }
  const hdr = {
    ref: 'hdr',
    sourceRef: 's',
    projection: { type: 'http_headers', httpHeaders: { headers: [{ name: 'A', valueTemplate: 'x' }] } },
  }
  const withRule = (rule: unknown, bindings: unknown[] = [up, hdr]): unknown => ({
    mode: 'block-all',
    egress: { credentialRules: [rule] },
    credentialBindings: bindings,
  })

  it('refuses a ref used twice', () => {
    expect(refusal({ mode: 'block-all', credentialBindings: [up, up] })).toBe(
      'network.credentialBindings[1].ref: "up" is used twice',
    )
  })

  it('refuses rules whose protocol the projection cannot serve', () => {
    expect(refusal(withRule({ credentialRef: 'hdr', protocol: 'redis' }))).toMatch(
      /credentialRules\[0\]: protocol redis needs a username_password projection/,
    )
    expect(refusal(withRule({ credentialRef: 'up', protocol: 'tls' }))).toMatch(
      /protocol tls needs tlsMode terminate-reoriginate and a tls_client_certificate/,
    )
    expect(refusal(withRule({ credentialRef: 'up', protocol: 'ssh' }))).toMatch(
      /protocol ssh needs an ssh_proxy projection/,
    )
    expect(refusal(withRule({ credentialRef: 'hdr', protocol: 'https' }))).toMatch(
      /a http_headers projection with protocol https needs tlsMode terminate-reoriginate/,
    )
    expect(refusal(withRule({ credentialRef: 'up', httpMatch: { methods: ['GET'] } }))).toMatch(
      /httpMatch needs protocol http, https or grpc/,
    )
    expect(
      refusal({
        mode: 'block-all',
        egress: { proxy: { type: 'socks5', address: 'p:1', credentialRef: 'hdr' } },
        credentialBindings: [hdr],
      }),
    ).toBe(
      'network.egress.proxy.credentialRef: "hdr" must have a username_password projection, not http_headers',
    )
    // The same rules with what they need are fine.
    expect(() =>
      checkPolicy(withRule({ credentialRef: 'hdr', protocol: 'http', httpMatch: { methods: ['GET'] } })),
    ).not.toThrow()
    expect(() => checkPolicy(withRule({ credentialRef: 'hdr' }))).not.toThrow()
    expect(() => checkPolicy(withRule({ credentialRef: 'up', protocol: 'socks5' }))).not.toThrow()
  })

  it('bounds the size of every list', () => {
    const many = Array.from({ length: limits.egressListEntriesMax + 1 }, (_, i) => `h${i}.example.com`)
    expect(refusal(egress({ allowedDomains: many }))).toBe(
      `network.egress.allowedDomains: has ${many.length} entries; at most ${limits.egressListEntriesMax}`,
    )
  })

  it('reads Go durations', () => {
    expect(goDurationMs('5m')).toBe(300_000)
    expect(goDurationMs('1h30m')).toBe(5_400_000)
    expect(goDurationMs('1.5s')).toBe(1_500)
    expect(goDurationMs('5')).toBeUndefined()
  })
})
