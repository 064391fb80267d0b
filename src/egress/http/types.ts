// What the proxy's HTTP layer asks of its caller per request (the policy and credential hooks) and
// what it reports back (one summary per request, for the network_audit event).
import { isBug } from '../../core/assert.js'
import { S0Error, type ErrorCode } from '../../core/errors.js'

export interface HttpRequestInfo {
  method: string
  /** Host and port as the request named them, lower case (`Host`, `:authority` or an absolute URI). */
  authority: string
  /** Normalised (RFC 3986 §6.2.2 and dot segments removed); forwarded exactly so. */
  path: string
  /** Raw query without `?`, with any placeholders still in (the secret is never shown to hooks). */
  query: string
  /** The sandbox's fields, names lower case, pseudo-fields left out. */
  headers: Record<string, string | string[]>
  secure: boolean
  httpVersion: '1.1' | '2'
}

export type HttpVerdict =
  | {
      action: 'deny'
      status: number
      reason: string
      /** The rule that denied; the answer's body names it (defaults to `reason`). */
      rule?: string
    }
  | {
      action: 'allow'
      /** Replaces any field of that name the sandbox sent. */
      setHeaders?: Record<string, string>
      substitutions?: Array<{
        placeholder: string
        value: string
        locations: Array<'header' | 'query' | 'body'>
      }>
      /** When a body substitution is impossible (unknown length, over 1 MiB). Default fail-closed. */
      failurePolicy?: 'fail-closed' | 'fail-open'
      /** Buffer the body (up to the MCP limit) and ask `onBody` before forwarding. */
      inspectBody?: 'mcp'
    }

export interface HttpDoneSummary {
  req: HttpRequestInfo
  /** What the sandbox got (0 when it got nothing: the connection broke first). */
  status: number
  /** Response body bytes from the destination to the sandbox. */
  bytesIn: number
  /** Request body bytes from the sandbox to the destination (after substitution). */
  bytesOut: number
  /** `code: message` of the failure, when there was one. */
  error?: string
  errorCode?: ErrorCode
}

export interface HttpHooks {
  onRequest(req: HttpRequestInfo): Promise<HttpVerdict>
  /** Required when a verdict says `inspectBody: 'mcp'`. Only a `deny` changes anything. */
  onBody?(req: HttpRequestInfo, body: Buffer): HttpVerdict
  /** Once per request, after the answer ended (or broke). Must not throw. */
  onDone(summary: HttpDoneSummary): void
}

/** The denial body: `{"error":"egress_denied","rule":...,"reason":...}`. */
export function denyFields(v: { reason: string; rule?: string }): Record<string, unknown> {
  return { error: 'egress_denied', rule: v.rule ?? v.reason, reason: v.reason }
}

/** An unexpected failure as a catalogued one (bugs stay bugs: the caller rethrows them). */
export function asS0Error(err: unknown, fallback: ErrorCode, what: string): S0Error {
  if (err instanceof S0Error) return err
  if (isBug(err)) throw err
  return new S0Error(fallback, `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
}

export function errorFields(err: S0Error): { error: string; errorCode: ErrorCode } {
  return { error: `${err.code}: ${err.message}`, errorCode: err.code }
}

/** An info for a request the parser refused (nothing of it is known). */
export function unparsedRequest(secure: boolean, httpVersion: '1.1' | '2'): HttpRequestInfo {
  return { method: '', authority: '', path: '', query: '', headers: {}, secure, httpVersion }
}
