// The server side of workspace sync (docs/SYNC.md): per volume a change feed, a listing to
// (re)start from, file contents as chunk lists, chunk upload and download by hash, and commits
// of client changes against the versions the client saw, remembered by idempotency key.
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { HASH_BYTES, hashChunk } from '../blockstore/hash.js'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import type { Ino, TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import type { Extent } from '../snapshots/extents.js'
import { resolve, splitPath } from '../snapshots/paths.js'
import { isDir, type Attr } from '../snapshots/types.js'
import type { Vfs } from '../snapshots/vfs.js'
import { applyOps, type OpResult, type SyncOp } from './commit.js'
import { applyDelta, sign } from './delta.js'
import { checkRelPath, entryOf, normalRoot, volumePath, walk, type SyncEntry } from './entries.js'
import { VolumeFeed, type FeedAnswer } from './feed.js'

export interface SyncServiceOptions {
  engine: VolumeEngine
  chunks: ChunkStore
  db: Db
  log: Logger
}

export interface FileContent {
  entry: SyncEntry
  /** Small files: the bytes. */
  inline?: Buffer
  /** Otherwise slices of chunks, in file order; bytes no extent covers are zeros. */
  extents?: readonly Extent[]
}

export class SyncService {
  private readonly feeds = new Map<string, Promise<VolumeFeed>>()
  private readonly sweep: NodeJS.Timeout
  /** Temporary files made before this (by a server that crashed) are leftovers. */
  private readonly startedAt = Date.now()

  constructor(private readonly o: SyncServiceOptions) {
    this.sweep = setInterval(() => void this.sweepIdle(), Math.min(limits.syncFeedIdleMs, 60_000))
    this.sweep.unref()
  }

  private async vfsOf(teamId: TeamId, volumeId: string): Promise<Vfs> {
    await this.o.engine.catalog.getUserVolume(teamId, volumeId) // another team's volume: not found
    return this.o.engine.vfs(teamId, volumeId)
  }

  /** The volume's feed, opened on first use; a feed on a Vfs that was replaced starts over. */
  private async feed(teamId: TeamId, volumeId: string): Promise<VolumeFeed> {
    const vfs = await this.vfsOf(teamId, volumeId)
    const key = `${teamId}/${volumeId}`
    let p = this.feeds.get(key)
    if (p) {
      const f = await p.catch(() => undefined)
      if (f && f.vfs === vfs) return f
      f?.close()
      this.feeds.delete(key)
    }
    p = VolumeFeed.open(vfs)
    this.feeds.set(key, p)
    p.catch(() => this.feeds.delete(key))
    return p
  }

  private async sweepIdle(): Promise<void> {
    for (const [key, p] of this.feeds) {
      const f = await p.catch(() => undefined)
      if (f && Date.now() - f.lastPollAt > limits.syncFeedIdleMs) {
        f.close()
        this.feeds.delete(key)
      }
    }
  }

  close(): void {
    clearInterval(this.sweep)
    for (const p of this.feeds.values())
      void p.then(
        (f) => f.close(),
        () => undefined,
      )
    this.feeds.clear()
  }

  /**
   * Everything under the root, with the cursor to follow changes from: the cursor is taken
   * before the walk, so a change made during it is in the feed too (answers are idempotent).
   */
  async tree(
    teamId: TeamId,
    volumeId: string,
    rootPath: string | undefined,
  ): Promise<{ cursor: string; root: string; entries: SyncEntry[] }> {
    const root = normalRoot(rootPath)
    const f = await this.feed(teamId, volumeId)
    f.lastPollAt = Date.now()
    const cursor = f.cursor()
    const dir = await resolve(f.vfs, splitPath(root))
    if (!isDir(dir.mode)) throw new S0Error('path_not_directory', `${root} is not a directory`)
    const entries: SyncEntry[] = []
    // A temporary file of a commit cut off by a crash is removed once it is surely stale:
    // older than this service (no commit of ours can be writing it) or than the bound.
    const sweepTemp = async (dirIno: Ino, name: string, a: Attr): Promise<void> => {
      const ms = Number(a.ctimeNs / 1_000_000n)
      if (ms >= this.startedAt && Date.now() - ms < limits.syncTempStaleMs) return
      if (f.vfs.readOnly) return
      await f.vfs.unlink(dirIno, Buffer.from(name)).catch(() => undefined)
    }
    for await (const e of walk(f.vfs, dir.ino, '', sweepTemp)) entries.push(e)
    return { cursor, root, entries }
  }

  async changes(
    teamId: TeamId,
    volumeId: string,
    rootPath: string | undefined,
    cursor: string,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<FeedAnswer> {
    const root = normalRoot(rootPath)
    const f = await this.feed(teamId, volumeId)
    return f.changes(root, cursor, Math.max(0, Math.min(waitMs, limits.syncChangesWaitMsMax)), signal)
  }

  async file(
    teamId: TeamId,
    volumeId: string,
    rootPath: string | undefined,
    rel: string,
  ): Promise<FileContent> {
    const root = normalRoot(rootPath)
    checkRelPath(rel)
    const vfs = await this.vfsOf(teamId, volumeId)
    const a = await resolve(vfs, splitPath(volumePath(root, rel)))
    const c = await vfs.content(a.ino)
    const entry = await entryOf(vfs, rel, c.attr)
    return c.inline
      ? { entry, inline: c.inline.subarray(0, Math.min(c.inline.length, c.attr.size)) }
      : { entry, extents: c.extents }
  }

  /** Which of these chunks the team lacks (the ones it has are kept from GC for a while). */
  async missing(teamId: TeamId, hashes: Buffer[]): Promise<Buffer[]> {
    if (hashes.length > limits.syncMissingHashesMax)
      throw new S0Error('invalid_request', `at most ${limits.syncMissingHashesMax} hashes per question`)
    for (const h of hashes) checkHash(h)
    const known = await this.o.chunks.index.touchExisting(teamId, hashes)
    return hashes.filter((h) => !known.has(h.toString('hex')))
  }

  /** Stores one chunk the client sent, after checking it hashes to its name. */
  async putChunk(teamId: TeamId, hash: Buffer, body: Buffer): Promise<void> {
    checkHash(hash)
    if (body.length === 0 || body.length > this.o.chunks.chunkerParams.maxBytes)
      throw new S0Error('invalid_request', `a chunk is 1..${this.o.chunks.chunkerParams.maxBytes} bytes`)
    if (!hashChunk(body).equals(hash))
      throw new S0Error('sync_chunk_mismatch', `the body does not hash to ${hash.toString('hex')}`)
    const w = this.o.chunks.writer(teamId)
    await w.addChunks([body])
    await w.finish()
  }

  /** Block signatures of chunks the team has (delta.ts), for a client to send deltas against. */
  async signatures(
    teamId: TeamId,
    hashes: Buffer[],
    inlineOf?: { volumeId: string; root: string | undefined; paths: string[] },
  ): Promise<Map<string, Buffer>> {
    if (hashes.length + (inlineOf?.paths.length ?? 0) > limits.syncSignatureChunksMax)
      throw new S0Error('invalid_request', `at most ${limits.syncSignatureChunksMax} chunks per question`)
    for (const h of hashes) checkHash(h)
    hashes = [...hashes]
    if (inlineOf) {
      // A small file's bytes live in its inode, not in a chunk: stored as one (a small write,
      // deduplicated, collected later if nothing refers to it), so a delta can name it.
      for (const rel of inlineOf.paths) {
        const f = await this.file(teamId, inlineOf.volumeId, inlineOf.root, rel).catch(() => null)
        if (!f?.inline || f.inline.length === 0) continue
        const refs = await this.o.chunks.put(teamId, f.inline)
        if (refs.length === 1) hashes.push((refs[0] as { hash: Buffer }).hash)
      }
    }
    const known = await this.o.chunks.index.touchExisting(teamId, hashes)
    const have = hashes.filter((h) => known.has(h.toString('hex')))
    const out = new Map<string, Buffer>()
    const bufs = await this.o.chunks.readMany(teamId, have)
    have.forEach((h, i) => out.set(h.toString('hex'), sign(bufs[i] as Buffer)))
    return out
  }

  /**
   * Stores many chunks sent at once (frames of a 32-byte hash, a u32 LE length and the bytes),
   * each checked against its name; one durability barrier for all (one pack fsync, not one per
   * chunk). Nothing is stored unless every frame is whole and right.
   */
  async putChunks(teamId: TeamId, body: Buffer): Promise<number> {
    const frames: { hash: Buffer; data: Buffer }[] = []
    for (let p = 0; p < body.length;) {
      if (p + 36 > body.length) throw new S0Error('invalid_request', 'a chunk frame is cut short')
      const hash = body.subarray(p, p + 32)
      const len = body.readUInt32LE(p + 32)
      if (len === 0 || len > this.o.chunks.chunkerParams.maxBytes || p + 36 + len > body.length)
        throw new S0Error('invalid_request', `bad chunk frame length ${len}`)
      const data = body.subarray(p + 36, p + 36 + len)
      if (!hashChunk(data).equals(hash))
        throw new S0Error('sync_chunk_mismatch', `a frame does not hash to ${hash.toString('hex')}`)
      frames.push({ hash, data })
      p += 36 + len
    }
    if (frames.length === 0) return 0
    const w = this.o.chunks.writer(teamId)
    await w.addChunks(frames.map((f) => f.data))
    await w.finish()
    return frames.length
  }

  /** Stores a chunk sent as a delta against chunks the team has; it must hash to its name. */
  async putChunkDelta(teamId: TeamId, hash: Buffer, delta: Buffer): Promise<void> {
    checkHash(hash)
    const body = await applyDelta(delta, async (h) => {
      const known = await this.o.chunks.index.touchExisting(teamId, [h])
      if (!known.has(h.toString('hex')))
        throw new S0Error('chunk_not_found', `delta base ${h.toString('hex')} is not a chunk of the team`)
      return this.o.chunks.read(teamId, Buffer.from(h))
    })
    await this.putChunk(teamId, hash, body)
  }

  async readChunk(teamId: TeamId, hash: Buffer): Promise<Buffer> {
    checkHash(hash)
    const known = await this.o.chunks.index.touchExisting(teamId, [hash])
    if (!known.has(hash.toString('hex')))
      throw new S0Error('chunk_not_found', `no chunk ${hash.toString('hex')}`)
    return this.o.chunks.read(teamId, hash)
  }

  async commit(
    teamId: TeamId,
    volumeId: string,
    rootPath: string | undefined,
    idempotencyKey: string,
    ops: SyncOp[],
  ): Promise<{ results: OpResult[]; replayed: boolean }> {
    const root = normalRoot(rootPath)
    if (ops.length > limits.syncCommitOpsMax)
      throw new S0Error('invalid_request', `at most ${limits.syncCommitOpsMax} operations per commit`)
    const volume = await this.o.engine.catalog.getUserVolume(teamId, volumeId)
    if (volume.accessMode === 'ROX') throw new S0Error('read_only', `volume ${volumeId} is read-only (ROX)`)
    const { rows } = await this.o.db.query<{ answer: { results: OpResult[] } }>(
      `SELECT answer FROM sync_commits WHERE team_id = $1 AND volume_id = $2 AND idempotency_key = $3`,
      [teamId, volumeId, idempotencyKey],
    )
    if (rows[0]) return { results: rows[0].answer.results, replayed: true }
    const vfs = await this.o.engine.vfs(teamId, volumeId)
    const results = await applyOps(
      {
        vfs,
        chunks: this.o.chunks,
        teamId,
        root,
        owner: { uid: volume.defaultPosixUid, gid: volume.defaultPosixGid },
      },
      ops,
    )
    await this.o.db.query(
      `INSERT INTO sync_commits (team_id, volume_id, idempotency_key, answer) VALUES ($1, $2, $3, $4)
       ON CONFLICT DO NOTHING`,
      [teamId, volumeId, idempotencyKey, JSON.stringify({ results })],
    )
    await this.o.db.query(
      `DELETE FROM sync_commits WHERE created_at < now() - $1::int * interval '1 millisecond'`,
      [limits.syncIdempotencyTtlMs],
    )
    return { results, replayed: false }
  }
}

function checkHash(h: Buffer): void {
  if (h.length !== HASH_BYTES) throw new S0Error('invalid_request', `a chunk hash is ${HASH_BYTES} bytes`)
}
