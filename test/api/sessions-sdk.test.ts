// Execution sessions end to end with the official SDK (npm sandbox0@0.9.5), unchanged: the cases
// of sessions-cases.ts against one s0 server.
import { afterAll, beforeAll } from 'vitest'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'
import { sessionsSdkCases } from './sessions-cases.js'

let server: SandboxTestServer | undefined

beforeAll(async () => {
  server = await startSandboxServer()
}, 120_000)

afterAll(async () => {
  await server?.close()
})

sessionsSdkCases(() => server && { url: server.url, token: server.token, db: server.t.tdb.db })
