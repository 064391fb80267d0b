// Schemas of the volumes routes: create, fork, snapshots, mounts, archive import.
import { ID_CHARS_MAX } from './common.js'

const posixId = { type: 'integer', minimum: 0, maximum: 4294967295 } as const
const accessMode = { type: 'string', enum: ['RWO', 'ROX', 'RWX'] } as const

export const volumeSnapshotParams = {
  type: 'object',
  required: ['id', 'snapshot_id'],
  properties: {
    id: { type: 'string', maxLength: ID_CHARS_MAX },
    snapshot_id: { type: 'string', maxLength: ID_CHARS_MAX },
  },
} as const

export interface VolumeSnapshotParams {
  id: string
  snapshot_id: string
}

export const createVolumeBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    snapshot_id: { type: 'string', maxLength: ID_CHARS_MAX },
    backend: { type: 'string', enum: ['s0fs'] },
    default_posix_uid: posixId,
    default_posix_gid: posixId,
    access_mode: accessMode,
  },
} as const

export interface VolumeOptionsBody {
  snapshot_id?: string
  default_posix_uid?: number
  default_posix_gid?: number
  access_mode?: 'RWO' | 'ROX' | 'RWX'
}

export const forkVolumeBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: { default_posix_uid: posixId, default_posix_gid: posixId, access_mode: accessMode },
} as const

export const deleteVolumeQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { force: { type: 'string', enum: ['true', 'false'] } },
} as const

export const createVolumeSnapshotBody = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 255 },
    description: { type: 'string', maxLength: 4096 },
  },
} as const

export const mountIdParams = {
  type: 'object',
  required: ['id', 'mount_id'],
  properties: {
    id: { type: 'string', minLength: 1, maxLength: ID_CHARS_MAX, pattern: '^[A-Za-z0-9-]+$' },
    mount_id: { type: 'string', minLength: 1, maxLength: ID_CHARS_MAX, pattern: '^mnt-[a-f0-9]+$' },
  },
} as const

export const createMountBody = {
  type: ['object', 'null'],
  additionalProperties: false,
  properties: {
    read_only: { type: 'boolean' },
    durability: { type: 'string', enum: ['close', 'fsync'] },
  },
} as const

export const archiveQuery = {
  type: 'object',
  required: ['path'],
  additionalProperties: false,
  properties: { path: { type: 'string', minLength: 1, maxLength: 4096 } },
} as const
