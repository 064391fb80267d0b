// `s0 fsck` and `s0 gc` in-process against a real database and the state directory's local
// object store: a clean check, a collection of unreferenced chunks, damage found (exit 1) and
// command-line mistakes (exit 2).
import { mkdtemp, rm, unlink } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { openChunkStore } from '../../src/blockstore/open.js'
import { run as fsck } from '../../src/cli/fsck-command.js'
import { run as gc } from '../../src/cli/gc-command.js'
import { loadConfig } from '../../src/core/config.js'
import { silentLogger } from '../../src/core/log.js'
import { runCommand } from '../support/cli.js'
import { freshDb, type TestDb } from '../support/db.js'
import { prng, TEAM_A } from '../support/store.js'

let tdb: TestDb
let stateDir: string

beforeAll(async () => {
  tdb = await freshDb()
  stateDir = await mkdtemp(path.join(os.tmpdir(), 's0-cli-store-'))
  vi.stubEnv('DATABASE_URL', tdb.url)
  vi.stubEnv('S0_STATE_DIR', stateDir)
  vi.stubEnv('S0_LOG_LEVEL', 'silent')
  vi.stubEnv('S0_DISK_CACHE_BYTES', '0')
})

afterAll(async () => {
  vi.unstubAllEnvs()
  await tdb?.drop()
  if (stateDir) await rm(stateDir, { recursive: true, force: true })
})

/** Stores one file nothing refers to, through the store the commands open; its pack's path. */
async function storeUnreferenced(seed: number): Promise<string> {
  const config = loadConfig()
  const store = await openChunkStore(config, tdb.db, silentLogger)
  try {
    await store.put(TEAM_A, prng(200 * 1024, seed))
  } finally {
    await store.close()
  }
  const { rows } = await tdb.db.query<{ object_key: string }>(
    'SELECT object_key FROM packs ORDER BY created_at DESC LIMIT 1',
  )
  return path.join(config.stateDir, 'objects', rows[0]?.object_key as string)
}

describe('s0 fsck and s0 gc', () => {
  it('checks a healthy store, then collects what nothing refers to', async () => {
    await storeUnreferenced(1)
    const checked = await runCommand(fsck, ['--json'])
    expect(checked.code).toBe(0)
    expect(JSON.parse(checked.out)).toMatchObject({ packsChecked: 1, problems: [] })

    const dry = await runCommand(gc, ['--dry-run', '--grace-ms', '0', '--json'])
    expect(dry.code).toBe(0)
    expect(JSON.parse(dry.out)).toMatchObject({ dryRun: true, deletedPacks: 1 })
    expect(JSON.parse((await runCommand(fsck, ['--json'])).out)).toMatchObject({ packsChecked: 1 })

    const collected = await runCommand(gc, ['--grace-ms', '0'])
    expect(collected.code).toBe(0)
    expect(collected.out).toMatch(/^gc: marked 0 chunks; freed [1-9]\d* chunks .* deleted 1 packs/)
    expect((await runCommand(fsck, [])).out).toMatch(
      /^fsck: 0 packs, 0 chunks, 0 bytes checked\nfsck: clean\n$/,
    )
  })

  it('exits 1 on damage and 2 on command-line mistakes', async () => {
    await unlink(await storeUnreferenced(2))
    const damaged = await runCommand(fsck, [])
    expect(damaged.code).toBe(1)
    expect(damaged.out).toMatch(/^pack_missing\t/m)
    expect(damaged.out).toMatch(/fsck: 1 problems\n$/)

    const bad = await runCommand(gc, ['--grace-ms', '-1'])
    expect(bad.code).toBe(2)
    expect(bad.err).toMatch(/--grace-ms must be a non-negative integer/)
  })
})
