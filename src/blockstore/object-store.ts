// The object store boundary: the only way bytes reach S3 or the local directory. Every
// implementation passes test/blockstore/object-store.contract.ts. Failures are S0Errors:
// object_not_found, object_store_unavailable (retryable), object_store_denied, object_truncated.

export interface ObjectInfo {
  readonly key: string
  readonly size: number
  readonly lastModified: Date
}

export interface ByteRange {
  readonly offset: number
  readonly length: number
}

export interface IoOptions {
  readonly signal?: AbortSignal
}

export interface GetOptions extends IoOptions {
  /** Read exactly these bytes; a store that returns fewer raises object_truncated. */
  readonly range?: ByteRange
}

export interface ObjectStore {
  /** Short human name for logs and bench output, e.g. `local:/var/s0/objects`. */
  readonly name: string
  /** Atomic: readers see the whole object or none of it. Durable when the promise resolves. */
  put(key: string, body: Buffer, opts?: IoOptions): Promise<void>
  get(key: string, opts?: GetOptions): Promise<Buffer>
  head(key: string, opts?: IoOptions): Promise<ObjectInfo | undefined>
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string, opts?: IoOptions): Promise<void>
  /** Every object whose key starts with prefix. Order is unspecified (s3rver differs from S3). */
  list(prefix: string, opts?: IoOptions): AsyncIterable<ObjectInfo>
  close(): Promise<void>
}

/** Keys are relative, slash-separated, with no empty, `.` or `..` segment. */
export function validateKey(key: string): void {
  if (key.length === 0 || key.length > 1024 || key.startsWith('/') || key.endsWith('/')) throw badKey(key)
  for (const seg of key.split('/')) {
    if (seg === '' || seg === '.' || seg === '..' || seg.includes('\0')) throw badKey(key)
  }
}

function badKey(key: string): TypeError {
  return new TypeError(`invalid object key: ${JSON.stringify(key)}`)
}
