// JSON schemas of the workspace sync routes (an s0 extension; docs/SYNC.md): roots and paths
// bounded like the files API's, hashes as 64 hex digits, versions as the server gave them.
import { PATH_BYTES_MAX } from '../../snapshots/paths.js'
import { ID_CHARS_MAX } from './common.js'

const root = { type: 'string', minLength: 1, maxLength: PATH_BYTES_MAX } as const
const rel = { type: 'string', minLength: 1, maxLength: PATH_BYTES_MAX } as const
const hash = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const
const version = { type: 'string', minLength: 1, maxLength: 200 } as const
const base = { anyOf: [version, { type: 'null' }] } as const
const mode = { type: 'integer', minimum: 0, maximum: 0o7777 } as const
const ns = { type: 'string', pattern: '^-?[0-9]{1,20}$' } as const

export const syncRootQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { root },
} as const

export const syncChangesQuery = {
  type: 'object',
  required: ['cursor'],
  additionalProperties: false,
  properties: {
    root,
    cursor: { type: 'string', minLength: 1, maxLength: 64 },
    wait_ms: { type: 'integer', minimum: 0, maximum: 60_000 },
  },
} as const

export const syncFileQuery = {
  type: 'object',
  required: ['path'],
  additionalProperties: false,
  properties: { root, path: rel },
} as const

export const chunkParams = {
  type: 'object',
  required: ['id', 'hash'],
  properties: { id: { type: 'string', maxLength: ID_CHARS_MAX }, hash },
} as const

export const chunkPutQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { delta: { type: 'string', enum: ['true', 'false'] } },
} as const

export const signaturesBody = {
  type: 'object',
  required: ['hashes'],
  additionalProperties: false,
  properties: {
    hashes: { type: 'array', items: hash, maxItems: 64 },
    root,
    /** Files whose content is inline (small): signed as a chunk too. */
    paths: { type: 'array', items: rel, maxItems: 64 },
  },
} as const

export const missingBody = {
  type: 'object',
  required: ['hashes'],
  additionalProperties: false,
  properties: { hashes: { type: 'array', items: hash, maxItems: 10_000 } },
} as const

const chunkList = {
  type: 'array',
  maxItems: 1_000_000,
  items: {
    type: 'object',
    required: ['hash', 'size'],
    additionalProperties: false,
    properties: { hash, size: { type: 'integer', minimum: 1 } },
  },
} as const

const op = (
  name: string,
  required: string[],
  properties: Record<string, unknown>,
): Record<string, unknown> => ({
  type: 'object',
  required: ['op', 'path', ...required],
  additionalProperties: false,
  properties: { op: { const: name }, path: rel, ...properties },
})

export const commitBody = {
  type: 'object',
  required: ['idempotency_key', 'ops'],
  additionalProperties: false,
  properties: {
    root,
    idempotency_key: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{8,128}$' },
    ops: {
      type: 'array',
      maxItems: 1_000,
      items: {
        oneOf: [
          op('put', ['base', 'mode', 'mtime_ns', 'chunks'], { base, mode, mtime_ns: ns, chunks: chunkList }),
          op('mkdir', ['base', 'mode', 'mtime_ns'], { base, mode, mtime_ns: ns }),
          op('symlink', ['base', 'target', 'mtime_ns'], {
            base,
            target: { type: 'string', minLength: 1, maxLength: 4096 },
            mtime_ns: ns,
          }),
          op('chmod', ['base', 'mode'], { base: version, mode }),
          op('delete', ['base'], { base: version }),
          op('rename', ['from', 'base', 'to_base'], { from: rel, base: version, to_base: base }),
        ],
      },
    },
  },
} as const

export interface SyncRootQuery {
  root?: string
}
export interface SyncChangesQuery {
  root?: string
  cursor: string
  wait_ms?: number
}
export interface SyncFileQuery {
  root?: string
  path: string
}
export interface ChunkParams {
  id: string
  hash: string
}
export interface ChunkPutQuery {
  delta?: 'true' | 'false'
}
export interface SignaturesBody {
  hashes: string[]
  root?: string
  paths?: string[]
}
export interface MissingBody {
  hashes: string[]
}
export type WireOp =
  | {
      op: 'put'
      path: string
      base: string | null
      mode: number
      mtime_ns: string
      chunks: { hash: string; size: number }[]
    }
  | { op: 'mkdir'; path: string; base: string | null; mode: number; mtime_ns: string }
  | { op: 'symlink'; path: string; base: string | null; target: string; mtime_ns: string }
  | { op: 'chmod'; path: string; base: string; mode: number }
  | { op: 'delete'; path: string; base: string }
  | { op: 'rename'; path: string; from: string; base: string; to_base: string | null }
export interface CommitBody {
  root?: string
  idempotency_key: string
  ops: WireOp[]
}
