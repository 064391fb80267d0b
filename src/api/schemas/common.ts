// JSON schemas shared by the routes: ids in paths, file paths (bounded by PATH_BYTES_MAX), move
// bodies, environment maps. fastify validates every input against these before a handler runs.
import { ENV_NAME_PATTERN } from '../../core/ids.js'
import { PATH_BYTES_MAX } from '../../snapshots/paths.js'

/** Ids are opaque to the wire, bounded here; the domain answers 404 for a malformed one. */
export const ID_CHARS_MAX = 64

export const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: ID_CHARS_MAX } },
} as const

export interface IdParams {
  id: string
}

export const filePath = { type: 'string', minLength: 1, maxLength: PATH_BYTES_MAX } as const

/** `?path=` of the files routes, with the write route's `mkdir` / `recursive`. */
export const pathQuery = {
  type: 'object',
  required: ['path'],
  additionalProperties: false,
  properties: {
    path: filePath,
    mkdir: { type: 'string', enum: ['true', 'false'] },
    recursive: { type: 'string', enum: ['true', 'false'] },
  },
} as const

export interface PathQuery {
  path: string
  mkdir?: 'true' | 'false'
  recursive?: 'true' | 'false'
}

export const moveBody = {
  type: 'object',
  required: ['source', 'destination'],
  additionalProperties: false,
  properties: { source: filePath, destination: filePath },
} as const

export interface MoveBody {
  source: string
  destination: string
}

/** Environment variables of a sandbox or a context (`null` is an empty map). */
export const envVars = {
  type: ['object', 'null'],
  maxProperties: 1000,
  propertyNames: { pattern: ENV_NAME_PATTERN.source, maxLength: 256 },
  additionalProperties: { type: 'string', maxLength: 65536 },
} as const
