// What applies after a connection is allowed: the protocolRules for its (name, port) and their
// HTTP and MCP checks, and the credential rules for its (name, port, protocol). Upstream
// Sandbox0's semantics: the first protocol rule of a kind whose httpMatch matches the request
// applies; within it denied lists come first and a non-empty allowed list means only those.
import { limits } from '../../core/limits.js'
import type { CompiledCredentialRule, CompiledPolicy, CompiledProtocolRule } from './compile.js'
import { matchesHttp, pathForms, pathInList, type HttpRequestView } from './http-match.js'
import type { Decision } from './match.js'
import { normalizeName } from './names.js'
import type { AppProtocol, AuthProtocol } from './types.js'

export { matchesHttp, pathForms, type CompiledHttpMatch, type HttpRequestView } from './http-match.js'

export interface Destination {
  /** The flow's name (SNI or Host; else the name its IP was resolved from); rules with domains need one. */
  name: string | undefined
  port: number
}

function destinationMatches(
  r: { domains: CompiledProtocolRule['domains']; ports: CompiledProtocolRule['ports'] },
  name: string | undefined,
  port: number,
): boolean {
  if (r.domains !== undefined && (name === undefined || !r.domains.has(name))) return false
  if (r.ports !== undefined && !r.ports.has('tcp', port)) return false
  return true
}

/** The protocol rules that apply to connections to (name, port), in declaration order. */
export function protocolRulesFor(p: CompiledPolicy, d: Destination): CompiledProtocolRule[] {
  const name = d.name === undefined ? undefined : normalizeName(d.name)
  return p.protocolRules.filter((r) => destinationMatches(r, name, d.port))
}

/** The rule of `protocol` that governs this request: the first whose httpMatch matches it. */
export function protocolRuleFor(
  rules: readonly CompiledProtocolRule[],
  protocol: 'http' | 'mcp',
  req: HttpRequestView,
): CompiledProtocolRule | undefined {
  return rules.find((r) => r.protocol === protocol && matchesHttp(r.httpMatch, req))
}

/** Whether TLS to (name, port) must be terminated for a protocol or credential rule to see it. */
export function needsTermination(p: CompiledPolicy, d: Destination): boolean {
  const name = d.name === undefined ? undefined : normalizeName(d.name)
  const wants = (r: { tlsMode: string | undefined } & Parameters<typeof destinationMatches>[0]): boolean =>
    r.tlsMode === 'terminate-reoriginate' && destinationMatches(r, name, d.port)
  return p.protocolRules.some(wants) || p.credentialRules.some((r) => r.enabled && wants(r))
}

function deny(rule: CompiledProtocolRule, why: string): Decision {
  return { action: 'deny', reason: `${rule.label}: ${why}` }
}

/** An HTTP request against an `http` protocol rule. */
export function checkHttp(rule: CompiledProtocolRule, req: { method: string; path: string }): Decision {
  const h = rule.http
  if (h === undefined) return { action: 'allow', reason: rule.label }
  const method = req.method.toUpperCase()
  if (h.deniedMethods.has(method)) return deny(rule, `method ${method} is denied`)
  if (h.allowedMethods !== undefined && !h.allowedMethods.has(method)) {
    return deny(rule, `method ${method} is not allowed`)
  }
  const forms = pathForms(req.path)
  const shown = JSON.stringify(forms[0])
  if (forms.some((f) => pathInList(f, h.deniedPaths))) return deny(rule, `path ${shown} is denied`)
  const allowed = h.allowedPaths
  if (allowed !== undefined && !forms.every((f) => pathInList(f, allowed))) {
    return deny(rule, `path ${shown} is not allowed`)
  }
  return { action: 'allow', reason: rule.label }
}

/**
 * An MCP JSON-RPC request body (one message or a batch) against an `mcp` protocol rule: every
 * `tools/call` must name a tool that is not denied and, when an allowed list is given, is on it.
 * A body that is not JSON, has duplicate keys (parsers disagree on which one wins), or is larger
 * than limits.egressMcpBodyBytesMax is denied; an empty body has nothing to check.
 */
export function checkMcp(rule: CompiledProtocolRule, body: string | Uint8Array): Decision {
  const m = rule.mcp
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength
  if (size > limits.egressMcpBodyBytesMax) return deny(rule, `body of ${size} bytes is too large to inspect`)
  const text =
    typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString()
  if (text.trim() === '') return { action: 'allow', reason: rule.label }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return deny(rule, 'body is not JSON')
  }
  if (hasDuplicateKeys(text)) return deny(rule, 'body has duplicate JSON keys')
  const messages = Array.isArray(parsed) ? parsed : [parsed]
  const called: string[] = []
  for (const msg of messages) {
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      return deny(rule, 'body is not a JSON-RPC message')
    }
    const { method, params } = msg as { method?: unknown; params?: unknown }
    if (method !== 'tools/call') continue
    const name =
      typeof params === 'object' && params !== null ? (params as { name?: unknown }).name : undefined
    if (typeof name !== 'string' || name.trim() === '') return deny(rule, 'tools/call names no tool')
    if (m?.deniedTools.has(name)) return deny(rule, `tool ${JSON.stringify(name)} is denied`)
    if (m?.allowedTools !== undefined && !m.allowedTools.has(name)) {
      return deny(rule, `tool ${JSON.stringify(name)} is not allowed`)
    }
    called.push(name)
  }
  return { action: 'allow', reason: called.length > 0 ? `${rule.label}: ${called.join(', ')}` : rule.label }
}

/** Whether valid JSON text has an object with the same key twice (after unescaping). */
export function hasDuplicateKeys(json: string): boolean {
  // One entry per open container: a key set for objects, undefined for arrays.
  const stack: Array<Set<string> | undefined> = []
  let expectKey = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]
    if (c === '{') {
      stack.push(new Set())
      expectKey = true
    } else if (c === '[') {
      stack.push(undefined)
      expectKey = false
    } else if (c === '}' || c === ']') {
      stack.pop()
      expectKey = false
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] !== undefined
    } else if (c === '"') {
      let j = i + 1
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1
      if (expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string
        const keys = stack[stack.length - 1] as Set<string>
        if (keys.has(key)) return true
        keys.add(key)
        expectKey = false
      }
      i = j
    }
  }
  return false
}

const AUTH_TO_APP: Record<AuthProtocol, readonly AppProtocol[]> = {
  http: ['http'],
  https: ['tls'],
  grpc: ['tls', 'http'],
  tls: ['tls'],
  ssh: ['ssh'],
  socks5: ['socks5'],
  mqtt: ['mqtt'],
  redis: ['redis'],
}

/**
 * The enabled credential rules for a TCP connection to (name, port) classified as `protocol`, in
 * declaration order. A rule's `protocol` names what it expects on the wire (https and tls: a TLS
 * ClientHello; grpc: TLS or plain HTTP/2); its httpMatch, if any, is checked per request with
 * matchesHttp(rule.httpMatch, request).
 */
export function credentialRulesFor(
  p: CompiledPolicy,
  c: { name: string | undefined; port: number; protocol: AppProtocol | undefined },
): CompiledCredentialRule[] {
  const name = c.name === undefined ? undefined : normalizeName(c.name)
  return p.credentialRules.filter((r) => {
    if (!r.enabled) return false
    if (
      r.protocol !== undefined &&
      (c.protocol === undefined || !AUTH_TO_APP[r.protocol].includes(c.protocol))
    ) {
      return false
    }
    return destinationMatches(r, name, c.port)
  })
}

/** The first of `rules` whose httpMatch matches the request (rules without one match all). */
export function credentialRuleForRequest(
  rules: readonly CompiledCredentialRule[],
  req: HttpRequestView,
): CompiledCredentialRule | undefined {
  return rules.find((r) => matchesHttp(r.httpMatch, req))
}
