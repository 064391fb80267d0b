// Starts one real Postgres for the whole test run (embedded binaries, a temp data directory, a
// Unix socket of its own: no TCP port to collide with anything); each test file then creates a
// fresh database of its own (test/support/db.ts).
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import type { TestProject } from 'vitest/node'
import { startEmbeddedPg } from '../src/core/embedded-pg.js'
import { createLogger } from '../src/core/log.js'

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 's0-test-pg-'))
  const pg = await startEmbeddedPg({ dir, log: createLogger('warn') })
  project.provide('pgUrl', pg.url)
  return async () => {
    await pg.stop()
    await rm(dir, { recursive: true, force: true })
    if (pg.home !== dir) await rm(pg.home, { recursive: true, force: true })
  }
}
