// What the commands that work on the state directory themselves share (apikey, fsck, gc, mount):
// the configuration, a logger, the database and, for most, the chunk store, opened for one
// action and closed after it whatever happens. The embedded Postgres is stopped only if the
// command started it: never pulled from under a running server.
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { openChunkStore } from '../blockstore/open.js'
import { loadConfig, type Config } from '../core/config.js'
import { openDatabase } from '../core/database.js'
import type { Db } from '../core/db.js'
import { createLogger, type Logger } from '../core/log.js'

export interface OfflineOptions {
  /**
   * `quiet` (the default): info lines are dropped so the terminal keeps the command's own
   * output; any other configured level (debug, error, silent) applies as it is. `configured`:
   * the configured level (a foreground mount logs what it does).
   */
  logging?: 'quiet' | 'configured'
}

export interface OfflineContext {
  config: Config
  log: Logger
  db: Db
}

export interface OfflineStoreContext extends OfflineContext {
  store: ChunkStore
}

export async function withDatabase<T>(
  action: (ctx: OfflineContext) => Promise<T>,
  opts: OfflineOptions = {},
): Promise<T> {
  const config = loadConfig()
  const level = opts.logging !== 'configured' && config.logLevel === 'info' ? 'warn' : config.logLevel
  const log = createLogger(level)
  const database = await openDatabase(config, log)
  try {
    return await action({ config, log, db: database.db })
  } finally {
    await database.close({ stopServer: 'if-started' })
  }
}

export async function withChunkStore<T>(
  action: (ctx: OfflineStoreContext) => Promise<T>,
  opts: OfflineOptions = {},
): Promise<T> {
  return withDatabase(async (ctx) => {
    const store = await openChunkStore(ctx.config, ctx.db, ctx.log)
    try {
      return await action({ ...ctx, store })
    } finally {
      // Seals and uploads open packs before the database goes.
      await store.close()
    }
  }, opts)
}
