// protocolRules (HTTP methods and paths, MCP tools) and credentialRules: which apply, and what
// they decide, including the request spellings that try to slip past a path rule.
import { describe, expect, it } from 'vitest'
import { limits } from '../../src/core/limits.js'
import { compilePolicy, type CompiledPolicy } from '../../src/egress/policy/compile.js'
import {
  checkHttp,
  checkMcp,
  credentialRuleForRequest,
  credentialRulesFor,
  hasDuplicateKeys,
  matchesHttp,
  needsTermination,
  pathForms,
  protocolRuleFor,
  protocolRulesFor,
} from '../../src/egress/policy/protocol-rules.js'

function policy(): CompiledPolicy {
  return compilePolicy({
    mode: 'block-all',
    egress: {
      trafficRules: [{ action: 'allow', domains: ['*.example.com'] }],
      protocolRules: [
        {
          name: 'readonly-v1',
          protocol: 'http',
          domains: ['api.example.com'],
          httpMatch: { pathPrefixes: ['/v1/'] },
          http: {
            methods: { allowed: ['GET', 'HEAD'], denied: ['DELETE'] },
            paths: { allowedPrefixes: ['/v1/'], deniedPrefixes: ['/v1/admin'], denied: ['/v1/secret'] },
          },
        },
        {
          name: 'rest',
          protocol: 'http',
          domains: ['api.example.com'],
          http: { methods: { denied: ['POST'] } },
        },
        {
          name: 'tools',
          protocol: 'mcp',
          tlsMode: 'terminate-reoriginate',
          domains: ['mcp.example.com'],
          ports: [{ port: 443 }],
          mcp: { tools: { allowed: ['search', 'fetch'], denied: ['fetch'] } },
        },
      ],
    },
  })
}

describe('protocol rules', () => {
  const p = policy()
  const api = protocolRulesFor(p, { name: 'API.example.com', port: 80 })

  it('apply by name and port, in declaration order', () => {
    expect(api.map((r) => r.label)).toEqual([
      'egress.protocolRules[0] "readonly-v1"',
      'egress.protocolRules[1] "rest"',
    ])
    expect(protocolRulesFor(p, { name: 'mcp.example.com', port: 443 }).map((r) => r.index)).toEqual([2])
    expect(protocolRulesFor(p, { name: 'mcp.example.com', port: 8443 })).toEqual([])
    expect(protocolRulesFor(p, { name: undefined, port: 80 })).toEqual([])
    expect(needsTermination(p, { name: 'mcp.example.com', port: 443 })).toBe(true)
    expect(needsTermination(p, { name: 'api.example.com', port: 443 })).toBe(false)
  })

  it('the first rule whose httpMatch matches governs a request', () => {
    expect(protocolRuleFor(api, 'http', { method: 'GET', path: '/v1/items' })?.index).toBe(0)
    expect(protocolRuleFor(api, 'http', { method: 'GET', path: '/v2/items' })?.index).toBe(1)
    expect(protocolRuleFor(api, 'mcp', { method: 'POST', path: '/' })).toBeUndefined()
  })

  it('HTTP: denied lists first, a non-empty allowed list means only those', () => {
    const r = api[0]!
    expect(checkHttp(r, { method: 'get', path: '/v1/items?x=1' })).toEqual({
      action: 'allow',
      reason: 'egress.protocolRules[0] "readonly-v1"',
    })
    expect(checkHttp(r, { method: 'DELETE', path: '/v1/items' })).toEqual({
      action: 'deny',
      reason: 'egress.protocolRules[0] "readonly-v1": method DELETE is denied',
    })
    expect(checkHttp(r, { method: 'PUT', path: '/v1/items' }).reason).toMatch(/method PUT is not allowed$/)
    expect(checkHttp(r, { method: 'GET', path: '/v1/admin/users' }).reason).toMatch(
      /path "\/v1\/admin\/users" is denied$/,
    )
    expect(checkHttp(r, { method: 'GET', path: '/v1/secret' }).action).toBe('deny')
    expect(checkHttp(r, { method: 'GET', path: '/v1/secret/x' }).action).toBe('allow')
    expect(checkHttp(r, { method: 'GET', path: '/v2/x' }).reason).toMatch(/path "\/v2\/x" is not allowed$/)
    expect(checkHttp(api[1]!, { method: 'POST', path: '/anything' }).action).toBe('deny')
    expect(checkHttp(api[1]!, { method: 'PATCH', path: '/anything' }).action).toBe('allow')
  })

  it('HTTP: a denied path cannot be reached by another spelling of it', () => {
    const r = api[0]!
    for (const path of [
      '/v1/items/../admin/x',
      '/v1/./admin',
      '/v1//admin',
      '/v1/%61dmin',
      '/v1/%2e%2e/v1/admin',
      '/v1/admin;jsessionid=1',
      '/v1/x%2F..%2Fadmin',
      '/v1\\admin',
      'http://api.example.com/v1/admin',
      '/v1/admin#frag',
      '/v1/x/%2E%2E/admin',
    ]) {
      expect(checkHttp(r, { method: 'GET', path }).action, path).toBe('deny')
    }
    // ...and an allowed prefix is not escaped by climbing out of it.
    expect(checkHttp(r, { method: 'GET', path: '/v1/../v2/x' }).action).toBe('deny')
    expect(checkHttp(r, { method: 'GET', path: '/v1/a%2F..%2F..%2Fv2' }).action).toBe('deny')
    expect(pathForms('/a/%7euser/%2f/x')).toEqual(['/a/~user/%2F/x', '/a/~user/x'])
  })

  it('MCP: tools/call is checked, single or batched', () => {
    const r = protocolRulesFor(p, { name: 'mcp.example.com', port: 443 })[0]!
    const call = (name: unknown, id = 1) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name, arguments: {} },
    })
    expect(checkMcp(r, JSON.stringify(call('search')))).toEqual({
      action: 'allow',
      reason: 'egress.protocolRules[2] "tools": search',
    })
    expect(checkMcp(r, JSON.stringify(call('fetch'))).reason).toMatch(/tool "fetch" is denied$/)
    expect(checkMcp(r, JSON.stringify(call('shell'))).reason).toMatch(/tool "shell" is not allowed$/)
    expect(checkMcp(r, Buffer.from(JSON.stringify([call('search', 1), call('shell', 2)]))).action).toBe(
      'deny',
    )
    expect(
      checkMcp(
        r,
        JSON.stringify([call('search', 1), { jsonrpc: '2.0', method: 'notifications/initialized' }]),
      ).action,
    ).toBe('allow')
    expect(checkMcp(r, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' })).action).toBe('allow')
    expect(checkMcp(r, '').action).toBe('allow')
    expect(checkMcp(r, JSON.stringify(call(''))).reason).toMatch(/tools\/call names no tool$/)
    expect(checkMcp(r, JSON.stringify({ method: 'tools/call' })).action).toBe('deny')
    expect(checkMcp(r, '{"method":"tools/call"').reason).toMatch(/body is not JSON$/)
    expect(checkMcp(r, '[1]').reason).toMatch(/not a JSON-RPC message$/)
    // Parsers disagree on which of two keys wins: such a body is refused.
    expect(checkMcp(r, '{"method":"tools/call","params":{"name":"search","name":"shell"}}').reason).toMatch(
      /duplicate JSON keys$/,
    )
    expect(
      checkMcp(r, '{"method":"tools/call","params":{"name":"search","n\\u0061me":"shell"}}').action,
    ).toBe('deny')
    const big = JSON.stringify({ ...call('search'), pad: 'x'.repeat(limits.egressMcpBodyBytesMax) })
    expect(checkMcp(r, big).reason).toMatch(/too large to inspect$/)
  })

  it('finds duplicate keys at any depth, and only keys', () => {
    expect(hasDuplicateKeys('{"a":1,"b":{"a":2}}')).toBe(false)
    expect(hasDuplicateKeys('{"a":"a","b":["a","a"]}')).toBe(false)
    expect(hasDuplicateKeys('[{"a":1},{"a":2}]')).toBe(false)
    expect(hasDuplicateKeys('{"x":[{"k":1,"k":2}]}')).toBe(true)
    expect(hasDuplicateKeys('{"a\\"b":1,"a\\u0022b":2}')).toBe(true)
  })
})

describe('credential rules', () => {
  const p = compilePolicy({
    mode: 'allow-all',
    egress: {
      credentialRules: [
        { name: 'off', credentialRef: 'hdr', rollout: 'disabled', domains: ['api.github.com'] },
        {
          name: 'gh-read',
          credentialRef: 'hdr',
          protocol: 'https',
          tlsMode: 'terminate-reoriginate',
          domains: ['*.github.com'],
          httpMatch: {
            methods: ['GET'],
            pathPrefixes: ['/repos/'],
            headers: [{ name: 'X-Skip', present: false }],
          },
        },
        {
          name: 'gh-any',
          credentialRef: 'hdr',
          protocol: 'https',
          tlsMode: 'terminate-reoriginate',
          domains: ['api.github.com'],
        },
        { name: 'plain', credentialRef: 'hdr', protocol: 'http', ports: [{ port: 8080 }] },
        { name: 'cache', credentialRef: 'login', protocol: 'redis' },
      ],
    },
    credentialBindings: [
      {
        ref: 'hdr',
        sourceRef: 'gh',
        projection: {
          type: 'http_headers',
          httpHeaders: { headers: [{ name: 'Authorization', valueTemplate: 'token {{ .token }}' }] },
        },
      },
      { ref: 'login', sourceRef: 'redis', projection: { type: 'username_password', usernamePassword: {} } },
    ],
  })

  it('match enabled rules by name, port and protocol, in order', () => {
    const names = (r: ReturnType<typeof credentialRulesFor>) => r.map((x) => x.rule.name)
    expect(names(credentialRulesFor(p, { name: 'api.github.com', port: 443, protocol: 'tls' }))).toEqual([
      'gh-read',
      'gh-any',
    ])
    expect(names(credentialRulesFor(p, { name: 'api.github.com', port: 443, protocol: 'http' }))).toEqual([])
    expect(names(credentialRulesFor(p, { name: 'x.io', port: 8080, protocol: 'http' }))).toEqual(['plain'])
    expect(names(credentialRulesFor(p, { name: undefined, port: 6379, protocol: 'redis' }))).toEqual([
      'cache',
    ])
    expect(names(credentialRulesFor(p, { name: undefined, port: 6379, protocol: undefined }))).toEqual([])
    const r = credentialRulesFor(p, { name: 'api.github.com', port: 443, protocol: 'tls' })
    expect(r[0]?.binding.ref).toBe('hdr')
    expect(r[0]?.failurePolicy).toBe('fail-closed')
  })

  it('pick per request by httpMatch', () => {
    const rules = credentialRulesFor(p, { name: 'api.github.com', port: 443, protocol: 'tls' })
    expect(credentialRuleForRequest(rules, { method: 'get', path: '/repos/a/b' })?.rule.name).toBe('gh-read')
    expect(
      credentialRuleForRequest(rules, { method: 'GET', path: '/repos/a/b', headers: { 'x-skip': '1' } })?.rule
        .name,
    ).toBe('gh-any')
    expect(credentialRuleForRequest(rules, { method: 'POST', path: '/repos/a/b' })?.rule.name).toBe('gh-any')
    // Climbing out of the prefix is not in it.
    expect(credentialRuleForRequest(rules, { method: 'GET', path: '/repos/../user' })?.rule.name).toBe(
      'gh-any',
    )
  })

  it('httpMatch: query and header values', () => {
    const m = compilePolicy({
      mode: 'allow-all',
      egress: {
        credentialRules: [
          {
            credentialRef: 'hdr',
            protocol: 'http',
            httpMatch: {
              query: [
                { name: 'v', values: ['1', '2'] },
                { name: 'debug', present: false },
              ],
              headers: [{ name: 'Content-Type', values: ['application/json'] }, { name: 'X-Req' }],
            },
          },
        ],
      },
      credentialBindings: [
        {
          ref: 'hdr',
          sourceRef: 's',
          projection: { type: 'http_headers', httpHeaders: { headers: [{ name: 'A', valueTemplate: 'x' }] } },
        },
      ],
    }).credentialRules[0]!.httpMatch
    const headers = { 'content-type': 'application/json', 'x-req': 'y' }
    expect(matchesHttp(m, { method: 'GET', path: '/x?v=2', headers })).toBe(true)
    expect(matchesHttp(m, { method: 'GET', path: '/x', query: 'v=1&v=3', headers })).toBe(true)
    expect(matchesHttp(m, { method: 'GET', path: '/x?v=3', headers })).toBe(false)
    expect(matchesHttp(m, { method: 'GET', path: '/x?v=1&debug=1', headers })).toBe(false)
    expect(
      matchesHttp(m, { method: 'GET', path: '/x?v=1', headers: { 'content-type': 'application/json' } }),
    ).toBe(false)
    expect(
      matchesHttp(m, {
        method: 'GET',
        path: '/x?v=1',
        headers: { ...headers, 'content-type': ['text/plain'] },
      }),
    ).toBe(false)
    expect(matchesHttp(undefined, { method: 'GET', path: '/' })).toBe(true)
  })
})
