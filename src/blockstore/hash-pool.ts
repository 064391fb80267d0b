// A small pool of worker threads that cut (FastCDC) and hash (BLAKE3) large staged buffers with
// the project's addon, so an ingest of many files uses every core, as restic's does. Workers
// read the writer's SharedArrayBuffer in place and send back the cut ends and the digests only.
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { assert } from '../core/assert.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { native, nativeAddonPath } from '../core/native.js'
import { GEAR, masksFor, type ChunkerParams } from './chunker.js'
import { HASH_BYTES } from './hash.js'

export interface CutHashJob {
  /** The staged bytes, backed by a SharedArrayBuffer (workers read it in place). */
  buf: Uint8Array
  used: number
  /** As StreamingChunker: without `final`, only chunks whose end is certain are cut. */
  final: boolean
  params: ChunkerParams
}

export interface CutHashResult {
  /** Exclusive chunk ends, `count` of them. */
  ends: Uint32Array
  count: number
  /** BLAKE3-256 of chunk k at [32k, 32k+32). */
  hashes: Uint8Array
}

// Plain CommonJS, run with `eval: true`: the same text works under tsx, vitest and dist/, where a
// worker file would be .ts in one and .js in the other. The only work is one addon call per job.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const addon = require(workerData.addonPath)
const gear = new Int32Array(workerData.gear)
parentPort.on('message', (job) => {
  try {
    const ends = new Uint32Array(job.cap)
    const hashes = new Uint8Array(job.cap * ${HASH_BYTES})
    const n = addon.cutAndHash(job.buf, job.used, job.final, job.min, job.avg, job.max, gear, job.hard, job.easy, ends, hashes)
    parentPort.postMessage({ id: job.id, count: n, ends, hashes }, [ends.buffer, hashes.buffer])
  } catch (err) {
    parentPort.postMessage({ id: job.id, error: String((err && err.message) || err) })
  }
})
`

interface Pending {
  id: number
  message: Record<string, unknown>
  resolve: (r: CutHashResult) => void
  reject: (err: unknown) => void
}

interface PoolWorker {
  worker: Worker
  job: Pending | undefined
}

type Reply =
  { id: number; count: number; ends: Uint32Array; hashes: Uint8Array } | { id: number; error: string }

/** The workers available to this process: availableParallelism(), within the limit. */
export function defaultHashPoolSize(): number {
  return Math.max(1, Math.min(availableParallelism(), limits.hashPoolWorkersMax))
}

export class HashPool {
  private readonly workers: PoolWorker[] = []
  private readonly queue: Pending[] = []
  private nextId = 1
  private closed = false
  /** Jobs answered (successfully or not) since the pool started. */
  jobsDone = 0

  constructor(readonly size: number = defaultHashPoolSize()) {
    assert(Number.isInteger(size) && size >= 1 && size <= limits.hashPoolWorkersMax, 'hash pool size')
  }

  /** False once closed or when the queue is full: the caller then cuts and hashes itself. */
  get accepting(): boolean {
    return !this.closed && this.queue.length < limits.hashPoolQueuedJobsMax
  }

  /** Cuts and hashes `job.buf[0, used)` on a worker. Rejects (never hangs) if the worker fails. */
  cutAndHash(job: CutHashJob): Promise<CutHashResult> {
    assert(!this.closed, 'hash pool used after close')
    assert(job.buf.buffer instanceof SharedArrayBuffer, 'hash pool jobs read shared memory')
    assert(job.used >= 0 && job.used <= job.buf.length, 'job size')
    const { hard, easy } = masksFor(job.params.avgBytes)
    const id = this.nextId++
    // Every chunk but the last is at least minBytes long, so this many ends always suffice.
    const cap = Math.floor(job.used / job.params.minBytes) + 2
    const message = {
      id,
      buf: job.buf,
      used: job.used,
      final: job.final,
      min: job.params.minBytes,
      avg: job.params.avgBytes,
      max: job.params.maxBytes,
      hard,
      easy,
      cap,
    }
    return new Promise<CutHashResult>((resolve, reject) => {
      this.queue.push({ id, message, resolve, reject })
      this.dispatch()
    })
  }

  /** Stops every worker; queued and running jobs reject. */
  async close(): Promise<void> {
    this.closed = true
    const gone = new S0Error('unavailable', 'hash pool closed')
    for (const p of this.queue.splice(0)) p.reject(gone)
    const running = this.workers.splice(0)
    for (const w of running) {
      w.job?.reject(gone)
      w.job = undefined
    }
    await Promise.all(running.map((w) => w.worker.terminate()))
  }

  /** @internal For tests: the live workers (a test terminates one to see its job fail). */
  workersForTest(): Worker[] {
    return this.workers.map((w) => w.worker)
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let w = this.workers.find((x) => x.job === undefined)
      if (!w && this.workers.length < this.size) w = this.spawn()
      if (!w) return
      const job = this.queue.shift() as Pending
      w.job = job
      // Busy workers keep the process alive (a caller awaits them); idle ones must not.
      w.worker.ref()
      w.worker.postMessage(job.message)
    }
  }

  private spawn(): PoolWorker {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { addonPath: nativeAddonPath, gear: GEAR.buffer.slice(0) },
    })
    worker.unref()
    const w: PoolWorker = { worker, job: undefined }
    this.workers.push(w)
    worker.on('message', (reply: Reply) => {
      const job = w.job
      assert(job !== undefined && job.id === reply.id, 'hash worker answered a job it was not given')
      w.job = undefined
      worker.unref()
      this.jobsDone++
      if ('error' in reply) job.reject(new S0Error('internal_error', `hash worker: ${reply.error}`))
      else job.resolve({ ends: reply.ends, count: reply.count, hashes: reply.hashes })
      this.dispatch()
    })
    // A worker that throws outside a job or exits (killed, out of memory) fails its job, leaves
    // the pool, and is replaced by the next dispatch.
    const fail = (why: string, cause?: unknown): void => {
      const i = this.workers.indexOf(w)
      if (i >= 0) this.workers.splice(i, 1)
      const job = w.job
      w.job = undefined
      job?.reject(new S0Error('internal_error', `hash worker ${why}`, { cause }))
      if (!this.closed) this.dispatch()
    }
    worker.on('error', (err) => fail('failed', err))
    worker.on('exit', (code) => fail(`exited with code ${code}`))
    return w
  }
}

let shared: HashPool | undefined

/**
 * The process's pool, started on first use; undefined where it cannot help: no addon with
 * cutAndHash, or S0_HASH_POOL=0.
 */
export function sharedHashPool(): HashPool | undefined {
  if (process.env['S0_HASH_POOL'] === '0' || typeof native?.cutAndHash !== 'function') return undefined
  shared ??= new HashPool()
  return shared
}

/** Stops the process's pool (server shutdown, test teardown); the next use starts a new one. */
export async function closeSharedHashPool(): Promise<void> {
  const p = shared
  shared = undefined
  await p?.close()
}
