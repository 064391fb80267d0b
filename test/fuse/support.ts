// A volume mounted with FUSE for a test: real Postgres, a real chunk store, a real mount.
import { mkdtemp, rm, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../src/core/log.js'
import { FuseMount, type MountOptions } from '../../src/fuse/mount.js'
import type { TransportName } from '../../src/fuse/transport.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { openTestStore, TEAM_A, type TestStore } from '../support/store.js'

export interface MountedVolume {
  t: TestStore
  engine: VolumeEngine
  volumeId: string
  mount: FuseMount
  dir: string
  /** Unmounts, closes the engine and the store, removes the directories. */
  close(): Promise<void>
}

/**
 * Runs this file's mounts on `transport` (the `*.fuse-native.test.ts` variants: the same suite
 * on the other transport). Mounts read S0_FUSE_TRANSPORT when they are made, and a server a test
 * starts inherits it; each test file runs in its own process.
 */
export function useTransport(transport: TransportName): void {
  process.env.S0_FUSE_TRANSPORT = transport
}

export async function mountTestVolume(opts: MountOptions = {}): Promise<MountedVolume> {
  const t = await openTestStore({ store: { diskCacheBytes: 0 } })
  const engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  const v = await engine.create(TEAM_A)
  const base = await mkdtemp(join(tmpdir(), 's0-fuse-'))
  await chmod(base, 0o755)
  const dir = join(base, 'mnt')
  const mount = await FuseMount.mount(await engine.vfs(TEAM_A, v.id), dir, opts, silentLogger)
  return {
    t,
    engine,
    volumeId: v.id,
    mount,
    dir,
    async close() {
      await mount.unmount()
      await engine.close()
      await t.close()
      await rm(base, { recursive: true, force: true })
    },
  }
}
