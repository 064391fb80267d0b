// Starts s3rver in a child process (tests and benches) and returns its S3 configuration.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { S3Config } from '../src/core/config.js'

export interface S3rverHandle {
  config: S3Config
  dir: string
  stop(): Promise<void>
}

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), 's3rver-main.cjs')
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const

export async function startS3rver(
  opts: {
    bucket?: string
    dir?: string
    /** The address it listens on (default loopback; a cluster test's bridge address). */
    address?: string
  } = {},
): Promise<S3rverHandle> {
  const bucket = opts.bucket ?? 's0'
  const address = opts.address ?? '127.0.0.1'
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), 's0-s3rver-')))
  const args = ['--openssl-legacy-provider', MAIN, dir, bucket, '0', address]
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString()
      const line = out.split('\n')[0]
      if (out.includes('\n') && line) {
        try {
          resolve((JSON.parse(line) as { port: number }).port)
        } catch (err) {
          reject(err as Error)
        }
      }
    })
    child.once('exit', (code) => reject(new Error(`s3rver exited early (${code})`)))
  })
  return {
    dir,
    config: {
      endpoint: `http://${address}:${port}`,
      region: 'us-east-1',
      bucket,
      prefix: '',
      forcePathStyle: true,
      ...S3RVER_CREDENTIALS,
    },
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      await exited
      if (!opts.dir) await rm(dir, { recursive: true, force: true })
    },
  }
}
