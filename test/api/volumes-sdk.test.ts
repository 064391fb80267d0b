// The volume cases of the official SDK (volumes-cases.ts) against one listening s0 server, with
// real Postgres and a real chunk store underneath.
import { afterAll, beforeAll } from 'vitest'
import { startTestServer, type TestServer } from '../support/server.js'
import { volumesSdkCases } from './volumes-cases.js'

let server: TestServer | undefined

beforeAll(async () => {
  server = await startTestServer()
})

afterAll(async () => {
  await server?.close()
})

volumesSdkCases(() => server && { url: server.url, token: server.token, db: server.t.tdb.db })
