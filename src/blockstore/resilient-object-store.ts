// Wraps any ObjectStore with what every caller needs: bounded concurrency, a timeout per
// attempt, retries with full-jitter exponential backoff on retryable errors, request counters.
import { S0Error, abortError } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { GetOptions, IoOptions, ObjectInfo, ObjectStore } from './object-store.js'

export interface ResilienceOptions {
  concurrencyMax?: number
  attemptTimeoutMs?: number
  retriesMax?: number
  backoffBaseMs?: number
  backoffMaxMs?: number
}

export interface ObjectStoreStats {
  puts: number
  gets: number
  heads: number
  deletes: number
  lists: number
  putBytes: number
  getBytes: number
  retries: number
  failures: number
}

export function emptyStats(): ObjectStoreStats {
  return {
    puts: 0,
    gets: 0,
    heads: 0,
    deletes: 0,
    lists: 0,
    putBytes: 0,
    getBytes: 0,
    retries: 0,
    failures: 0,
  }
}

/** A counting semaphore with a FIFO queue. */
export class Semaphore {
  private available: number
  private readonly waiters: Array<() => void> = []

  constructor(permits: number) {
    this.available = permits
  }

  async acquire(signal?: AbortSignal): Promise<void> {
    if (this.available > 0) {
      this.available--
      return
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.waiters.indexOf(grant)
        if (i >= 0) this.waiters.splice(i, 1)
        reject(abortError(signal))
      }
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      if (signal?.aborted) return onAbort()
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(grant)
    })
  }

  release(): void {
    const next = this.waiters.shift()
    if (next) next()
    else this.available++
  }
}

export class ResilientObjectStore implements ObjectStore {
  readonly name: string
  readonly stats: ObjectStoreStats = emptyStats()
  private readonly sem: Semaphore
  private readonly attemptTimeoutMs: number
  private readonly retriesMax: number
  private readonly backoffBaseMs: number
  private readonly backoffMaxMs: number

  constructor(
    readonly inner: ObjectStore,
    opts: ResilienceOptions = {},
  ) {
    this.name = inner.name
    this.sem = new Semaphore(opts.concurrencyMax ?? limits.objectStoreConcurrencyMax)
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? limits.objectStoreAttemptTimeoutMs
    this.retriesMax = opts.retriesMax ?? limits.objectStoreRetriesMax
    this.backoffBaseMs = opts.backoffBaseMs ?? limits.objectStoreBackoffBaseMs
    this.backoffMaxMs = opts.backoffMaxMs ?? limits.objectStoreBackoffMaxMs
  }

  async put(key: string, body: Buffer, opts: IoOptions = {}): Promise<void> {
    await this.attempt(opts.signal, (signal) => this.inner.put(key, body, { signal }))
    this.stats.puts++
    this.stats.putBytes += body.length
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    const range = opts.range
    const buf = await this.attempt(opts.signal, async (signal) => {
      const b = await this.inner.get(key, range ? { signal, range } : { signal })
      // Checked here too, whatever the implementation does: a short body is retried, never used.
      if (range && b.length !== range.length) {
        throw new S0Error('object_truncated', `object ${key}: wanted ${range.length} bytes, got ${b.length}`)
      }
      return b
    })
    this.stats.gets++
    this.stats.getBytes += buf.length
    return buf
  }

  async head(key: string, opts: IoOptions = {}): Promise<ObjectInfo | undefined> {
    this.stats.heads++
    return this.attempt(opts.signal, (signal) => this.inner.head(key, { signal }))
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    this.stats.deletes++
    await this.attempt(opts.signal, (signal) => this.inner.delete(key, { signal }))
  }

  async *list(prefix: string, opts: IoOptions = {}): AsyncIterable<ObjectInfo> {
    // Listing pages are not retried individually: a failed listing is restarted by its caller.
    this.stats.lists++
    yield* this.inner.list(prefix, opts)
  }

  close(): Promise<void> {
    return this.inner.close()
  }

  private async attempt<T>(
    callerSignal: AbortSignal | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (callerSignal?.aborted) throw abortError(callerSignal)
      await this.sem.acquire(callerSignal)
      const timeout = AbortSignal.timeout(this.attemptTimeoutMs)
      const signal = callerSignal ? AbortSignal.any([callerSignal, timeout]) : timeout
      let err: unknown
      try {
        return await raceAbort(fn(signal), signal, this.attemptTimeoutMs)
      } catch (e) {
        err = e
      } finally {
        this.sem.release()
      }
      if (callerSignal?.aborted) throw abortError(callerSignal)
      const retryable = err instanceof S0Error && err.retryable && err.code !== 'aborted'
      const timedOut = timeout.aborted
      if ((!retryable && !timedOut) || attempt >= this.retriesMax) {
        this.stats.failures++
        if (timedOut && !(err instanceof S0Error && err.code !== 'aborted')) {
          throw new S0Error(
            'object_store_unavailable',
            `object store timed out after ${attempt + 1} attempts`,
            { cause: err },
          )
        }
        throw err
      }
      this.stats.retries++
      await sleep(this.backoffMs(attempt), callerSignal)
    }
  }

  private backoffMs(attempt: number): number {
    const cap = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** attempt)
    return Math.random() * cap
  }
}

/** Ends the wait when the signal fires even if the implementation ignores it. */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal, timeoutMs: number): Promise<T> {
  if (signal.aborted) return Promise.reject(timeoutOrAbort(signal, timeoutMs))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(timeoutOrAbort(signal, timeoutMs))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}

function timeoutOrAbort(signal: AbortSignal, timeoutMs: number): S0Error {
  const reason: unknown = signal.reason
  if (reason instanceof DOMException && reason.name === 'TimeoutError') {
    return new S0Error('timeout', `object store attempt exceeded ${timeoutMs} ms`)
  }
  return abortError(signal)
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal))
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(t)
      reject(abortError(signal))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
