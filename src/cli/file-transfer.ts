// Streaming file transfers between this machine and a files API route (`GET|POST <route>?path=`):
// uploads are sent chunked from a file or stdin, downloads written beside the target and renamed,
// so a failed transfer never leaves a truncated file. A progress line shows on a terminal.
import { once } from 'node:events'
import { createReadStream, createWriteStream } from 'node:fs'
import { readFile, rename, stat, unlink } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ApiError, type ApiClient } from './api-client.js'
import { Progress, counted } from './progress.js'

/** Uploads `local` (a regular file, or `-` for stdin) to `remotePath`; a path ending in / takes its name. */
export async function uploadFrom(
  api: ApiClient,
  route: string,
  local: string,
  remotePath: string,
): Promise<unknown> {
  let source: AsyncIterable<Uint8Array>
  let size: number | undefined
  let target = remotePath
  if (local === '-') source = process.stdin
  else {
    // Checked first: a missing file would otherwise surface as an opaque "fetch failed".
    const st = await stat(local).catch((err: NodeJS.ErrnoException) => {
      throw new ApiError(err.code ?? 'local_error', `${local}: ${err.message}`)
    })
    if (!st.isFile()) throw new ApiError('not_a_file', `${local} is not a regular file`)
    source = createReadStream(local)
    size = st.size
    if (target.endsWith('/')) target += path.basename(local)
  }
  const progress = new Progress(`uploading ${target}`)
  try {
    return await api.json('POST', route, { query: { path: target }, stream: counted(source, progress, size) })
  } finally {
    progress.done()
  }
}

/** Downloads `remotePath` to `local` (a file, a directory to put it in, or `-` for stdout). */
export async function downloadTo(
  api: ApiClient,
  route: string,
  remotePath: string,
  local: string,
): Promise<void> {
  const res = await api.request('GET', route, {
    query: { path: remotePath },
    accept: 'application/octet-stream',
  })
  const size = Number(res.headers.get('content-length') ?? '') || undefined
  const progress = new Progress(`downloading ${remotePath}`)
  const raw = res.body
    ? Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0])
    : Readable.from([])
  const body = counted(raw, progress, size)
  try {
    if (local === '-') {
      for await (const chunk of body) {
        // Respect the pipe's backpressure: never let a slow reader make us buffer the whole file.
        if (!process.stdout.write(chunk)) await once(process.stdout, 'drain')
      }
      return
    }
    let target = local
    // Nothing there (the usual case: the download creates it), or unreadable: then writing the
    // partial file beside it fails with the real reason.
    const st = await stat(local).catch(() => undefined)
    if (st?.isDirectory()) target = path.join(local, path.posix.basename(remotePath))
    const partial = `${target}.s0-partial-${process.pid}`
    try {
      await pipeline(Readable.from(body), createWriteStream(partial))
      await rename(partial, target)
    } catch (err) {
      // The partial file may not exist yet; the transfer's error is the one to report.
      await unlink(partial).catch(() => undefined)
      throw err
    }
  } finally {
    progress.done()
  }
}

/** A small local text input (a JSON policy or spec): a file, or `-` for stdin. */
export async function readLocalText(file: string): Promise<string> {
  if (file !== '-')
    return readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new ApiError(err.code ?? 'local_error', `${file}: ${err.message}`)
    })
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(Buffer.from(chunk))
  return Buffer.concat(chunks).toString('utf8')
}
