// A child process for test/api/bugs.test.ts: an API server whose one route fails an assertion,
// with the default bug handling. It must die of it; answering anything would be the bug.
import { buildServer, type ApiServices } from '../../src/api/server.js'
import { assert } from '../../src/core/assert.js'
import { loadConfig } from '../../src/core/config.js'
import { silentLogger } from '../../src/core/log.js'

// The route below needs none of the services: the storage and the database are never touched.
const services = { config: loadConfig({}), log: silentLogger } as unknown as ApiServices
const app = buildServer(services)
app.get('/bug', async () => {
  assert(false, 'an invariant broke')
})
const answer = await app.inject({ method: 'GET', url: '/bug' }).then(
  (res) => res.statusCode,
  (err: unknown) => (err as Error).message,
)
process.stdout.write(`answered ${JSON.stringify(answer)}\n`)
// Give the crash (scheduled on the next tick) its chance before exiting cleanly.
await new Promise((r) => setTimeout(r, 1000))
process.exit(0)
