// An object store in process memory (as restic's mem backend): for tests that need a store but
// not a disk, and for tools that stage objects. Passes the same contract as the local and S3
// stores; nothing survives the process.
import { S0Error, abortError } from '../core/errors.js'
import {
  validateKey,
  type GetOptions,
  type IoOptions,
  type ObjectInfo,
  type ObjectStore,
} from './object-store.js'

interface StoredObject {
  body: Buffer
  lastModified: Date
}

export class MemoryObjectStore implements ObjectStore {
  readonly name = 'memory'
  private readonly objects = new Map<string, StoredObject>()

  async put(key: string, body: Buffer, opts: IoOptions = {}): Promise<void> {
    validateKey(key)
    checkAbort(opts.signal)
    // A copy: the caller may reuse its buffer (pack buffers are pooled), and a reader must never
    // see a later write through it.
    this.objects.set(key, { body: Buffer.from(body), lastModified: new Date() })
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    validateKey(key)
    checkAbort(opts.signal)
    const o = this.objects.get(key)
    if (!o) throw new S0Error('object_not_found', `object not found: ${key}`)
    if (!opts.range) return Buffer.from(o.body)
    const { offset, length } = opts.range
    if (offset + length > o.body.length) {
      const got = Math.max(0, o.body.length - offset)
      throw new S0Error('object_truncated', `object ${key}: wanted ${length} bytes at ${offset}, got ${got}`)
    }
    return Buffer.from(o.body.subarray(offset, offset + length))
  }

  async head(key: string, opts: IoOptions = {}): Promise<ObjectInfo | undefined> {
    validateKey(key)
    checkAbort(opts.signal)
    const o = this.objects.get(key)
    return o ? { key, size: o.body.length, lastModified: o.lastModified } : undefined
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    validateKey(key)
    checkAbort(opts.signal)
    this.objects.delete(key)
  }

  async *list(prefix: string, opts: IoOptions = {}): AsyncIterable<ObjectInfo> {
    checkAbort(opts.signal)
    // A snapshot of the keys: puts and deletes during the listing neither break nor join it.
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort()
    for (const key of keys) {
      checkAbort(opts.signal)
      const o = this.objects.get(key)
      if (o) yield { key, size: o.body.length, lastModified: o.lastModified }
    }
  }

  /** Bytes held (tests and bench). */
  get bytes(): number {
    let total = 0
    for (const o of this.objects.values()) total += o.body.length
    return total
  }

  async close(): Promise<void> {}
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal)
}
