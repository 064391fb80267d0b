// Schemas of the SSH key routes (`/users/me/ssh-keys`, snake_case as the SDK's generated client
// sends them). The domain (accounts/ssh-keys.ts) parses the key itself and names what is wrong.
import { limits } from '../../core/limits.js'

export const sshKeyCreateBody = {
  type: 'object',
  required: ['name', 'public_key'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    public_key: { type: 'string', minLength: 1, maxLength: limits.sshPublicKeyBytesMax },
  },
} as const

export const sshKeyIdParams = {
  type: 'object',
  required: ['id'],
  // A malformed id is a 404 (it cannot exist), answered by the domain.
  properties: { id: { type: 'string', maxLength: 256 } },
} as const
