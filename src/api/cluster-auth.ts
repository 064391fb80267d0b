// API replica → agent authentication (docs/DEPLOY.md). An API replica authenticates the user's
// API key itself and forwards the request with the cluster token and the principal it resolved;
// the user's key never reaches an agent, and an agent serves no request without the token.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { isApiKeyRole, type AuthContext } from '../accounts/index.js'
import { S0Error } from '../core/errors.js'
import type { ApiKeyId, TeamId } from '../core/ids.js'

export const CLUSTER_TOKEN_HEADER = 'x-s0-cluster-token'
export const PRINCIPAL_HEADER = 'x-s0-principal'
/** The placement lease a forwarded claim was placed under (the agent releases it when done). */
export const PLACEMENT_HEADER = 'x-s0-placement'

export function encodePrincipal(auth: AuthContext): string {
  return Buffer.from(JSON.stringify({ t: auth.teamId, k: auth.keyId, r: auth.role })).toString('base64url')
}

function sameToken(a: string, b: string): boolean {
  // Hashes first: equal lengths for timingSafeEqual, and no length leak.
  const ha = createHash('sha256').update(a).digest()
  const hb = createHash('sha256').update(b).digest()
  return timingSafeEqual(ha, hb)
}

/** The principal of a request an API replica forwarded; `unauthorized` for anything else. */
export function clusterPrincipal(headers: IncomingHttpHeaders, token: string): AuthContext {
  const offered = headers[CLUSTER_TOKEN_HEADER]
  if (typeof offered !== 'string' || !sameToken(offered, token))
    throw new S0Error(
      'unauthorized',
      'this is an s0 agent: only API replicas call it (cluster token missing or wrong)',
    )
  const raw = headers[PRINCIPAL_HEADER]
  let p: { t?: unknown; k?: unknown; r?: unknown } | undefined
  try {
    p =
      typeof raw === 'string'
        ? (JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as typeof p)
        : undefined
  } catch {
    p = undefined
  }
  if (
    !p ||
    typeof p.t !== 'string' ||
    typeof p.k !== 'string' ||
    typeof p.r !== 'string' ||
    !isApiKeyRole(p.r)
  )
    throw new S0Error('unauthorized', 'forwarded request without a valid principal')
  return { teamId: p.t as TeamId, keyId: p.k as ApiKeyId, role: p.r }
}
