// Versioned schema migrations (migrations/NNNN_name.sql), applied in order at start, each in its
// own transaction, under an advisory lock so concurrent starters do not race.
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ADVISORY_LOCK_KEYS } from './advisory-locks.js'
import type { Db } from './db.js'
import type { Logger } from './log.js'

// src/core and dist/core are both two levels below the package root.
export const MIGRATIONS_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'migrations',
)

export interface Migration {
  version: number
  name: string
  sql: string
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort()
  const out: Migration[] = []
  for (const f of files) {
    out.push({
      version: Number(f.slice(0, 4)),
      name: f.slice(5, -4),
      sql: await readFile(path.join(dir, f), 'utf8'),
    })
  }
  out.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new Error(`migration ${m.version}_${m.name}: versions must run 1, 2, 3... without gaps`)
  })
  return out
}

export async function migrate(db: Db, log: Logger): Promise<number> {
  const migrations = await loadMigrations()
  return db.tx(async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.migrations])
    await c.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
    const { rows } = await c.query<{ version: number }>('SELECT version FROM schema_migrations')
    const applied = new Set(rows.map((r) => r.version))
    const newest = Math.max(0, ...applied)
    if (newest > migrations.length) {
      throw new Error(
        `database schema version ${newest} is newer than this s0 (${migrations.length}); upgrade s0`,
      )
    }
    let count = 0
    for (const m of migrations) {
      if (applied.has(m.version)) continue
      await c.query(m.sql)
      await c.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
      log.info('migration applied', { version: m.version, name: m.name })
      count++
    }
    return count
  })
}
