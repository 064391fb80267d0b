// The raw object store peer: the same bytes as 16 MiB objects written and read with no chunking,
// no index and no dedup, to a local directory (fsync each) or through the S3 SDK.
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { mkdir, open, readFile } from 'node:fs/promises'
import path from 'node:path'
import type { S3Config } from '../../src/core/config.js'
import type { CorpusFile } from '../corpus.js'
import { MiB } from '../lib.js'

export const RAW_OBJECT_BYTES = 16 * MiB

/** The corpus bytes cut into consecutive RAW_OBJECT_BYTES pieces, each passed to `fn` in a reused buffer. */
export async function forEachRawObject(
  files: readonly CorpusFile[],
  fn: (i: number, body: Buffer) => Promise<void>,
): Promise<number> {
  const buf = Buffer.allocUnsafe(RAW_OBJECT_BYTES)
  let used = 0
  let n = 0
  for (const f of files) {
    for (let off = 0; off < f.data.length;) {
      const c = Math.min(f.data.length - off, RAW_OBJECT_BYTES - used)
      f.data.copy(buf, used, off, off + c)
      used += c
      off += c
      if (used === RAW_OBJECT_BYTES) {
        await fn(n++, buf)
        used = 0
      }
    }
  }
  if (used > 0) await fn(n++, buf.subarray(0, used))
  return n
}

export async function rawLocalWrite(dir: string, files: readonly CorpusFile[]): Promise<number> {
  await mkdir(dir, { recursive: true })
  const n = await forEachRawObject(files, async (i, body) => {
    const fh = await open(path.join(dir, `raw-${i}`), 'w')
    try {
      await fh.write(body, 0, body.length, 0)
      await fh.sync()
    } finally {
      await fh.close()
    }
  })
  const d = await open(dir, 'r')
  await d.sync()
  await d.close()
  return n
}

export async function rawLocalRead(dir: string, n: number): Promise<number> {
  let bytes = 0
  for (let i = 0; i < n; i++) bytes += (await readFile(path.join(dir, `raw-${i}`))).length
  return bytes
}

export function s3Client(cfg: S3Config): S3Client {
  return new S3Client({
    region: cfg.region,
    forcePathStyle: cfg.forcePathStyle,
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
    ...(cfg.accessKeyId && cfg.secretAccessKey
      ? { credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey } }
      : {}),
  })
}

export async function rawS3Write(
  client: S3Client,
  bucket: string,
  prefix: string,
  files: readonly CorpusFile[],
): Promise<number> {
  return forEachRawObject(files, async (i, body) => {
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}raw-${i}`,
        Body: body,
        ContentLength: body.length,
      }),
    )
  })
}

export async function rawS3Read(
  client: S3Client,
  bucket: string,
  prefix: string,
  n: number,
): Promise<number> {
  let bytes = 0
  for (let i = 0; i < n; i++) {
    const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}raw-${i}` }))
    if (!out.Body) throw new Error('raw GetObject: no body')
    bytes += (await out.Body.transformToByteArray()).byteLength
  }
  return bytes
}
