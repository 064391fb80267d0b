// Schemas of the account routes (`/api-keys`, `/teams`: snake_case as the SDK's generated client
// sends them) and of the quota and usage routes under /api/v1.
import { limits } from '../../core/limits.js'
import { QUOTA_DIMENSIONS } from '../../core/quota-dimensions.js'

const role = { type: 'string', enum: ['admin', 'member'] } as const

export const createApiKeyBody = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    scope: { type: 'string', maxLength: 64 },
    roles: { type: 'array', items: role, minItems: 1, maxItems: 1 },
    // `30d`, `12h`, `90m`, `3600s`; unset: the key never expires.
    expires_in: { type: 'string', pattern: '^[0-9]{1,9}[smhd]$' },
    // s0 extension: a team the caller's team made (its admins act there through the new key).
    team_id: { type: 'string', maxLength: 64 },
  },
} as const

export interface CreateApiKeyBody {
  name: string
  scope?: string
  roles?: Array<'admin' | 'member'>
  expires_in?: string
  team_id?: string
}

export const teamIdQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { team_id: { type: 'string', maxLength: 64 } },
} as const

export const createTeamBody = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    slug: { type: 'string', minLength: 1, maxLength: 64 },
    home_region_id: { type: ['string', 'null'], maxLength: 64 },
  },
} as const

export interface CreateTeamBody {
  name: string
  slug?: string
  home_region_id?: string | null
}

export const updateTeamBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    slug: { type: 'string', minLength: 1, maxLength: 64 },
  },
} as const

export const membersQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { query: { type: 'string', maxLength: 200 } },
} as const

export const dimensionParams = {
  type: 'object',
  required: ['dimension'],
  properties: { dimension: { type: 'string', enum: [...QUOTA_DIMENSIONS] } },
} as const

export const setQuotaBody = {
  type: 'object',
  required: ['limit_value'],
  additionalProperties: false,
  properties: {
    // null removes the team's limit.
    limit_value: { type: ['number', 'null'], minimum: 0 },
    interval_ms: { type: 'integer', minimum: limits.quotaIntervalMsMin, maximum: limits.quotaIntervalMsMax },
    burst_value: { type: 'number', minimum: 0 },
    // A team the caller's team made; unset: the caller's own team.
    team_id: { type: 'string', maxLength: 64 },
  },
} as const

export interface SetQuotaBody {
  limit_value: number | null
  interval_ms?: number
  burst_value?: number
  team_id?: string
}

export const usageQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    cursor: { type: 'string', maxLength: 32 },
    limit: { type: 'integer', minimum: 1, maximum: limits.usageWindowsListMax },
    window_type: { type: 'string', maxLength: 64 },
  },
} as const
