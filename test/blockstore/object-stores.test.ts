// Runs the ObjectStore contract against every implementation (local directory, memory, S3 over
// HTTP against a real s3rver started here) and the decorators.
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { LocalObjectStore } from '../../src/blockstore/local-object-store.js'
import { MemoryObjectStore } from '../../src/blockstore/memory-object-store.js'
import { ResilientObjectStore } from '../../src/blockstore/resilient-object-store.js'
import { S3ObjectStore } from '../../src/blockstore/s3-object-store.js'
import type { ObjectStore } from '../../src/blockstore/object-store.js'
import { startS3rver, type S3rverHandle } from '../../tools/s3rver.js'
import { FaultyObjectStore } from '../support/faulty-object-store.js'
import { objectStoreContract } from './object-store.contract.js'

let dir: string
let local: LocalObjectStore
let s3rver: S3rverHandle
let s3: S3ObjectStore
let s3Prefixed: S3ObjectStore

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-objects-'))
  local = await LocalObjectStore.open(dir)
  s3rver = await startS3rver()
  // A small page size makes the listing test cross several pages.
  s3 = new S3ObjectStore(s3rver.config, { listPageSize: 7 })
  s3Prefixed = new S3ObjectStore({ ...s3rver.config, prefix: 'tenant-a/s0' }, { listPageSize: 5 })
})

afterAll(async () => {
  await s3?.close()
  await s3Prefixed?.close()
  await s3rver?.stop()
  await rm(dir, { recursive: true, force: true })
})

objectStoreContract('local directory', () => local)
const memory = new MemoryObjectStore()
objectStoreContract('memory', () => memory)
objectStoreContract('S3 (s3rver over HTTP)', () => s3)
objectStoreContract('S3 with a key prefix', () => s3Prefixed)
objectStoreContract('resilient(local)', (): ObjectStore => new ResilientObjectStore(local))
objectStoreContract(
  'resilient(faulty(S3)) with 20% injected errors and truncations',
  (): ObjectStore =>
    new ResilientObjectStore(new FaultyObjectStore(s3, { seed: 7, errorRate: 0.2, truncateRate: 0.2 }), {
      backoffBaseMs: 1,
      retriesMax: 12,
    }),
)
