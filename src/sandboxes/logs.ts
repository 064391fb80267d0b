// What every context printed, kept in Postgres (`sandbox_logs`): each output chunk as it was read
// (split at logMessageBytesMax), written through the buffered appender like events, so a chatty
// process never waits on the database. Bounded per sandbox by bytes: retention drops the oldest
// rows and records a `logs.truncated` event saying how many went.
import { BatchedAppender } from '../core/batched-appender.js'
import { ADVISORY_LOCK_KEYS } from '../core/advisory-locks.js'
import type { Db } from '../core/db.js'
import { watchKey } from '../core/events.js'
import { limits } from '../core/limits.js'
import { SqlWhere } from '../core/sql-where.js'
import type { Logger } from '../core/log.js'

export type LogStream = 'stdout' | 'stderr' | 'pty'
export const LOG_STREAMS: readonly LogStream[] = ['stdout', 'stderr', 'pty']

export interface LogLine {
  teamId: string
  sandboxId: string
  contextId?: string
  processId?: string
  stream: LogStream
  occurredAt: Date
  message: string
  attributes?: Record<string, unknown>
}

export interface StoredLogLine extends LogLine {
  seq: number
  ingestedAt: Date
}

export interface LogQuery {
  after?: number
  limit?: number
  startTime?: Date
  endTime?: Date
  contextId?: string
  stream?: LogStream
}

interface Row {
  seq: number
  team_id: string
  sandbox_id: string
  context_id: string | null
  process_id: string | null
  stream: LogStream
  occurred_at: Date
  ingested_at: Date
  message: string
  attributes: Record<string, unknown> | null
}

export class SandboxLogs {
  private readonly appender: BatchedAppender<LogLine>

  constructor(
    private readonly db: Db,
    log: Logger,
    bounds: { queueMax?: number; batchMax?: number } = {},
  ) {
    this.appender = new BatchedAppender<LogLine>(
      'sandbox logs',
      {
        queueMax: bounds.queueMax ?? limits.logQueueMax,
        batchMax: bounds.batchMax ?? limits.logBatchMax,
        flushIntervalMs: limits.logFlushIntervalMs,
      },
      (batch) => this.write(batch),
      log,
    )
  }

  /** Queues output; a chunk longer than logMessageBytesMax becomes several lines. Never waits. */
  append(line: LogLine): void {
    const max = limits.logMessageBytesMax
    if (Buffer.byteLength(line.message) <= max) {
      this.appender.push(line)
      return
    }
    // Split on characters, by a bound in characters that cannot exceed the bytes bound.
    const step = Math.floor(max / 4)
    for (let i = 0; i < line.message.length; i += step)
      this.appender.push({ ...line, message: line.message.slice(i, i + step) })
  }

  onWritten(listener: (sandboxes: ReadonlySet<string>) => void): () => void {
    return this.appender.onWritten((batch) =>
      listener(new Set(batch.map((l) => watchKey(l.teamId, l.sandboxId)))),
    )
  }

  flush(): Promise<void> {
    return this.appender.flush()
  }

  private async write(batch: LogLine[]): Promise<void> {
    const cols: unknown[][] = Array.from({ length: 9 }, () => [])
    for (const l of batch) {
      const values = [
        l.teamId,
        l.sandboxId,
        l.contextId ?? null,
        l.processId ?? null,
        l.stream,
        l.occurredAt,
        // Postgres text cannot hold NUL; a process may print one.
        l.message.replace(/\0/g, '\uFFFD'),
        l.attributes ? JSON.stringify(l.attributes) : null,
      ]
      values.forEach((v, i) => (cols[i] as unknown[]).push(v))
    }
    await this.db.tx(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEYS.logAppend])
      await client.query(
        `INSERT INTO sandbox_logs (team_id, sandbox_id, context_id, process_id, stream, occurred_at, message, attributes)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                              $7::text[], $8::jsonb[])`,
        cols.slice(0, 8),
      )
    })
  }

  async list(teamId: string, sandboxId: string, q: LogQuery = {}): Promise<StoredLogLine[]> {
    const where = new SqlWhere(
      ['team_id = $1', 'sandbox_id = $2', 'seq > $3'],
      [teamId, sandboxId, q.after ?? 0],
    )
      .add('occurred_at >= ?', q.startTime)
      .add('occurred_at < ?', q.endTime)
      .add('context_id = ?', q.contextId)
      .add('stream = ?', q.stream)
    const limit = where.param(Math.min(Math.max(q.limit ?? limits.logPageDefault, 1), limits.logPageMax))
    const { rows } = await this.db.query<Row>(
      `SELECT * FROM sandbox_logs WHERE ${where.text} ORDER BY seq LIMIT ${limit}`,
      where.params,
    )
    return rows.map((r) => ({
      seq: r.seq,
      teamId: r.team_id,
      sandboxId: r.sandbox_id,
      ...(r.context_id ? { contextId: r.context_id } : {}),
      ...(r.process_id ? { processId: r.process_id } : {}),
      stream: r.stream,
      occurredAt: r.occurred_at,
      ingestedAt: r.ingested_at,
      message: r.message,
      ...(r.attributes ? { attributes: r.attributes } : {}),
    }))
  }

  close(): Promise<void> {
    return this.appender.close()
  }
}
