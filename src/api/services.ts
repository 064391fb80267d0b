// What the API's plugins are given: the domain services of this server. A service that is absent
// (a storage-only server, a test) leaves its routes unregistered.
import type { ChunkStore } from '../blockstore/chunk-store.js'
import type { Config } from '../core/config.js'
import type { Db } from '../core/db.js'
import type { CredentialSourceService } from '../egress/credentials/index.js'
import type { Logger } from '../core/log.js'
import type { MountManager } from '../fuse/mounts.js'
import type { SandboxService } from '../sandboxes/index.js'
import type { VolumeEngine } from '../snapshots/engine.js'

export interface ApiServices {
  db: Db
  /** The chunk store; absent on an API replica (`s0 api`), which stores nothing itself. */
  chunkStore?: ChunkStore
  /** The volume engine; without it the volume routes are not served. */
  volumes?: VolumeEngine
  /** Sandboxes, templates, contexts and sandbox files; without it those routes are not served. */
  sandboxes?: SandboxService
  /** FUSE mounts on this host; without it the mount routes are not served. */
  mounts?: MountManager
  /** Credential sources (sealed with the server secret key); without it those routes are not served. */
  credentials?: CredentialSourceService
  config: Config
  log: Logger
}

/** The options every resource plugin takes. */
export interface PluginOptions {
  services: ApiServices
}
