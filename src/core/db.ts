// Postgres access: one bounded pool, transactions with retry on serialization failures, and
// connection failures surfaced as `database_unavailable`.
import pg from 'pg'
import { S0Error } from './errors.js'
import { limits } from './limits.js'

/** Anything that runs a parameterised query: the pool wrapper or a client inside a transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>>
}

/** Runs a hot statement prepared when `q` is the pool wrapper, plainly inside a transaction. */
export function hotQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  q: Queryable,
  name: string,
  sql: string,
  params: unknown[],
): Promise<pg.QueryResult<R>> {
  const db = q as Partial<Db>
  return typeof db.prepared === 'function' ? db.prepared<R>(name, sql, params) : q.query<R>(sql, params)
}

export interface Db {
  readonly pool: pg.Pool
  /**
   * A hot statement, prepared once per connection under `name` (Postgres then reuses its plan).
   * The name must always come with the same SQL text.
   */
  prepared<R extends pg.QueryResultRow = pg.QueryResultRow>(
    name: string,
    sql: string,
    params: unknown[],
  ): Promise<pg.QueryResult<R>>
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>>
  tx<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>
  /**
   * The same database through connections with `synchronous_commit = off`: a commit returns
   * before its WAL is flushed, for changes nobody asked to be durable yet (POSIX metadata before
   * fsync). Any later synchronous commit flushes the WAL past them, so they become durable then.
   * Created on first use.
   */
  readonly relaxed: Db
  close(): Promise<void>
}

// bigint columns come back as JS numbers: every size we store is < 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => {
  const n = Number(v)
  if (!Number.isSafeInteger(n)) throw new Error(`int8 out of safe range: ${v}`)
  return n
})

const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03',
  '08006',
  '08001',
  '08003',
])
const SERIALIZATION_ERRORS = new Set(['40001', '40P01'])

export function wrapDbError(err: unknown): unknown {
  const code = (err as { code?: string }).code
  if (code && CONNECTION_ERRORS.has(code))
    return new S0Error('database_unavailable', `postgres: ${(err as Error).message}`, { cause: err })
  // pg-pool's own "no connection free in time" has no code: the pool is exhausted, retry later.
  // pg's "Connection terminated due to connection timeout": a new connection took longer than
  // dbConnectTimeoutMs to open (an overloaded Postgres); also worth a retry, not a 500.
  if (
    err instanceof Error &&
    /timeout exceeded when trying to connect|Connection terminated due to connection timeout/.test(
      err.message,
    )
  )
    return new S0Error('database_unavailable', `postgres: ${err.message}`, { cause: err })
  return err
}

export function openDb(
  url: string,
  options: { poolSize?: number; applicationName?: string; relaxedCommit?: boolean } = {},
): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.poolSize ?? limits.dbPoolSize,
    statement_timeout: limits.dbStatementTimeoutMs,
    application_name: options.applicationName ?? 's0',
    connectionTimeoutMillis: limits.dbConnectTimeoutMs,
    ...(options.relaxedCommit ? { options: '-c synchronous_commit=off' } : {}),
  })
  let relaxed: Db | undefined
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined)
  const db: Db = {
    pool,
    get relaxed(): Db {
      if (options.relaxedCommit) return db
      relaxed ??= openDb(url, {
        ...options,
        relaxedCommit: true,
        poolSize: Math.max(2, Math.ceil((options.poolSize ?? limits.dbPoolSize) / 2)),
      })
      return relaxed
    },
    query: async (sql, params) => {
      try {
        return await pool.query(sql, params)
      } catch (err) {
        throw wrapDbError(err)
      }
    },
    prepared: async (name, sql, params) => {
      try {
        return await pool.query({ name, text: sql, values: params })
      } catch (err) {
        throw wrapDbError(err)
      }
    },
    tx: async (fn) => {
      for (let attempt = 1; ; attempt++) {
        let client: pg.PoolClient
        try {
          client = await pool.connect()
        } catch (err) {
          throw wrapDbError(err)
        }
        // A connection whose ROLLBACK failed is in an unknown state: destroyed, not pooled.
        let broken: Error | undefined
        try {
          await client.query('BEGIN')
          const result = await fn(client)
          await client.query('COMMIT')
          return result
        } catch (err) {
          // The transaction's own error is the one to report. If the ROLLBACK fails too, the
          // connection is gone or unusable and Postgres rolls back as the session ends.
          await client.query('ROLLBACK').catch((rollbackErr: Error) => (broken = rollbackErr))
          const code = (err as { code?: string }).code
          if (code && SERIALIZATION_ERRORS.has(code) && attempt < limits.dbTxAttemptsMax) continue
          throw wrapDbError(err)
        } finally {
          client.release(broken)
        }
      }
    },
    close: async () => {
      await relaxed?.close()
      await pool.end()
    },
  }
  return db
}
