// Builds the configured object store and chunk store.
import path from 'node:path'
import type { Config } from '../core/config.js'
import type { Db } from '../core/db.js'
import type { Logger } from '../core/log.js'
import { ChunkStore } from './chunk-store.js'
import { LocalObjectStore } from './local-object-store.js'
import { ResilientObjectStore } from './resilient-object-store.js'
import { S3ObjectStore } from './s3-object-store.js'

export async function openObjectStore(config: Config): Promise<ResilientObjectStore> {
  const inner =
    config.objectStore === 's3'
      ? new S3ObjectStore(config.s3)
      : await LocalObjectStore.open(path.join(config.stateDir, 'objects'))
  return new ResilientObjectStore(inner)
}

export async function openChunkStore(config: Config, db: Db, log: Logger): Promise<ChunkStore> {
  const objects = await openObjectStore(config)
  return ChunkStore.open({
    db,
    objects,
    log,
    memoryCacheBytes: config.memoryCacheBytes,
    diskCacheDir: path.join(config.stateDir, 'cache', 'chunks'),
    diskCacheBytes: config.diskCacheBytes,
  })
}
