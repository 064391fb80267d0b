// Opens the configured Postgres (DATABASE_URL, or the embedded one under the state directory)
// and brings its schema up to date.
import path from 'node:path'
import type { Config } from './config.js'
import { openDb, type Db } from './db.js'
import { startEmbeddedPg } from './embedded-pg.js'
import type { Logger } from './log.js'
import { migrate } from './migrate.js'

export interface Database {
  db: Db
  url: string
  /** Closes the pool; stops the embedded server when this process started it and `stopServer`. */
  close(opts?: { stopServer?: boolean }): Promise<void>
}

export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  let url = config.databaseUrl
  let stopServer: (() => Promise<void>) | undefined
  if (!url) {
    const pg = await startEmbeddedPg({ dir: path.join(config.stateDir, 'pg'), port: config.embeddedPgPort, log })
    url = pg.url
    stopServer = pg.stop
  }
  const db = openDb(url)
  await migrate(db, log)
  return {
    db,
    url,
    close: async (opts = {}) => {
      await db.close()
      if (opts.stopServer && stopServer) await stopServer()
    },
  }
}
