// A fresh, migrated database per test file on the run's Postgres (see test/global-setup.ts).
import { randomBytes } from 'node:crypto'
import { inject } from 'vitest'
import { openDb, type Db } from '../../src/core/db.js'
import { silentLogger } from '../../src/core/log.js'
import { migrate } from '../../src/core/migrate.js'

export interface TestDb {
  db: Db
  url: string
  drop(): Promise<void>
}

export async function freshDb(): Promise<TestDb> {
  const adminUrl = inject('pgUrl')
  const name = `t_${randomBytes(6).toString('hex')}`
  const admin = openDb(adminUrl, { poolSize: 1 })
  await admin.query(`CREATE DATABASE ${name}`)
  await admin.close()
  const url = adminUrl.replace(/\/postgres$/, `/${name}`)
  const db = openDb(url, { poolSize: 5 })
  await migrate(db, silentLogger)
  return {
    db,
    url,
    drop: async () => {
      await db.close()
      const a = openDb(adminUrl, { poolSize: 1 })
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await a.close()
    },
  }
}
