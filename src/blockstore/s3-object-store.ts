// Object store on S3 or anything that speaks it (AWS, MinIO, R2, Ceph RGW, s3rver). Bodies are
// Buffers: stream bodies go out aws-chunked, which some servers store verbatim (see FORMAT.md).
// No conditional writes are used: compare-and-swap lives in Postgres.
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3'
import { S0Error, abortError } from '../core/errors.js'
import type { S3Config } from '../core/config.js'
import { limits } from '../core/limits.js'
import {
  validateKey,
  type GetOptions,
  type IoOptions,
  type ObjectInfo,
  type ObjectStore,
} from './object-store.js'

export class S3ObjectStore implements ObjectStore {
  readonly name: string
  private readonly client: S3Client
  private readonly bucket: string
  private readonly prefix: string
  private readonly listPageSize: number

  constructor(cfg: S3Config, opts: { listPageSize?: number } = {}) {
    this.listPageSize = opts.listPageSize ?? limits.objectListPageSize
    this.bucket = cfg.bucket
    this.prefix = cfg.prefix === '' || cfg.prefix.endsWith('/') ? cfg.prefix : cfg.prefix + '/'
    this.name = `s3:${cfg.endpoint ?? 'aws'}/${cfg.bucket}/${this.prefix}`
    this.client = new S3Client({
      region: cfg.region,
      forcePathStyle: cfg.forcePathStyle,
      maxAttempts: 1, // retries belong to ResilientObjectStore, which sees every attempt
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
      ...(cfg.accessKeyId && cfg.secretAccessKey
        ? { credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey } }
        : {}),
    })
  }

  private fullKey(key: string): string {
    validateKey(key)
    return this.prefix + key
  }

  async put(key: string, body: Buffer, opts: IoOptions = {}): Promise<void> {
    const Key = this.fullKey(key)
    await this.send(key, () =>
      this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length }),
        sendOpts(opts),
      ),
    )
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    const Key = this.fullKey(key)
    const range = opts.range
    if (range && range.length === 0) {
      const head = await this.head(key, opts)
      if (!head) throw new S0Error('object_not_found', `object not found: ${key}`)
      return Buffer.alloc(0)
    }
    return this.send(key, async () => {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key,
          ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
        }),
        sendOpts(opts),
      )
      if (!out.Body) throw new S0Error('object_truncated', `object ${key}: empty response body`)
      const bytes = await out.Body.transformToByteArray()
      let buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
      // HTTP lets a server ignore Range and send the whole object (s3rver does for `bytes=0-0`,
      // even with a 206): a body longer than the range is the whole object, so slice it. Chunk
      // hashes would catch any other reading of it.
      if (range && buf.length > range.length && buf.length >= range.offset + range.length) {
        buf = buf.subarray(range.offset, range.offset + range.length)
      }
      const want = range ? range.length : out.ContentLength
      if (want !== undefined && buf.length !== want) {
        throw new S0Error('object_truncated', `object ${key}: wanted ${want} bytes, got ${buf.length}`)
      }
      return buf
    })
  }

  async head(key: string, opts: IoOptions = {}): Promise<ObjectInfo | undefined> {
    const Key = this.fullKey(key)
    try {
      const out = await this.send(key, () =>
        this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), sendOpts(opts)),
      )
      return { key, size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date(0) }
    } catch (err) {
      if (err instanceof S0Error && err.code === 'object_not_found') return undefined
      throw err
    }
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    const Key = this.fullKey(key)
    await this.send(key, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), sendOpts(opts)),
    )
  }

  async *list(prefix: string, opts: IoOptions = {}): AsyncIterable<ObjectInfo> {
    let token: string | undefined
    do {
      const out = await this.send(prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.prefix + prefix,
            MaxKeys: this.listPageSize,
            ...(token ? { ContinuationToken: token } : {}),
          }),
          sendOpts(opts),
        ),
      )
      for (const o of out.Contents ?? []) {
        if (!o.Key) continue
        yield {
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          lastModified: o.LastModified ?? new Date(0),
        }
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined
    } while (token)
  }

  async close(): Promise<void> {
    this.client.destroy()
  }

  private async send<T>(key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw mapS3Error(err, key)
    }
  }
}

function sendOpts(opts: IoOptions): { abortSignal?: AbortSignal } {
  return opts.signal ? { abortSignal: opts.signal } : {}
}

function mapS3Error(err: unknown, key: string): unknown {
  if (err instanceof S0Error) return err
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number }; message?: string }
  const status = e.$metadata?.httpStatusCode
  if (e.name === 'AbortError') return abortError(undefined)
  if (status === 404 || e.name === 'NoSuchKey' || e.name === 'NotFound') {
    return new S0Error('object_not_found', `object not found: ${key}`, { cause: err })
  }
  if (e.name === 'NoSuchBucket')
    return new S0Error('object_store_denied', `bucket does not exist (${key})`, { cause: err })
  if (status === 401 || status === 403) {
    return new S0Error('object_store_denied', `object store denied ${key}: ${e.name ?? status}`, {
      cause: err,
    })
  }
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return new S0Error(
      'internal_error',
      `object store rejected ${key}: ${e.name ?? status}: ${e.message ?? ''}`,
      { cause: err },
    )
  }
  return new S0Error(
    'object_store_unavailable',
    `object store failed on ${key}: ${e.name ?? 'error'}: ${e.message ?? ''}`,
    {
      cause: err,
    },
  )
}
