// Account objects on the wire (the SDK's APIKey, CurrentAPIKeyResponse, Team, TeamMember, User,
// Region, TeamQuota, UsageWindow models; snake_case).
import type {
  ApiKeyInfo,
  AuthContext,
  TeamInfo,
  TeamQuotaInfo,
  UsageWindowInfo,
} from '../../accounts/index.js'
import { iso, isoIfSet } from './time.js'

/** `expires_at` of a key that never expires (the models require a date-time). */
export const NEVER_EXPIRES = '9999-12-31T23:59:59Z'
/** Every key belongs to exactly one team. */
export const KEY_SCOPE = 'team'

const PERMISSIONS = {
  member: ['sandboxes:*', 'volumes:*', 'templates:*', 'credential_sources:read', 'quotas:read', 'usage:read'],
  admin: [
    'sandboxes:*',
    'volumes:*',
    'templates:*',
    'credential_sources:*',
    'api_keys:*',
    'teams:*',
    'quotas:*',
    'usage:read',
  ],
} as const

function expiresAt(d: Date | null): string {
  return d ? iso(d) : NEVER_EXPIRES
}

function isActive(k: ApiKeyInfo): boolean {
  return k.revokedAt === null && (k.expiresAt === null || k.expiresAt.getTime() > Date.now())
}

export function apiKeyJson(k: ApiKeyInfo): Record<string, unknown> {
  return {
    id: k.id,
    team_id: k.teamId,
    created_by: k.createdBy,
    name: k.name,
    scope: KEY_SCOPE,
    roles: [k.role],
    is_active: isActive(k),
    expires_at: expiresAt(k.expiresAt),
    ...isoIfSet('last_used_at', k.lastUsedAt),
    created_at: iso(k.createdAt),
    updated_at: iso(k.updatedAt),
    // s0: the first characters of the key, to tell keys apart (never the rest).
    key_prefix: k.keyPrefix,
  }
}

export function createdApiKeyJson(k: ApiKeyInfo, key: string): Record<string, unknown> {
  return {
    id: k.id,
    name: k.name,
    scope: KEY_SCOPE,
    roles: [k.role],
    team_id: k.teamId,
    key,
    expires_at: expiresAt(k.expiresAt),
    created_at: iso(k.createdAt),
  }
}

export function currentApiKeyJson(auth: AuthContext, k: ApiKeyInfo): Record<string, unknown> {
  return {
    api_key: {
      id: k.id,
      team_id: auth.teamId,
      created_by: k.createdBy,
      scope: KEY_SCOPE,
      roles: [auth.role],
      permissions: [...PERMISSIONS[auth.role]],
      is_active: isActive(k),
      expires_at: expiresAt(k.expiresAt),
    },
  }
}

/** `region`: this server's region (S0_REGION_ID). */
export function teamJson(t: TeamInfo, region: string): Record<string, unknown> {
  return {
    id: t.id,
    name: t.name,
    slug: t.slug ?? t.id,
    home_region_id: region,
    created_at: iso(t.createdAt),
    updated_at: iso(t.updatedAt),
    // s0: the team whose admins manage this one (null: a root team).
    parent_team_id: t.parentTeamId,
  }
}

/** A team's API keys are its members (s0 has no user accounts). */
export function memberJson(k: ApiKeyInfo): Record<string, unknown> {
  return {
    id: k.id,
    team_id: k.teamId,
    user_id: k.id,
    role: k.role,
    joined_at: iso(k.createdAt),
    name: k.name,
  }
}

/** The caller as a user: s0 has API keys, not user accounts, so the key stands for its user. */
export function userJson(k: ApiKeyInfo): Record<string, unknown> {
  return {
    id: k.id,
    email: '',
    name: k.name,
    email_verified: false,
    is_admin: k.role === 'admin',
    created_at: iso(k.createdAt),
    updated_at: iso(k.updatedAt),
  }
}

export function regionJson(region: string, gatewayUrl: string): Record<string, unknown> {
  return { id: region, display_name: 's0 (this server)', regional_gateway_url: gatewayUrl, enabled: true }
}

export function quotaJson(q: TeamQuotaInfo): Record<string, unknown> {
  return {
    team_id: q.teamId,
    dimension: q.dimension,
    kind: q.kind,
    limit_value: q.limit,
    interval_ms: q.intervalMs,
    burst_value: q.burst,
    current: q.current,
    remaining: q.limit === null ? null : Math.max(0, q.limit - q.current),
    unlimited: q.limit === null,
    unit: q.unit,
    source: q.source,
    // s0: whether work over the limit is refused (the others are measured and reported).
    enforced: q.enforced,
  }
}

export function usageWindowJson(w: UsageWindowInfo, region: string): Record<string, unknown> {
  return {
    window_id: `uw-${w.id}`,
    region_id: region,
    window_type: w.windowType,
    subject_type: 'team',
    subject_id: w.teamId,
    window_start: iso(w.windowStart),
    window_end: iso(w.windowEnd),
    value: w.value,
    unit: w.unit,
    recorded_at: iso(w.recordedAt),
  }
}
