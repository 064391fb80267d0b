// Schemas of app services (Sandbox0's `SandboxAppService`, snake_case): the PUT body of
// /sandboxes/{id}/services and each item of a claim's `config.services`. Shapes only; the
// domain (sandboxes/services/model.ts) checks the rest (unique ids, ports, hashes, prefixes).
import { limits } from '../../core/limits.js'
import { envVars } from './common.js'

const str = (max: number) => ({ type: 'string', maxLength: max }) as const
const strList = (items: number, max: number) => ({ type: 'array', maxItems: items, items: str(max) }) as const
const pathString = { type: 'string', minLength: 1, maxLength: 1024 } as const

const routeSchema = {
  type: 'object',
  required: ['id'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 63, pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' },
    path_prefix: pathString,
    methods: {
      type: 'array',
      maxItems: 16,
      items: { type: 'string', pattern: '^[A-Za-z]{1,16}$' },
    },
    rewrite_prefix: pathString,
    auth: {
      type: 'object',
      required: ['mode'],
      additionalProperties: false,
      properties: {
        mode: { type: 'string', enum: ['none', 'bearer', 'header'] },
        bearer_token_sha256: str(64),
        header_name: str(128),
        header_value_sha256: str(64),
      },
    },
    cors: {
      type: 'object',
      additionalProperties: false,
      properties: {
        allowed_origins: strList(64, 512),
        allowed_methods: strList(16, 16),
        allowed_headers: strList(64, 128),
        expose_headers: strList(64, 128),
        allow_credentials: { type: 'boolean' },
        max_age_seconds: { type: 'integer', minimum: 0, maximum: 86_400 },
      },
    },
    rate_limit: {
      type: 'object',
      required: ['rps', 'burst'],
      additionalProperties: false,
      properties: {
        rps: { type: 'number', exclusiveMinimum: 0, maximum: 100_000 },
        burst: { type: 'integer', minimum: 1, maximum: 100_000 },
      },
    },
    timeout_seconds: { type: 'integer', minimum: 1, maximum: limits.ingressTimeoutSecMax },
    // Required by the SDK's model; a body without it means "do not wake".
    resume: { type: 'boolean' },
  },
} as const

export const appServiceSchema = {
  type: 'object',
  required: ['id', 'ingress'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', minLength: 1, maxLength: 63 },
    display_name: str(256),
    port: { type: 'integer', minimum: 1, maximum: 65_535 },
    runtime: {
      type: 'object',
      required: ['type'],
      additionalProperties: false,
      properties: {
        type: { type: 'string', enum: ['manual', 'cmd', 'function'] },
        command: { type: 'array', minItems: 1, maxItems: 256, items: str(8192) },
        cwd: pathString,
        env_vars: envVars,
        function: {
          type: 'object',
          required: ['runtime', 'source'],
          additionalProperties: false,
          properties: {
            runtime: { type: 'string', enum: ['python'] },
            handler: str(128),
            max_concurrency: { type: 'integer', minimum: 0, maximum: 1024 },
            source: {
              type: 'object',
              required: ['type', 'code'],
              additionalProperties: false,
              properties: {
                type: { type: 'string', enum: ['inline'] },
                // Bytes are checked by the domain (a character may take 4).
                code: { type: 'string', maxLength: limits.serviceFunctionCodeBytesMax },
              },
            },
          },
        },
      },
    },
    ingress: {
      type: 'object',
      required: ['public'],
      additionalProperties: false,
      properties: {
        public: { type: 'boolean' },
        routes: { type: 'array', maxItems: 32, items: routeSchema },
      },
    },
    health_check: {
      type: 'object',
      additionalProperties: false,
      properties: { path: pathString },
    },
  },
} as const

export const servicesBody = {
  type: 'object',
  required: ['services'],
  additionalProperties: false,
  properties: {
    services: { type: 'array', maxItems: limits.servicesPerSandboxMax, items: appServiceSchema },
  },
} as const
