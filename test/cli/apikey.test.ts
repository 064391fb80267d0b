// `s0 apikey` in-process against a real database: create prints a working key, list shows it
// without the secret, revoke makes authentication fail, and command-line mistakes exit 2.
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { authenticate, ensureBootstrap } from '../../src/accounts/index.js'
import { run } from '../../src/cli/apikey-command.js'
import { silentLogger } from '../../src/core/log.js'
import { runCommand, type CommandResult } from '../support/cli.js'
import { freshDb, type TestDb } from '../support/db.js'

let tdb: TestDb
let dir: string

beforeAll(async () => {
  tdb = await freshDb()
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-apikey-'))
  // The command reads its configuration from the environment, like the real CLI.
  vi.stubEnv('DATABASE_URL', tdb.url)
  vi.stubEnv('S0_STATE_DIR', dir)
  vi.stubEnv('S0_LOG_LEVEL', 'silent')
})

afterAll(async () => {
  vi.unstubAllEnvs()
  await tdb?.drop()
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** Runs `s0 apikey <args>` and captures what it writes. */
function apikey(...args: string[]): Promise<CommandResult> {
  return runCommand(run, args)
}

describe('s0 apikey', () => {
  it('refuses to create a key before any team exists', async () => {
    const r = await apikey('create')
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/no teams yet/)
  })

  it('creates, lists and revokes a key', async () => {
    await ensureBootstrap(tdb.db, dir, silentLogger, { print: () => undefined })
    const created = await apikey('create', '--name', 'ci', '--role', 'member', '--team', 'default')
    expect(created.code).toBe(0)
    const key = created.out.trim()
    expect(key).toMatch(/^s0_[A-Za-z0-9_-]{43}$/)
    const who = await authenticate(tdb.db, key)
    expect(who.role).toBe('member')

    const listed = await apikey('list')
    expect(listed.code).toBe(0)
    expect(listed.out).toMatch(/^ID\s+TEAM\s+PREFIX\s+NAME\s+ROLE\s+CREATED\s+REVOKED$/m)
    expect(listed.out).toContain(who.keyId)
    expect(listed.out).toContain(key.slice(0, 11))
    expect(listed.out).not.toContain(key)

    const revoked = await apikey('revoke', who.keyId)
    expect(revoked.code).toBe(0)
    expect((await apikey('list')).out).toMatch(new RegExp(`^${who.keyId}.*\\d{4}-\\d\\d-\\d\\dT\\S+Z$`, 'm'))
  })

  it('exits 2 on command-line mistakes', async () => {
    for (const args of [
      [],
      ['frob'],
      ['create', '--role', 'boss'],
      ['create', '--bogus'],
      ['revoke'],
      ['revoke', 'a', 'b'],
    ]) {
      const r = await apikey(...args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.err + r.out).toMatch(/usage:/)
    }
    expect((await apikey('create', '--team', 'nope')).code).toBe(2)
  })

  it('revoking an unknown key is not_found', async () => {
    await expect(apikey('revoke', 'key-0000000000000000')).rejects.toMatchObject({ code: 'not_found' })
  })
})
