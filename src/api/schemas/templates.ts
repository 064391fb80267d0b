// Schemas of the templates routes: the wire TemplateSpec (camelCase), plus s0's extensions.
import { ENV_NAME_PATTERN } from '../../core/ids.js'
import { DRIVER_NAMES } from '../../runtime/driver.js'
import { REPL_ALIASES, TEMPLATE_ID } from '../../sandboxes/index.js'
import { ID_CHARS_MAX } from './common.js'
import { networkPolicySchema } from './network.js'

const shortText = { type: 'string', maxLength: 1024 } as const
const envVarsSchema = {
  type: 'object',
  maxProperties: 1000,
  additionalProperties: { type: 'string', maxLength: 65536 },
} as const

/** The wire TemplateSpec, plus two s0 extensions: `resources.cpu` / `resources.pids` and `runtime.driver`. */
export const templateSpecSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    description: shortText,
    displayName: { type: 'string', maxLength: 256 },
    tags: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 64 } },
    mainContainer: {
      type: 'object',
      required: ['image', 'resources'],
      additionalProperties: false,
      properties: {
        image: { type: 'string', minLength: 1, maxLength: 4096 },
        imagePullPolicy: { type: 'string', maxLength: 32 },
        env: {
          type: 'array',
          maxItems: 1000,
          items: {
            type: 'object',
            required: ['name'],
            additionalProperties: false,
            properties: {
              name: { type: 'string', pattern: ENV_NAME_PATTERN.source, maxLength: 256 },
              value: { type: 'string', maxLength: 65536 },
            },
          },
        },
        resources: {
          type: 'object',
          required: ['memory'],
          additionalProperties: false,
          properties: {
            memory: { type: 'string', maxLength: 32 },
            ephemeralStorage: { type: 'string', maxLength: 32 },
            cpu: { type: 'string', maxLength: 32 },
            pids: { type: 'integer', minimum: 8, maximum: 32768 },
          },
        },
        securityContext: { type: 'object' },
      },
    },
    volumeMounts: {
      type: 'array',
      maxItems: 64,
      items: {
        type: 'object',
        required: ['name', 'mountPath'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', maxLength: 253 },
          mountPath: { type: 'string', minLength: 1, maxLength: 4096 },
          readOnly: { type: 'boolean' },
        },
      },
    },
    // Of a Kubernetes pod spec s0 reads nodeSelector: the labels a node must carry (placement).
    pod: {
      type: 'object',
      properties: {
        nodeSelector: {
          type: 'object',
          maxProperties: 64,
          additionalProperties: { type: 'string', maxLength: 253 },
        },
      },
    },
    // The default egress policy of its sandboxes (a claim may override it; camelCase subtree).
    network: networkPolicySchema,
    pool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        minIdle: { type: 'integer', minimum: 0, maximum: 1000 },
        maxIdle: { type: 'integer', minimum: 0, maximum: 1000 },
      },
    },
    envVars: envVarsSchema,
    clusterId: { type: 'string', maxLength: 256 },
    runtime: {
      type: 'object',
      additionalProperties: false,
      properties: { driver: { type: 'string', enum: [...DRIVER_NAMES] } },
    },
    // s0 extension: processes each warm sandbox runs before it is claimed.
    warmProcesses: {
      type: 'array',
      maxItems: 8,
      items: {
        type: 'object',
        required: ['type'],
        additionalProperties: false,
        properties: {
          type: { type: 'string', enum: ['repl', 'cmd'] },
          alias: { type: 'string', enum: [...REPL_ALIASES] },
          command: {
            type: 'array',
            minItems: 1,
            maxItems: 256,
            items: { type: 'string', minLength: 1, maxLength: 4096 },
          },
          readiness: {
            type: 'object',
            required: ['type'],
            additionalProperties: false,
            properties: {
              type: { type: 'string', enum: ['process', 'delay', 'output'] },
              delayMs: { type: 'integer', minimum: 0, maximum: 60_000 },
              output: { type: 'string', minLength: 1, maxLength: 1024 },
              timeoutMs: { type: 'integer', minimum: 100, maximum: 300_000 },
            },
          },
        },
      },
    },
  },
} as const

export const templateIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 128 } },
} as const

export const createTemplateBody = {
  type: 'object',
  required: ['template_id', 'spec'],
  additionalProperties: false,
  properties: {
    template_id: { type: 'string', pattern: TEMPLATE_ID.source, maxLength: ID_CHARS_MAX },
    spec: templateSpecSchema,
  },
} as const

export const updateTemplateBody = {
  type: 'object',
  required: ['spec'],
  additionalProperties: false,
  properties: { spec: templateSpecSchema },
} as const

/** POST /templates/from-sandbox (snake_case top level; the overrides camelCase, as the SDK sends). */
export const fromSandboxBody = {
  type: 'object',
  required: ['template_id', 'sandbox_id'],
  additionalProperties: false,
  properties: {
    template_id: { type: 'string', pattern: TEMPLATE_ID.source, maxLength: ID_CHARS_MAX },
    sandbox_id: { type: 'string', minLength: 1, maxLength: ID_CHARS_MAX },
    spec_overrides: {
      type: 'object',
      additionalProperties: false,
      properties: {
        description: shortText,
        displayName: { type: 'string', maxLength: 256 },
        tags: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 64 } },
        pool: templateSpecSchema.properties.pool,
      },
    },
  },
} as const

/** The Idempotency-Key header: printable, bounded. */
export const idempotencyHeaders = {
  type: 'object',
  properties: { 'idempotency-key': { type: 'string', pattern: '^[\\x21-\\x7e]{1,256}$' } },
} as const
