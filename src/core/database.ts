// Opens the configured Postgres (DATABASE_URL, or the embedded one under the state directory)
// and brings its schema up to date.
import path from 'node:path'
import type { Config } from './config.js'
import { openDb, type Db } from './db.js'
import { startEmbeddedPg, type EmbeddedPg } from './embedded-pg.js'
import type { Logger } from './log.js'
import { migrate } from './migrate.js'

export interface Database {
  db: Db
  url: string
  /**
   * Closes the pool. `stopServer: 'if-started'` stops the embedded Postgres only when this process
   * started it (CLI tools: never pull the database from under a running server); `'always'` also
   * stops one it adopted (the server, which owns the state directory).
   */
  close(opts?: { stopServer?: 'if-started' | 'always' }): Promise<void>
}

export async function openDatabase(config: Config, log: Logger): Promise<Database> {
  let url = config.databaseUrl
  let pg: EmbeddedPg | undefined
  if (!url) {
    pg = await startEmbeddedPg({
      dir: path.join(config.stateDir, 'pg'),
      ...(config.embeddedPgPort === undefined ? {} : { port: config.embeddedPgPort }),
      log,
    })
    url = pg.url
  }
  const db = openDb(url)
  await migrate(db, log)
  return {
    db,
    url,
    close: async (opts = {}) => {
      await db.close()
      if (pg && (opts.stopServer === 'always' || (opts.stopServer === 'if-started' && pg.startedHere)))
        await pg.stop()
    },
  }
}
