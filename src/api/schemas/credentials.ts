// Schemas of the credential-source routes (camelCase bodies, as the SDK sends them). They bound
// shapes and sizes; the domain (egress/credentials/spec.ts) checks the rest (PEMs, the member a
// kind needs) and answers 400 naming the field.
import { limits } from '../../core/limits.js'
import { RESOLVER_KINDS } from '../../egress/policy/types.js'

const pem = { type: 'string', maxLength: limits.credentialPemBytesMax } as const

export const credentialSourceNameParams = {
  type: 'object',
  required: ['name'],
  // A malformed name is a 404 (it cannot exist), answered by the domain.
  properties: { name: { type: 'string', maxLength: 256 } },
} as const

export const credentialSourceWriteBody = {
  type: 'object',
  required: ['name', 'resolverKind', 'spec'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: limits.credentialSourceNameCharsMax },
    resolverKind: { type: 'string', enum: [...RESOLVER_KINDS] },
    spec: {
      type: 'object',
      additionalProperties: false,
      minProperties: 1,
      maxProperties: 1,
      properties: {
        staticHeaders: {
          type: 'object',
          additionalProperties: false,
          properties: {
            values: {
              type: 'object',
              maxProperties: limits.credentialHeaderValuesMax,
              propertyNames: { maxLength: limits.credentialFieldNameCharsMax },
              additionalProperties: { type: 'string', maxLength: limits.credentialHeaderValueBytesMax },
            },
          },
        },
        staticTLSClientCertificate: {
          type: 'object',
          required: ['certificatePem', 'privateKeyPem'],
          additionalProperties: false,
          properties: { certificatePem: pem, privateKeyPem: pem, caPem: pem },
        },
        staticUsernamePassword: {
          type: 'object',
          required: ['username', 'password'],
          additionalProperties: false,
          properties: {
            username: { type: 'string', maxLength: limits.credentialUsernamePasswordBytesMax },
            password: { type: 'string', maxLength: limits.credentialUsernamePasswordBytesMax },
          },
        },
        staticSSHPrivateKey: {
          type: 'object',
          required: ['privateKeyPem'],
          additionalProperties: false,
          properties: {
            privateKeyPem: pem,
            passphrase: { type: 'string', maxLength: limits.credentialPassphraseBytesMax },
          },
        },
      },
    },
  },
} as const
