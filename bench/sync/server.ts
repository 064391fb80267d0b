// The server the sync suite's clients talk to: this process serves the API as the volumes bench
// does (embedded Postgres, the configured local chunk store as `s0 server` opens it, an admin
// key), and the suite reads and writes volume files through the same HTTP API as any client.
import path from 'node:path'
import { createApiKey } from '../../src/accounts/index.js'
import { buildServer } from '../../src/api/server.js'
import { openChunkStore } from '../../src/blockstore/open.js'
import { loadConfig } from '../../src/core/config.js'
import { asTeamId } from '../../src/core/ids.js'
import type { Logger } from '../../src/core/log.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { benchDatabase } from '../lib.js'

const TEAM = asTeamId('team-bench-sync')
/** A files API call that takes longer is a hung server, not a sample. */
export const API_TIMEOUT_MS = 30_000

export interface SyncServer {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  url: string
  token: string
  createVolume(): Promise<string>
  /** The file's bytes, or undefined when it does not exist (yet). */
  readFile(volumeId: string, rel: string): Promise<Buffer | undefined>
  writeFile(volumeId: string, rel: string, body: Buffer): Promise<void>
}

/** Starts the server; `defer` receives the steps that stop it, to run in reverse order. */
export async function startSyncServer(
  work: string,
  log: Logger,
  defer: (step: () => Promise<void>) => void,
): Promise<SyncServer> {
  const database = await benchDatabase(work, log, TEAM)
  defer(() => database.close())
  // A minimal environment, not ours: nothing of the caller's S0_* settings leaks into the bench.
  const config = loadConfig({ S0_STATE_DIR: path.join(work, 'state') })
  const chunkStore = await openChunkStore(config, database.db, log)
  defer(() => chunkStore.close())
  const volumes = new VolumeEngine({ db: database.db, chunks: chunkStore, log })
  defer(() => volumes.close())
  const { key: token } = await createApiKey(database.db, { teamId: TEAM, name: 'bench-sync', role: 'admin' })
  const app = buildServer({ db: database.db, chunkStore, volumes, config, log })
  defer(() => app.close())
  const url = (await app.listen({ host: '127.0.0.1', port: 0 })).replace(/\/+$/, '')
  const auth = { authorization: `Bearer ${token}` }
  const filesUrl = (volumeId: string, rel: string): string =>
    `${url}/api/v1/sandboxvolumes/${volumeId}/files?path=${encodeURIComponent('/' + rel)}`
  return {
    url,
    token,
    async createVolume() {
      const res = await fetch(`${url}/api/v1/sandboxvolumes`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: '{}',
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      })
      if (!res.ok) throw new Error(`create volume: ${res.status} ${await res.text()}`)
      return ((await res.json()) as { data: { id: string } }).data.id
    },
    async readFile(volumeId, rel) {
      // Accept */* (fetch's default): the raw bytes, not the base64 JSON form.
      const res = await fetch(filesUrl(volumeId, rel), {
        headers: auth,
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      })
      if (res.status === 404) {
        await res.body?.cancel()
        return undefined
      }
      if (!res.ok) throw new Error(`read ${rel}: ${res.status} ${await res.text()}`)
      return Buffer.from(await res.arrayBuffer())
    },
    async writeFile(volumeId, rel, body) {
      const res = await fetch(filesUrl(volumeId, rel), {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/octet-stream' },
        body,
        signal: AbortSignal.timeout(API_TIMEOUT_MS),
      })
      if (!res.ok) throw new Error(`write ${rel}: ${res.status} ${await res.text()}`)
      await res.body?.cancel()
    },
  }
}
