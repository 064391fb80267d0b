// The volume side of workspace sync as the client sees it: the sync routes of a running server
// (docs/SYNC.md), with retries of calls that failed on the way (a dropped connection, a server
// restarting) — every call is safe to repeat: reads, chunk uploads by hash, and commits by
// idempotency key.
import { hashChunk } from '../../blockstore/hash.js'
import type { ApiClient } from '../api-client.js'
import { ApiError } from '../api-client.js'
import type { WireOp } from '../../api/schemas/sync.js'
import type { RemoteEntry } from './reconcile.js'

export interface Extent {
  off: number
  len: number
  hash: string
  coff: number
}

export interface RemoteFile {
  entry: RemoteEntry
  inline?: string
  extents?: Extent[]
}

// The wire forms are the server's own (api/schemas, api/wire): one definition for both ends.
export type { WireOp } from '../../api/schemas/sync.js'

export type OpResult =
  | { path: string; status: 'ok' | 'conflict'; entry: RemoteEntry | null }
  | { path: string; status: 'missing_chunks'; missing: string[] }

export interface Counters {
  bytesSent: number
  bytesReceived: number
}

/** Transient: the server is restarting or the connection dropped. */
export function transient(err: unknown): boolean {
  if (err instanceof ApiError) {
    return (
      ['ECONNREFUSED', 'ECONNRESET', 'timeout', 'EPIPE', 'ETIMEDOUT', 'UND_ERR_SOCKET'].includes(err.code) ||
      err.status === 502 ||
      err.status === 503 ||
      err.status === 504
    )
  }
  const e = err as { name?: string; cause?: { code?: string } }
  return e?.name === 'TypeError' || e?.name === 'TimeoutError' || e?.cause?.code === 'UND_ERR_SOCKET'
}

export class SyncRemote {
  readonly counters: Counters = { bytesSent: 0, bytesReceived: 0 }
  private readonly base: string

  constructor(
    private readonly api: ApiClient,
    readonly volumeId: string,
    readonly root: string,
    /** How long to keep retrying a call that failed transiently (ms). */
    private readonly retryMs: number,
  ) {
    this.base = `/api/v1/sandboxvolumes/${encodeURIComponent(volumeId)}/sync`
  }

  private async retry<T>(what: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const until = Date.now() + this.retryMs
    let wait = 100
    for (;;) {
      try {
        return await what()
      } catch (err) {
        if (!transient(err) || Date.now() + wait > until || signal?.aborted) throw err
        await new Promise((r) => setTimeout(r, wait))
        wait = Math.min(wait * 2, 2_000)
      }
    }
  }

  private json<T>(
    method: string,
    route: string,
    opts: { query?: Record<string, string>; json?: unknown; signal?: AbortSignal } = {},
  ): Promise<T> {
    if (opts.json !== undefined) this.counters.bytesSent += JSON.stringify(opts.json).length
    return this.retry(() => this.api.json<T>(method, this.base + route, opts), opts.signal)
  }

  tree(): Promise<{ cursor: string; root: string; entries: RemoteEntry[] }> {
    return this.json('GET', '/tree', { query: { root: this.root } })
  }

  async changes(
    cursor: string,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<{ cursor: string; rescan: boolean; changes: { path: string; entry: RemoteEntry | null }[] }> {
    // One controller for the caller's signal and a bound (not AbortSignal.any: on Node 20 its
    // composite signal may be collected and then never aborts the request).
    const ac = new AbortController()
    const stop = (): void => ac.abort()
    const timer = setTimeout(stop, waitMs + 30_000)
    signal?.addEventListener('abort', stop)
    if (signal?.aborted) ac.abort()
    try {
      return await this.api.json('GET', this.base + '/changes', {
        query: { root: this.root, cursor, wait_ms: String(waitMs) },
        signal: ac.signal,
      })
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', stop)
    }
  }

  file(path: string): Promise<RemoteFile> {
    return this.json('GET', '/file', { query: { root: this.root, path } })
  }

  async missing(hashes: string[]): Promise<Set<string>> {
    const out = new Set<string>()
    for (let i = 0; i < hashes.length; i += 10_000) {
      const r = await this.json<{ missing: string[] }>('POST', '/chunks/missing', {
        json: { hashes: hashes.slice(i, i + 10_000) },
      })
      for (const h of r.missing) out.add(h)
    }
    return out
  }

  /** Many chunks in one request (frames of hash, u32 LE length, bytes). */
  async putChunks(chunks: { hash: string; data: Buffer }[]): Promise<void> {
    const parts: Buffer[] = []
    for (const c of chunks) {
      const h = Buffer.alloc(36)
      Buffer.from(c.hash, 'hex').copy(h, 0)
      h.writeUInt32LE(c.data.length, 32)
      parts.push(h, c.data)
    }
    const body = Buffer.concat(parts)
    await this.retry(async () => {
      const res = await this.api.request('POST', `${this.base}/chunks`, {
        stream: (async function* () {
          yield body
        })(),
        signal: AbortSignal.timeout(300_000),
      })
      await res.arrayBuffer()
    })
    this.counters.bytesSent += body.length
  }

  /** Block signatures of chunks the volume's team has (absent: it has not that chunk). */
  async signatures(hashes: string[], inlinePaths: string[] = []): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>()
    for (let i = 0; i < Math.max(hashes.length, 1); i += 64) {
      const paths = i === 0 ? inlinePaths.slice(0, 64 - Math.min(64, hashes.length)) : []
      if (hashes.length === 0 && paths.length === 0) break
      const r = await this.json<{ signatures: Record<string, string> }>('POST', '/chunks/signatures', {
        json: {
          hashes: hashes.slice(i, i + 64 - paths.length),
          root: this.root,
          ...(paths.length ? { paths } : {}),
        },
      })
      for (const [h, b64] of Object.entries(r.signatures)) {
        const b = Buffer.from(b64, 'base64')
        this.counters.bytesReceived += b.length
        out.set(h, b)
      }
    }
    return out
  }

  /** One chunk as a delta against chunks the team has (the server rebuilds and checks it). */
  async putChunkDelta(hash: string, delta: Buffer): Promise<void> {
    await this.retry(async () => {
      const res = await this.api.request('PUT', `${this.base}/chunks/${hash}`, {
        query: { delta: 'true' },
        stream: (async function* () {
          yield delta
        })(),
        signal: AbortSignal.timeout(120_000),
      })
      await res.arrayBuffer()
    })
    this.counters.bytesSent += delta.length
  }

  async getChunk(hash: string): Promise<Buffer> {
    const data = await this.retry(async () => {
      const res = await this.api.request('GET', `${this.base}/chunks/${hash}`, {
        accept: 'application/octet-stream',
        signal: AbortSignal.timeout(120_000),
      })
      return Buffer.from(await res.arrayBuffer())
    })
    if (!hashChunk(data).equals(Buffer.from(hash, 'hex')))
      throw new ApiError('chunk_corrupt', `chunk ${hash} from the server does not hash to its name`)
    this.counters.bytesReceived += data.length
    return data
  }

  commit(ops: WireOp[], idempotencyKey: string): Promise<{ replayed: boolean; results: OpResult[] }> {
    return this.json('POST', '/commit', { json: { root: this.root, idempotency_key: idempotencyKey, ops } })
  }
}
