// The first start: the default team and an admin API key, written to `$stateDir/token` (mode 0600)
// and printed once. Later starts (and concurrent starts on one database) do nothing.
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { ADVISORY_LOCK_KEYS } from '../core/advisory-locks.js'
import type { Db } from '../core/db.js'
import { newTeamId, type ApiKeyId, type TeamId } from '../core/ids.js'
import type { Logger } from '../core/log.js'
import { insertApiKey } from './api-keys.js'

export const TOKEN_FILE_NAME = 'token'
export const DEFAULT_TEAM_NAME = 'default'

export interface BootstrapResult {
  /** Set only on the start that created the default team; the admin key is shown once. */
  created?: { teamId: TeamId; keyId: ApiKeyId; key: string; tokenFile: string }
}

export interface BootstrapOptions {
  /** Where the one-time key line goes (default stdout). */
  print?: (line: string) => void
}

/**
 * On the first start (no teams yet): creates the default team and an admin key, writes the key
 * to `$stateDir/token` (mode 0600) and prints it once. Later starts do nothing.
 */
export async function ensureBootstrap(
  db: Db,
  stateDir: string,
  log: Logger,
  opts: BootstrapOptions = {},
): Promise<BootstrapResult> {
  const tokenFile = path.join(stateDir, TOKEN_FILE_NAME)
  const created = await db.tx(async (c) => {
    // Two servers starting together on one database must not both bootstrap.
    await c.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.bootstrap])
    const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM teams')
    if ((rows[0]?.n ?? 0) > 0) return undefined
    const teamId = newTeamId()
    await c.query('INSERT INTO teams (id, name) VALUES ($1, $2)', [teamId, DEFAULT_TEAM_NAME])
    const { id, key } = await insertApiKey(c, { teamId, name: 'bootstrap admin', role: 'admin' })
    // The file is written before COMMIT: if the write fails, no key exists that nobody can read.
    await writeTokenFile(tokenFile, key)
    return { teamId, keyId: id, key, tokenFile }
  })
  if (!created) return {}
  log.info('bootstrap: created default team and admin API key', {
    teamId: created.teamId,
    keyId: created.keyId,
    tokenFile,
  })
  const print = opts.print ?? ((line: string) => void process.stdout.write(line))
  print(`admin API key: ${created.key}\n(also saved to ${tokenFile}; it is not shown again)\n`)
  return { created }
}

async function writeTokenFile(file: string, key: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, key + '\n', { mode: 0o600 })
  // writeFile's mode applies only to new files; a leftover temp file may have other bits.
  await chmod(tmp, 0o600)
  await rename(tmp, file)
}
