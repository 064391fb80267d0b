// Schemas of the sandboxes routes: claim, update, list, refresh, pause, snapshots, fork, restore.
import { limits } from '../../core/limits.js'
import { VISIBLE_STATUSES } from '../../sandboxes/index.js'
import { envVars, ID_CHARS_MAX } from './common.js'
import { networkPolicySchema } from './network.js'
import { appServiceSchema } from './services.js'

export const ttlSeconds = { type: 'integer', minimum: 0, maximum: limits.sandboxTtlSecMax } as const

const resources = {
  type: 'object',
  additionalProperties: false,
  properties: { memory: { type: 'string', maxLength: 32 } },
} as const

// s0 extension at claim: the root file system's size (the SDK has it on templates only).
const claimResources = {
  type: 'object',
  additionalProperties: false,
  properties: { ...resources.properties, ephemeralStorage: { type: 'string', maxLength: 32 } },
} as const

const configProperties = {
  env_vars: envVars,
  resources,
  ttl: ttlSeconds,
  hard_ttl: ttlSeconds,
  network: networkPolicySchema,
  auto_resume: { type: 'boolean' },
} as const

export const claimBody = {
  type: 'object',
  required: ['template'],
  additionalProperties: false,
  properties: {
    template: { type: 'string', minLength: 1, maxLength: 128 },
    snapshot_id: { type: 'string', maxLength: 128 },
    mounts: {
      type: 'array',
      maxItems: 16,
      items: {
        type: 'object',
        required: ['sandboxvolume_id', 'mount_point'],
        additionalProperties: false,
        properties: {
          sandboxvolume_id: { type: 'string', maxLength: ID_CHARS_MAX },
          mount_point: { type: 'string', maxLength: 4096 },
          // s0 extension (a template's volumeMounts[].readOnly also makes a mount read-only).
          read_only: { type: 'boolean' },
        },
      },
    },
    config: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ...configProperties,
        resources: claimResources,
        // Checked further (http/https url, absolute watch_dir) by the domain (sandboxes/webhooks).
        webhook: {
          type: 'object',
          additionalProperties: false,
          properties: {
            url: { type: 'string', maxLength: limits.webhookUrlCharsMax },
            secret: { type: 'string', maxLength: limits.webhookSecretCharsMax },
            watch_dir: { type: 'string', maxLength: 4096 },
          },
        },
        services: { type: 'array', maxItems: limits.servicesPerSandboxMax, items: appServiceSchema },
      },
    },
  },
} as const

export const updateBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    config: { type: 'object', additionalProperties: false, properties: configProperties },
  },
} as const

export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { type: 'string', enum: [...VISIBLE_STATUSES] },
    template_id: { type: 'string', maxLength: 128 },
    paused: { type: 'string', enum: ['true', 'false'] },
    limit: { type: 'integer', minimum: 1, maximum: limits.sandboxListEntriesMax },
    offset: { type: 'integer', minimum: 0, maximum: 1_000_000 },
  },
} as const

export const refreshBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { duration: { type: 'integer', minimum: 1, maximum: limits.sandboxTtlSecMax } },
} as const

export const pauseQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { keep_memory: { type: 'string', enum: ['true', 'false'] } },
} as const

export const snapshotIdParams = {
  type: 'object',
  required: ['snapshot_id'],
  properties: { snapshot_id: { type: 'string', maxLength: ID_CHARS_MAX } },
} as const

export const createSnapshotBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', maxLength: 255 },
    description: { type: 'string', maxLength: 4096 },
    expires_at: { type: 'string', format: 'date-time' },
  },
} as const

export const restoreBody = {
  type: 'object',
  required: ['snapshot_id'],
  additionalProperties: false,
  properties: { snapshot_id: { type: 'string', minLength: 1, maxLength: ID_CHARS_MAX } },
} as const

export const forkBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    config: {
      type: 'object',
      additionalProperties: false,
      properties: { ttl: ttlSeconds, hard_ttl: ttlSeconds },
    },
  },
} as const
