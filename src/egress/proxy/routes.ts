// How an allowed connection is carried: a plain pipe, unless a rule must see its requests —
// protocolRules (HTTP methods and paths, MCP tools) and credentialRules (headers, placeholders,
// client certificates, SSH keys) — in which case the HTTP layer (TLS terminated with the sandbox's
// CA and re-originated with full verification) or the SSH re-origination proxy carries it.
import type net from 'node:net'
import { assert } from '../../core/assert.js'
import { S0Error } from '../../core/errors.js'
import type { Projection } from '../credentials/projections.js'
import { serveHttp, type HttpHooks, type HttpRequestInfo, type HttpVerdict } from '../http/proxy-http.js'
import type { CompiledCredentialRule, CompiledProtocolRule } from '../policy/compile.js'
import {
  checkHttp,
  checkMcp,
  credentialRuleForRequest,
  credentialRulesFor,
  needsTermination,
  protocolRuleFor,
  protocolRulesFor,
  type HttpRequestView,
} from '../policy/protocol-rules.js'
import { handleSshConnection, type SshProxySummary } from '../ssh-proxy.js'
import { originate, terminateTls } from '../tls/intercept.js'
import type { CertificatePem } from '../tls/x509.js'
import { auditFlow } from './audit.js'
import type { Classified, ProxyContext } from './types.js'
import { connectUpstream } from './upstream.js'

export type Route = 'pipe' | 'http' | 'intercept' | 'ssh'

export function routeFor(c: Classified): Route {
  const p = c.sandbox.policy
  const dest = { name: c.name, port: c.port }
  switch (c.sniffed.appProtocol) {
    case 'tls': {
      if (needsTermination(p, dest)) return 'intercept'
      // Credentials over TLS (headers, placeholders, a client certificate) need the requests;
      // a rule that says passthrough is honoured (and injects nothing).
      const creds = credentialRulesFor(p, { ...dest, protocol: 'tls' })
      return creds.some((r) => r.tlsMode !== 'passthrough') ? 'intercept' : 'pipe'
    }
    case 'http':
      return protocolRulesFor(p, dest).length > 0 ||
        credentialRulesFor(p, { ...dest, protocol: 'http' }).length > 0
        ? 'http'
        : 'pipe'
    case 'ssh':
      return sshRule(c) ? 'ssh' : 'pipe'
    default:
      return 'pipe'
  }
}

function sshRule(c: Classified): CompiledCredentialRule | undefined {
  return credentialRulesFor(c.sandbox.policy, { name: c.name, port: c.port, protocol: 'ssh' }).find(
    (r) => r.binding.projection.type === 'ssh_proxy',
  )
}

/** TLS terminated with the sandbox's CA, requests through the hooks, re-originated upstream. */
export async function interceptHttp(proxy: ProxyContext, socket: net.Socket, c: Classified): Promise<void> {
  const ca = c.sandbox.ca
  // Every networked sandbox gets its CA before its first packet (SandboxEgress.attach).
  assert(ca !== undefined, `sandbox ${c.sandbox.sandboxId} has no egress CA`)
  const serverName = c.name ?? c.sniffed.serverName ?? c.ip
  const clientCert = await clientCertificate(proxy, c)
  const tls = await terminateTls(socket, { ca, serverName, alpn: ['h2', 'http/1.1'], firstBytes: c.first })
  await serveHttp(tls, {
    secure: true,
    alpn: tls.alpnProtocol,
    upstream: async (want) => {
      const via = c.sandbox.policy.proxy ? await connectUpstream(proxy, c) : undefined
      return originate({
        ip: c.ip,
        port: c.port,
        serverName,
        alpn: want.alpn,
        ...(proxy.o.upstreamCa !== undefined ? { ca: proxy.o.upstreamCa } : {}),
        ...(clientCert ? { clientCert } : {}),
        ...(via ? { socket: via } : {}),
      })
    },
    hooks: hooksFor(proxy, c, true),
  })
}

/** Plain HTTP through the hooks (protocol rules, credentials with `protocol: http`). */
export async function plainHttp(proxy: ProxyContext, socket: net.Socket, c: Classified): Promise<void> {
  await serveHttp(socket, {
    secure: false,
    firstBytes: c.first,
    upstream: () => connectUpstream(proxy, c),
    hooks: hooksFor(proxy, c, false),
  })
}

/** SSH: the sandbox's session re-originated with the real key (ssh_proxy projection). */
export async function sshProxy(proxy: ProxyContext, socket: net.Socket, c: Classified): Promise<void> {
  const rule = sshRule(c)
  assert(rule !== undefined, 'the ssh route needs an ssh_proxy credential rule')
  const p = await proxy.projection(c, rule.binding)
  assert(p.type === 'ssh_proxy', `binding ${rule.binding.ref} projected ${p.type}, not ssh_proxy`)
  const via = c.sandbox.policy.proxy ? await connectUpstream(proxy, c) : undefined
  socket.unshift(c.first)
  const summary = await new Promise<SshProxySummary>((resolve) => {
    handleSshConnection(socket, {
      hostKey: proxy.o.sshHostKey,
      sandboxPublicKeys: p.sandboxPublicKeys,
      upstream: {
        host: c.ip,
        port: c.port,
        ...(p.upstreamUsername !== undefined ? { username: p.upstreamUsername } : {}),
        privateKey: p.privateKey,
        ...(p.passphrase !== undefined ? { passphrase: p.passphrase } : {}),
        knownHosts: p.knownHosts,
        ...(c.name !== undefined ? { hostNames: [c.name] } : {}),
        ...(via ? { sock: via } : {}),
      },
      onDone: resolve,
    })
  })
  auditFlow(proxy.o.events, {
    sandbox: c.sandbox,
    operationId: c.operationId,
    action: 'ssh_session',
    outcome: summary.error ? 'error' : 'succeeded',
    destination: {
      ip: c.ip,
      port: c.port,
      transport: 'tcp',
      ...(c.name !== undefined ? { name: c.name } : {}),
    },
    rule: rule.label,
    appProtocol: 'ssh',
    attributes: {
      credential_ref: rule.binding.ref,
      ssh_outcome: summary.outcome,
      ...(summary.error ? { error: `${summary.error.code}: ${summary.error.message}` } : {}),
      ...(summary.sandboxUser !== undefined ? { sandbox_user: summary.sandboxUser } : {}),
      ...(summary.upstreamUser !== undefined ? { upstream_user: summary.upstreamUser } : {}),
      ...(summary.upstreamHostKey !== undefined ? { upstream_host_key: summary.upstreamHostKey } : {}),
      channels: summary.channels,
      channel_count: summary.channelCount,
      bytes_out: summary.bytesFromSandbox,
      bytes_in: summary.bytesToSandbox,
    },
  })
}

/** The tls_client_certificate projection of the first credential rule for this destination that has one. */
async function clientCertificate(proxy: ProxyContext, c: Classified): Promise<CertificatePem | undefined> {
  for (const r of credentialRulesFor(c.sandbox.policy, { name: c.name, port: c.port, protocol: 'tls' })) {
    if (r.binding.projection.type !== 'tls_client_certificate') continue
    const got = await proxy.projection(c, r.binding)
    if (got.type === 'tls_client_certificate') return { certPem: got.certPem, keyPem: got.keyPem }
  }
  return undefined
}

/** The host of an authority (`name`, `name:port`, `[v6]:port`), lower case. */
export function hostOf(authority: string): string {
  const a = authority.toLowerCase()
  if (a.startsWith('[')) return a.slice(1, Math.max(1, a.indexOf(']')))
  const colon = a.lastIndexOf(':')
  const host = colon > 0 && a.indexOf(':') === colon ? a.slice(0, colon) : a
  return host.endsWith('.') ? host.slice(0, -1) : host
}

/** The per-request checks: Host, protocol rules, credential injection; each request audited. */
function hooksFor(proxy: ProxyContext, c: Classified, secure: boolean): HttpHooks {
  // Read per request: a live policy change applies to the next request on an open connection.
  const rules = (): CompiledProtocolRule[] =>
    protocolRulesFor(c.sandbox.policy, { name: c.name, port: c.port })
  const creds = (): CompiledCredentialRule[] =>
    credentialRulesFor(c.sandbox.policy, { name: c.name, port: c.port, protocol: secure ? 'tls' : 'http' })
  const verdicts = new WeakMap<HttpRequestInfo, { rule: string; credential?: string; denied?: string }>()
  const view = (req: HttpRequestInfo): HttpRequestView => ({
    method: req.method,
    path: req.path,
    query: req.query,
    headers: req.headers,
  })
  const deny = (req: HttpRequestInfo, status: number, reason: string): HttpVerdict => {
    verdicts.set(req, { rule: reason, denied: reason })
    return { action: 'deny', status, reason }
  }
  return {
    async onRequest(req): Promise<HttpVerdict> {
      // The connection was allowed for its verified name; a request for another host on it
      // would reach a destination the policy never saw (domain fronting).
      const host = hostOf(req.authority)
      if (c.name !== undefined && host !== c.name && host !== c.ip)
        return deny(req, 403, `Host ${host} is not the connection's name ${c.name}`)
      const v = view(req)
      const current = rules()
      const httpRule = protocolRuleFor(current, 'http', v)
      if (httpRule) {
        const d = checkHttp(httpRule, { method: req.method, path: req.path })
        if (d.action === 'deny') return deny(req, 403, d.reason)
      }
      const mcpRule = protocolRuleFor(current, 'mcp', v)
      const cred = credentialRuleForRequest(creds(), v)
      const verdict: Extract<HttpVerdict, { action: 'allow' }> = { action: 'allow' }
      if (mcpRule) verdict.inspectBody = 'mcp'
      verdicts.set(req, {
        rule: httpRule?.label ?? mcpRule?.label ?? 'allowed',
        ...(cred ? { credential: cred.binding.ref } : {}),
      })
      if (!cred) return verdict
      verdict.failurePolicy = cred.failurePolicy
      let projected: Projection
      try {
        projected = await proxy.projection(c, cred.binding)
      } catch (err) {
        if (!(err instanceof S0Error)) throw err
        if (cred.failurePolicy === 'fail-open') return verdict
        return deny(req, 502, `${cred.label}: credential ${cred.binding.ref} unavailable (${err.code})`)
      }
      if (projected.type === 'http_headers') {
        verdict.setHeaders = Object.fromEntries(projected.headers.map((h) => [h.name, h.value]))
      } else if (projected.type === 'placeholder_substitution') {
        verdict.substitutions = projected.replacements
      }
      return verdict
    },
    onBody(req, body): HttpVerdict {
      const mcpRule = protocolRuleFor(rules(), 'mcp', view(req))
      if (!mcpRule) return { action: 'allow' }
      const d = checkMcp(mcpRule, body)
      return d.action === 'deny' ? deny(req, 403, d.reason) : { action: 'allow' }
    },
    onDone(s) {
      const v = verdicts.get(s.req)
      auditFlow(proxy.o.events, {
        sandbox: c.sandbox,
        operationId: c.operationId,
        action: 'http_request',
        outcome: v?.denied !== undefined ? 'denied' : s.error !== undefined ? 'error' : 'succeeded',
        destination: {
          ip: c.ip,
          port: c.port,
          transport: 'tcp',
          ...(s.req.authority ? { name: hostOf(s.req.authority) } : {}),
        },
        rule: v?.rule ?? 'unparsed request',
        appProtocol: secure ? 'https' : 'http',
        attributes: {
          method: s.req.method,
          path: s.req.path,
          status: s.status,
          bytes_out: s.bytesOut,
          bytes_in: s.bytesIn,
          ...(v?.credential !== undefined ? { credential_ref: v.credential } : {}),
          ...(s.error !== undefined ? { error: s.error } : {}),
        },
      })
    },
  }
}
