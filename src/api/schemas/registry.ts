// Schemas of /registry/credentials. The SDK's call sends `{targetImage}` (upstream hands out
// credentials to push to its own registry); s0 has no registry of its own and takes, instead,
// a team's credentials for a private registry its templates pull from: `{registry, username, password}`.
export const registryCredentialsBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    targetImage: { type: 'string', maxLength: 4096 },
    registry: { type: 'string', minLength: 1, maxLength: 256 },
    username: { type: 'string', minLength: 1, maxLength: 1024 },
    password: { type: 'string', minLength: 1, maxLength: 65536 },
  },
} as const

export const registryParams = {
  type: 'object',
  required: ['registry'],
  properties: { registry: { type: 'string', minLength: 1, maxLength: 256 } },
} as const
