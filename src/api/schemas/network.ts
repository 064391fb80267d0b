// The JSON schema of `SandboxNetworkPolicy` (camelCase, as the SDK sends it): its shape and
// bounds. What a schema cannot say (CIDR syntax, references between rules and bindings, legacy
// lists mixed with traffic rules) is checked by egress/policy/compile.ts, which names the field.
import {
  APP_PROTOCOLS,
  AUTH_PROTOCOLS,
  NETWORK_MODES,
  PROJECTION_TYPES,
  TLS_MODES,
} from '../../egress/policy/types.js'

const RULES_MAX = 1_000
const LIST_MAX = 1_000
const text = (maxLength = 253) => ({ type: 'string', maxLength }) as const
const list = (items: object, maxItems = LIST_MAX) => ({ type: 'array', maxItems, items }) as const
const strings = (maxLength = 253) => list(text(maxLength))

const portSpec = {
  type: 'object',
  required: ['port'],
  additionalProperties: false,
  properties: {
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    protocol: { type: 'string', enum: ['tcp', 'udp', 'TCP', 'UDP'] },
    endPort: { type: 'integer', minimum: 1, maximum: 65535 },
  },
} as const

const valueMatch = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: { name: text(256), values: strings(4096), present: { type: 'boolean' } },
} as const

const httpMatch = {
  type: 'object',
  additionalProperties: false,
  properties: {
    methods: strings(32),
    paths: strings(4096),
    pathPrefixes: strings(4096),
    query: list(valueMatch),
    headers: list(valueMatch),
  },
} as const

const allowDeny = (maxLength: number) =>
  ({
    type: 'object',
    additionalProperties: false,
    properties: { allowed: strings(maxLength), denied: strings(maxLength) },
  }) as const

const trafficRule = {
  type: 'object',
  required: ['action'],
  additionalProperties: false,
  properties: {
    name: text(),
    action: { type: 'string', enum: ['allow', 'deny'] },
    cidrs: strings(64),
    domains: strings(),
    ports: list(portSpec),
    appProtocols: list({ type: 'string', enum: [...APP_PROTOCOLS] }),
  },
} as const

const protocolRule = {
  type: 'object',
  required: ['protocol'],
  additionalProperties: false,
  properties: {
    name: text(),
    protocol: { type: 'string', enum: ['http', 'mcp'] },
    domains: strings(),
    ports: list(portSpec),
    tlsMode: { type: 'string', enum: [...TLS_MODES] },
    httpMatch,
    http: {
      type: 'object',
      additionalProperties: false,
      properties: {
        methods: allowDeny(32),
        paths: {
          type: 'object',
          additionalProperties: false,
          properties: {
            allowed: strings(4096),
            denied: strings(4096),
            allowedPrefixes: strings(4096),
            deniedPrefixes: strings(4096),
          },
        },
      },
    },
    mcp: { type: 'object', additionalProperties: false, properties: { tools: allowDeny(256) } },
  },
} as const

const credentialRule = {
  type: 'object',
  required: ['credentialRef'],
  additionalProperties: false,
  properties: {
    name: text(),
    credentialRef: text(),
    rollout: { type: 'string', enum: ['enabled', 'disabled'] },
    protocol: { type: 'string', enum: [...AUTH_PROTOCOLS] },
    tlsMode: { type: 'string', enum: [...TLS_MODES] },
    failurePolicy: { type: 'string', enum: ['fail-closed', 'fail-open'] },
    domains: strings(),
    ports: list(portSpec),
    httpMatch,
  },
} as const

const projection = {
  type: 'object',
  required: ['type'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: [...PROJECTION_TYPES] },
    httpHeaders: {
      type: 'object',
      additionalProperties: false,
      properties: {
        headers: list({
          type: 'object',
          required: ['name', 'valueTemplate'],
          additionalProperties: false,
          properties: { name: text(256), valueTemplate: text(8192) },
        }),
      },
    },
    placeholderSubstitution: {
      type: 'object',
      additionalProperties: false,
      properties: {
        replacements: list({
          type: 'object',
          required: ['placeholder', 'valueTemplate', 'locations'],
          additionalProperties: false,
          properties: {
            placeholder: { type: 'string', minLength: 1, maxLength: 1024 },
            valueTemplate: text(8192),
            locations: list({ type: 'string', enum: ['header', 'query', 'body'] }, 3),
          },
        }),
      },
    },
    tlsClientCertificate: { type: 'object' },
    usernamePassword: { type: 'object' },
    sshProxy: {
      type: 'object',
      additionalProperties: false,
      properties: {
        sandboxPublicKeys: strings(16384),
        upstreamUsername: text(256),
        knownHosts: strings(16384),
      },
    },
  },
} as const

export const networkPolicySchema = {
  type: 'object',
  required: ['mode'],
  additionalProperties: false,
  properties: {
    mode: { type: 'string', enum: [...NETWORK_MODES] },
    egress: {
      type: 'object',
      additionalProperties: false,
      properties: {
        allowedCidrs: strings(64),
        allowedDomains: strings(),
        allowedPorts: list(portSpec),
        deniedDomains: strings(),
        deniedCidrs: strings(64),
        deniedPorts: list(portSpec),
        trafficRules: list(trafficRule, RULES_MAX),
        protocolRules: list(protocolRule, RULES_MAX),
        credentialRules: list(credentialRule, RULES_MAX),
        proxy: {
          type: 'object',
          required: ['type', 'address'],
          additionalProperties: false,
          properties: {
            type: { type: 'string', enum: ['socks5'] },
            address: text(),
            credentialRef: text(),
          },
        },
      },
    },
    credentialBindings: list(
      {
        type: 'object',
        required: ['ref', 'sourceRef', 'projection'],
        additionalProperties: false,
        properties: {
          ref: text(),
          sourceRef: text(),
          projection,
          cachePolicy: { type: 'object', additionalProperties: false, properties: { ttl: text(32) } },
        },
      },
      RULES_MAX,
    ),
  },
} as const
