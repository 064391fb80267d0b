// A writer process for the kill -9 test: stores deterministic files one after another and prints
// `acked <i> <refs-json>` after each write is acknowledged (durable and indexed).
import { ChunkStore } from '../../src/blockstore/chunk-store.js'
import { LocalObjectStore } from '../../src/blockstore/local-object-store.js'
import { ResilientObjectStore } from '../../src/blockstore/resilient-object-store.js'
import { openDb } from '../../src/core/db.js'
import { asTeamId } from '../../src/core/ids.js'
import { silentLogger } from '../../src/core/log.js'
import { prng } from './store.js'

const [dbUrl, objectsDir] = process.argv.slice(2) as [string, string]
const db = openDb(dbUrl, { poolSize: 3 })
const store = await ChunkStore.open({
  db,
  objects: new ResilientObjectStore(await LocalObjectStore.open(objectsDir)),
  log: silentLogger,
})
const team = asTeamId('team-crash')
for (let i = 0; ; i++) {
  const size = i % 4 === 0 ? 6 * 1024 * 1024 + i : 64 * 1024 + i
  const refs = await store.put(team, prng(size, 9000 + i))
  process.stdout.write(`acked ${i} ${JSON.stringify(refs.map((r) => [r.hash.toString('hex'), r.size]))}\n`)
}
