// Object store on a local directory (the embedded default). put = write a temp file, fsync,
// rename into place, fsync the directory: a crash leaves the old object or the new one, never half.
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises'
import path from 'node:path'
import { S0Error, abortError } from '../core/errors.js'
import {
  validateKey,
  type GetOptions,
  type IoOptions,
  type ObjectInfo,
  type ObjectStore,
} from './object-store.js'

const TMP_DIR = '.tmp'

export class LocalObjectStore implements ObjectStore {
  readonly name: string
  private readonly root: string
  private readonly knownDirs = new Set<string>()

  private constructor(root: string) {
    this.root = root
    this.name = `local:${root}`
  }

  static async open(root: string): Promise<LocalObjectStore> {
    const abs = path.resolve(root)
    await mkdir(path.join(abs, TMP_DIR), { recursive: true })
    // Temp files left by a crash mid-put are garbage: nothing refers to them.
    await rm(path.join(abs, TMP_DIR), { recursive: true, force: true })
    await mkdir(path.join(abs, TMP_DIR), { recursive: true })
    return new LocalObjectStore(abs)
  }

  private pathOf(key: string): string {
    validateKey(key)
    if (key === TMP_DIR || key.startsWith(TMP_DIR + '/')) throw new TypeError(`reserved object key: ${key}`)
    return path.join(this.root, key)
  }

  async put(key: string, body: Buffer, opts: IoOptions = {}): Promise<void> {
    const target = this.pathOf(key)
    checkAbort(opts.signal)
    const tmp = path.join(this.root, TMP_DIR, randomBytes(12).toString('hex'))
    try {
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644)
      try {
        let written = 0
        while (written < body.length) {
          const { bytesWritten } = await fh.write(body, written, body.length - written, written)
          written += bytesWritten
        }
        await fh.datasync() // data and size; the rename and the directory fsync cover the rest
      } finally {
        await fh.close()
      }
      checkAbort(opts.signal)
      await this.ensureDir(path.dirname(target))
      await rename(tmp, target)
      await fsyncDir(path.dirname(target))
    } catch (err) {
      // The temp file may not exist yet; leftovers in .tmp are removed at every open.
      await unlink(tmp).catch(() => undefined)
      throw mapFsError(err, key)
    }
  }

  async get(key: string, opts: GetOptions = {}): Promise<Buffer> {
    const file = this.pathOf(key)
    checkAbort(opts.signal)
    let fh
    try {
      fh = await open(file, 'r')
    } catch (err) {
      throw mapFsError(err, key)
    }
    try {
      const size = (await fh.stat()).size
      const offset = opts.range?.offset ?? 0
      const want = opts.range ? opts.range.length : size
      const buf = Buffer.allocUnsafe(Math.max(0, Math.min(want, size - offset)))
      let got = 0
      while (got < buf.length) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, offset + got)
        if (bytesRead === 0) break
        got += bytesRead
      }
      if (got !== want) {
        throw new S0Error('object_truncated', `object ${key}: wanted ${want} bytes at ${offset}, got ${got}`)
      }
      return buf
    } catch (err) {
      throw mapFsError(err, key)
    } finally {
      await fh.close()
    }
  }

  async head(key: string, opts: IoOptions = {}): Promise<ObjectInfo | undefined> {
    const file = this.pathOf(key)
    checkAbort(opts.signal)
    try {
      const st = await stat(file)
      return { key, size: st.size, lastModified: st.mtime }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw mapFsError(err, key)
    }
  }

  async delete(key: string, opts: IoOptions = {}): Promise<void> {
    const file = this.pathOf(key)
    checkAbort(opts.signal)
    try {
      await unlink(file)
      await fsyncDir(path.dirname(file))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw mapFsError(err, key)
    }
  }

  async *list(prefix: string, opts: IoOptions = {}): AsyncIterable<ObjectInfo> {
    // Walk only the directory that can hold the prefix, in sorted order so keys come out sorted.
    const slash = prefix.lastIndexOf('/')
    const baseRel = slash >= 0 ? prefix.slice(0, slash) : ''
    yield* this.walk(baseRel, prefix, opts.signal)
  }

  private async *walk(
    rel: string,
    prefix: string,
    signal: AbortSignal | undefined,
  ): AsyncIterable<ObjectInfo> {
    checkAbort(signal)
    let entries
    try {
      entries = await readdir(path.join(this.root, rel), { withFileTypes: true })
    } catch (err) {
      if (
        (err as NodeJS.ErrnoException).code === 'ENOENT' ||
        (err as NodeJS.ErrnoException).code === 'ENOTDIR'
      )
        return
      throw mapFsError(err, rel)
    }
    // Sort by the key each entry produces ("a/" sorts after "a-"), not by bare name.
    const named = entries
      .filter((e) => !(rel === '' && e.name === TMP_DIR))
      .map((e) => ({ e, sortKey: e.isDirectory() ? e.name + '/' : e.name }))
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0))
    for (const { e } of named) {
      const key = rel === '' ? e.name : `${rel}/${e.name}`
      if (e.isDirectory()) {
        if (key.startsWith(prefix) || prefix.startsWith(key + '/')) yield* this.walk(key, prefix, signal)
      } else if (e.isFile() && key.startsWith(prefix)) {
        // Deleted between readdir and stat: no longer there, so not listed.
        const st = await stat(path.join(this.root, key)).catch(() => undefined)
        if (st) yield { key, size: st.size, lastModified: st.mtime }
      }
    }
  }

  private async ensureDir(dir: string): Promise<void> {
    if (this.knownDirs.has(dir)) return
    const created = await mkdir(dir, { recursive: true })
    if (created !== undefined) {
      // Make every newly created directory entry durable, from the top one created downwards.
      for (let d = dir; d.length >= created.length; d = path.dirname(d)) await fsyncDir(path.dirname(d))
    }
    this.knownDirs.add(dir)
  }

  async close(): Promise<void> {}
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal)
}

function mapFsError(err: unknown, key: string): unknown {
  if (err instanceof S0Error || err instanceof TypeError) return err
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return new S0Error('object_not_found', `object not found: ${key}`, { cause: err })
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new S0Error('object_store_denied', `local object store refused ${key}: ${code}`, { cause: err })
  }
  return new S0Error(
    'object_store_unavailable',
    `local object store failed on ${key}: ${code ?? String(err)}`,
    { cause: err },
  )
}
