// POSIX file-system operations on one volume, independent of FUSE: the FUSE mount, the files API
// and sandbox root filesystems all call these. Failures are S0Errors whose catalogue entry
// carries the errno. Metadata changes are one Postgres transaction each, on the head layer.
import { LRUCache } from 'lru-cache'
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { assert } from '../core/assert.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { TeamId } from '../core/ids.js'
import { checkExtents, extentsIn, spliceExtents, truncateExtents, type Extent } from './extents.js'
import type { MetadataBatch, MetadataStore, VolumeRow, VolumeUsage } from './metadata-store.js'
import { Mutex, WriteBuffer } from './write-buffer.js'
import {
  attrOf,
  isDir,
  isLnk,
  isReg,
  kindOf,
  nowNs,
  NAME_BYTES_MAX,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  ROOT_INO,
  S_IFDIR,
  S_IFBLK,
  S_IFCHR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  SYMLINK_BYTES_MAX,
  XATTR_NAME_BYTES_MAX,
  XATTR_VALUE_BYTES_MAX,
  type Attr,
  type DirEntry,
  type Inode,
} from './types.js'

export interface VfsOptions {
  metadata: MetadataStore
  chunks: ChunkStore
  volume: VolumeRow
  readOnly?: boolean
  /** Dirty bytes per file before an early flush to the chunk store. */
  fileDirtyBytesMax?: number
  /** Dirty bytes in the whole volume before the largest file is flushed early. */
  volumeDirtyBytesMax?: number
  /** How long a file closed with `release(ino, {flush: 'soon'})` may stay buffered. */
  writebackDelayMs?: number
}

export interface SetAttr {
  mode?: number
  uid?: number
  gid?: number
  size?: number
  atimeNs?: bigint
  mtimeNs?: bigint
}

/** A change to the volume's namespace or content, for watchers (files API watch, sync). */
export interface ChangeEvent {
  event: 'create' | 'write' | 'remove' | 'rename' | 'chmod' | 'invalidate'
  /** The directory holding `name` (the root for `invalidate`). */
  parentIno: number
  /** The entry's name; null for content and attribute changes (see `pathOf`). */
  name: Buffer | null
  ino: number
}

export interface StatFs {
  blockSize: number
  blocks: number
  blocksFree: number
  files: number
  filesFree: number
  nameMax: number
}

const INO_BATCH = 256
const READDIR_PAGE = 1000
const INODE_CACHE_MAX = 100_000
const UNLIMITED = 2 ** 50
const BLOCK = 4096

/**
 * A file's unflushed writes: `pending` takes new writes; `inFlight` holds the runs being flushed
 * (still visible to reads until their commit). Batches run one at a time, so a file's flushes
 * commit in order.
 */
class DirtyFile {
  pending = new WriteBuffer()
  inFlight: WriteBuffer | null = null
  /** Time of the last write; null once a setattr set the times after it (rsync, tar, cp -p). */
  mtimeNs: bigint | null = null

  get end(): number {
    return Math.max(this.pending.end, this.inFlight?.end ?? 0)
  }

  get bytes(): number {
    return this.pending.bytes + (this.inFlight?.bytes ?? 0)
  }

  overlay(off: number, out: Buffer): void {
    this.inFlight?.overlay(off, out)
    this.pending.overlay(off, out)
  }

  truncate(size: number): void {
    this.pending.truncate(size)
    this.inFlight?.truncate(size)
  }
}

/** Queued metadata changes before a writer waits for Postgres. */
const COMMIT_QUEUE_MAX = 512
/** Queued changes merged into one statement at most. */
const COMMIT_GROUP_MAX = 256
const COMMIT_RETRIES = 4

interface QueuedCommit {
  batch: MetadataBatch
  head: number
  usage: VolumeUsage
}

interface Added {
  off: number
  len: number
  extents: Extent[]
}

/** Files to flush together; `urgent` once someone awaits it (else it waits writebackDelayMs). */
interface WritebackBatch {
  inos: Set<number>
  urgent: boolean
  done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

export function checkName(name: Buffer): void {
  if (name.length === 0) throw new S0Error('invalid_path', 'empty name')
  if (name.length > NAME_BYTES_MAX)
    throw new S0Error('name_too_long', `name is ${name.length} bytes (max ${NAME_BYTES_MAX})`)
  if (name.includes(0) || name.includes(0x2f))
    throw new S0Error('invalid_path', 'a name may not contain NUL or "/"')
  if (
    (name.length === 1 && name[0] === 0x2e) ||
    (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)
  ) {
    throw new S0Error('invalid_path', 'a name may not be "." or ".."')
  }
}

export class Vfs {
  readonly volumeId: string
  readonly teamId: TeamId
  readonly readOnly: boolean
  private headId: number
  private chain: number[]
  private readonly metadata: MetadataStore
  private readonly chunks: ChunkStore
  private readonly mutex = new Mutex()
  private readonly inodes = new LRUCache<number, Inode | false>({ max: INODE_CACHE_MAX })
  /**
   * Directories whose every entry is in `names` (made by this Vfs, the single writer): a miss
   * there is a definite "no such name", with no query. A directory leaves the set as soon as
   * one of its names is evicted from the cache.
   */
  private readonly completeDirs = new Set<number>()
  private readonly names = new LRUCache<string, number>({
    max: INODE_CACHE_MAX,
    dispose: (_ino, key, reason) => {
      if (reason === 'evict' || reason === 'delete')
        this.completeDirs.delete(Number(key.slice(0, key.indexOf(':'))))
    },
  })
  private readonly dirty = new Map<number, DirtyFile>()
  private readonly openCount = new Map<number, number>()
  private readonly orphans = new Set<number>()
  private readonly listeners = new Set<(e: ChangeEvent) => void>()
  private readonly dirPaths = new Map<number, string>()
  private readonly readState = new LRUCache<number, { lastEnd: number; prefetchedTo: number }>({
    max: 10_000,
  })
  private relaxedSinceSync = false
  private syncing: Promise<void> | null = null
  private readonly commitQueue: QueuedCommit[] = []
  private committing: Promise<void> | null = null
  private syncNext: Promise<void> | null = null
  private pendingBatch: WritebackBatch | null = null
  private batchRunning = false
  private writebackTimer: NodeJS.Timeout | null = null
  private readonly writebackDelayMs: number
  private inoNext = 0
  private inoLimit = 0
  private usedBytes: number
  private usedInodes: number
  private readonly quotaBytes: number | null
  private readonly quotaInodes: number | null
  private readonly fileDirtyMax: number
  private readonly volumeDirtyMax: number

  private constructor(opts: VfsOptions, chain: number[]) {
    this.metadata = opts.metadata
    this.chunks = opts.chunks
    this.volumeId = opts.volume.id
    this.teamId = opts.volume.teamId
    this.readOnly = opts.readOnly ?? false
    this.headId = opts.volume.headLayerId
    this.chain = chain
    this.usedBytes = opts.volume.usedBytes
    this.usedInodes = opts.volume.usedInodes
    this.quotaBytes = opts.volume.quotaBytes
    this.quotaInodes = opts.volume.quotaInodes
    this.fileDirtyMax = opts.fileDirtyBytesMax ?? 64 * 1024 * 1024
    this.volumeDirtyMax = opts.volumeDirtyBytesMax ?? 256 * 1024 * 1024
    this.writebackDelayMs = opts.writebackDelayMs ?? 200
  }

  static async open(opts: VfsOptions): Promise<Vfs> {
    return new Vfs(opts, await opts.metadata.catalog.chainOf(opts.volume.headLayerId))
  }

  /** After a snapshot or fork sealed our head: same content, new head. */
  async headMoved(volume: VolumeRow, contentChanged: boolean): Promise<void> {
    this.headId = volume.headLayerId
    this.chain = await this.metadata.catalog.chainOf(volume.headLayerId)
    this.usedBytes = volume.usedBytes
    this.usedInodes = volume.usedInodes
    if (contentChanged) {
      this.inodes.clear()
      this.names.clear()
      this.completeDirs.clear()
      this.dirty.clear()
      this.orphans.clear()
      this.dirPaths.clear()
      this.readState.clear()
      this.emit('invalidate', ROOT_INO, null)
    }
  }

  /** Re-reads the layer chain (after a flatten re-parented a layer in it). */
  async refreshChain(): Promise<void> {
    this.chain = await this.metadata.catalog.chainOf(this.headId)
  }

  get layerChain(): readonly number[] {
    return this.chain
  }

  // ---- reads -------------------------------------------------------------------------------

  private async inode(ino: number): Promise<Inode> {
    const cached = this.inodes.get(ino)
    if (cached) return cached
    if (cached === false) throw new S0Error('file_not_found', `inode ${ino} does not exist`)
    await this.drainCommits()
    const i = await this.metadata.readInode(this.chain, ino)
    this.inodes.set(ino, i ?? false)
    if (!i) throw new S0Error('file_not_found', `inode ${ino} does not exist`)
    return i
  }

  private async dirInode(ino: number): Promise<Inode> {
    const d = await this.inode(ino)
    if (!isDir(d.mode)) throw new S0Error('path_not_directory', `inode ${ino} is not a directory`)
    return d
  }

  private nameKey(parent: number, name: Buffer): string {
    return `${parent}:${name.toString('hex')}`
  }

  private async entry(parent: number, name: Buffer): Promise<number> {
    const key = this.nameKey(parent, name)
    const cached = this.names.get(key)
    if (cached !== undefined) return cached
    if (this.completeDirs.has(parent)) return 0
    await this.drainCommits()
    const ino = await this.metadata.lookupEntry(this.chain, parent, name)
    this.names.set(key, ino)
    return ino
  }

  private withDirtySize(i: Inode): Attr {
    const a = attrOf(i)
    const d = this.dirty.get(i.ino)
    if (d) {
      if (d.end > a.size) a.size = d.end
      if (d.mtimeNs !== null) a.mtimeNs = a.ctimeNs = d.mtimeNs
    }
    return a
  }

  async getattr(ino: number): Promise<Attr> {
    return this.withDirtySize(await this.inode(ino))
  }

  async lookup(parent: number, name: Buffer): Promise<Attr> {
    checkName(name)
    await this.dirInode(parent)
    const ino = await this.entry(parent, name)
    if (!ino)
      throw new S0Error(
        'file_not_found',
        `no entry ${JSON.stringify(name.toString())} in directory ${parent}`,
      )
    return this.getattr(ino)
  }

  async readlink(ino: number): Promise<Buffer> {
    const i = await this.inode(ino)
    if (!isLnk(i.mode) || !i.target) throw new S0Error('bad_request', `inode ${ino} is not a symlink`)
    return i.target
  }

  /**
   * Every entry of a directory, remembered: afterwards the directory is complete in the name
   * cache (until one of its names is evicted), so lookups and creates in it cost no query. For
   * bulk writers filling directories that exist already (the root-filesystem capture).
   */
  async listAll(ino: number): Promise<DirEntry[]> {
    return this.mutex.run(async () => {
      await this.dirInode(ino)
      await this.drainCommits()
      const out: DirEntry[] = []
      for (let after: Buffer | null = null; ;) {
        const page = await this.metadata.listEntries(this.chain, ino, after, READDIR_PAGE)
        out.push(...page)
        if (page.length < READDIR_PAGE) break
        after = (page[page.length - 1] as DirEntry).name
      }
      if (out.length <= INODE_CACHE_MAX / 4) {
        const keys = out.map((e) => this.nameKey(ino, e.name))
        out.forEach((e, i) => this.names.set(keys[i] as string, e.ino))
        // Complete only if inserting them evicted none of them.
        if (keys.every((k) => this.names.has(k))) this.completeDirs.add(ino)
      }
      return out
    })
  }

  /** Entries after `after` in name order (a stable cursor while the directory changes). */
  async readdir(ino: number, after: Buffer | null = null, limit = 1000): Promise<DirEntry[]> {
    await this.dirInode(ino)
    await this.drainCommits()
    return this.metadata.listEntries(this.chain, ino, after, limit)
  }

  async read(ino: number, off: number, len: number): Promise<Buffer> {
    const i = await this.inode(ino)
    if (isDir(i.mode)) throw new S0Error('path_not_file', `inode ${ino} is a directory`)
    const d = this.dirty.get(ino)
    const size = Math.max(i.size, d?.end ?? 0)
    const end = Math.min(size, off + len)
    if (off >= end) return Buffer.alloc(0)
    const out = Buffer.alloc(end - off) // holes read as zeros
    const ext = extentsIn(i.extents, off, end - off)
    const ahead = this.readAhead(ino, i.extents, off, end, size)
    // This read asks for its own chunks first; read-ahead then fills the cache in the
    // background (one coalesced GET for the rest of the window) without holding this read up.
    const needed = ext.map((e) => e.hash)
    const own = needed.length > 0 ? this.chunks.readMany(this.teamId, needed) : null
    const rest = ahead.filter((h) => !needed.some((n) => n.equals(h)))
    if (rest.length > 0) void this.chunks.readMany(this.teamId, rest).catch(() => undefined)
    if (own) {
      const bufs = await own
      ext.forEach((e, k) => {
        const chunk = bufs[k] as Buffer
        const from = Math.max(off, e.off)
        const to = Math.min(end, e.off + e.len)
        chunk.copy(out, from - off, e.coff + (from - e.off), e.coff + (to - e.off))
      })
    }
    d?.overlay(off, out)
    return out
  }

  /**
   * Sequential readers get a window of chunks ahead of them (limits.readAheadBytes), refilled
   * when half used, so a refill is one ranged GET of several chunks rather than one GET per
   * chunk boundary. Returns the hashes to fetch along with the read.
   */
  private readAhead(
    ino: number,
    extents: readonly Extent[],
    off: number,
    end: number,
    size: number,
  ): Buffer[] {
    const st = this.readState.get(ino) ?? { lastEnd: 0, prefetchedTo: 0 }
    const sequential = off === st.lastEnd
    st.lastEnd = end
    this.readState.set(ino, st)
    const window = limits.readAheadBytes
    if (!sequential || end + window / 2 <= st.prefetchedTo || end >= size) return []
    const from = Math.max(end, st.prefetchedTo)
    const to = Math.min(size, end + window)
    st.prefetchedTo = to
    return from < to ? extentsIn(extents, from, to - from).map((e) => e.hash) : []
  }

  async statfs(): Promise<StatFs> {
    const bytes = this.quotaBytes ?? UNLIMITED
    const inodes = this.quotaInodes ?? UNLIMITED
    return {
      blockSize: BLOCK,
      blocks: Math.floor(bytes / BLOCK),
      blocksFree: Math.max(0, Math.floor((bytes - this.usedBytes) / BLOCK)),
      files: inodes,
      filesFree: Math.max(0, inodes - this.usedInodes),
      nameMax: NAME_BYTES_MAX,
    }
  }

  get usage(): { bytes: number; inodes: number } {
    return { bytes: this.usedBytes, inodes: this.usedInodes }
  }

  /** Subscribes to change events; returns the unsubscribe function. */
  watch(listener: (e: ChangeEvent) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private emit(event: ChangeEvent['event'], parentIno: number, name: Buffer | null, ino = 0): void {
    if (this.listeners.size === 0) return
    for (const l of this.listeners) l({ event, parentIno, name, ino })
  }

  /** A path of an inode (through the directory it was created or last moved in). */
  async pathOf(ino: number): Promise<string> {
    const i = await this.inode(ino)
    if (isDir(i.mode)) return this.dirPath(ino)
    const parent = i.parentIno ?? ROOT_INO
    await this.drainCommits()
    const name = await this.metadata.nameOf(this.chain, parent, ino)
    if (!name) throw new S0Error('file_not_found', `inode ${ino} has no name in directory ${parent}`)
    const dir = await this.dirPath(parent)
    return (dir === '/' ? '/' : dir + '/') + name.toString('utf8')
  }

  /** The absolute path of a directory inode ("/" for the root). */
  async dirPath(ino: number): Promise<string> {
    if (ino === ROOT_INO) return '/'
    const cached = this.dirPaths.get(ino)
    if (cached) return cached
    const d = await this.dirInode(ino)
    const parent = d.parentIno ?? ROOT_INO
    await this.drainCommits()
    const name = await this.metadata.nameOf(this.chain, parent, ino)
    if (!name) throw new S0Error('file_not_found', `directory ${ino} has no name`)
    const parentPath = await this.dirPath(parent)
    const path = (parentPath === '/' ? '/' : parentPath + '/') + name.toString('utf8')
    if (this.dirPaths.size > INODE_CACHE_MAX) this.dirPaths.clear()
    this.dirPaths.set(ino, path)
    return path
  }

  async getxattr(ino: number, name: string): Promise<Buffer> {
    const v = (await this.inode(ino)).xattrs.get(name)
    if (!v) throw new S0Error('xattr_not_found', `no attribute ${name}`)
    return v
  }

  async listxattr(ino: number): Promise<string[]> {
    return [...(await this.inode(ino)).xattrs.keys()]
  }

  // ---- writes ------------------------------------------------------------------------------

  /**
   * Runs one metadata change, serialised per volume. The change is applied to the caches at once
   * and queued for Postgres (write-behind): the caller does not wait for a round trip. Queued
   * changes are committed in order, several per statement, relaxed (synchronous_commit=off), and
   * become durable with the next sync() (fsync, close of a written file, API writes), which
   * drains the queue first. Every read that goes to Postgres drains it too, so the database
   * always shows this Vfs's own changes. On failure of `fn` the caches are dropped, since they
   * may hold part of the change.
   */
  private async mutate<T>(fn: (c: MetadataBatch, head: number) => Promise<T>): Promise<T> {
    if (this.readOnly) throw new S0Error('read_only', 'the volume is mounted read-only')
    const out = await this.mutex.run(async () => {
      const saved = { bytes: this.usedBytes, inodes: this.usedInodes }
      try {
        const batch = this.metadata.newBatch()
        const head = this.headId
        const result = await fn(batch, head)
        if (!batch.empty || saved.bytes !== this.usedBytes || saved.inodes !== this.usedInodes) {
          this.enqueueCommit(batch, head)
        }
        return result
      } catch (err) {
        this.usedBytes = saved.bytes
        this.usedInodes = saved.inodes
        this.inodes.clear()
        this.names.clear()
        this.completeDirs.clear()
        throw err
      }
    })
    // Bounded: a writer far ahead of Postgres waits for it.
    if (this.commitQueue.length >= COMMIT_QUEUE_MAX) await this.drainCommits()
    return out
  }

  private enqueueCommit(batch: MetadataBatch, head: number): void {
    this.commitQueue.push({
      batch,
      head,
      usage: { id: this.volumeId, usedBytes: this.usedBytes, usedInodes: this.usedInodes },
    })
    this.relaxedSinceSync = true
    this.kickCommits()
  }

  private kickCommits(): void {
    if (this.committing || this.commitQueue.length === 0) return
    const run = this.runCommits()
    this.committing = run
    run.then(
      () => {
        this.committing = null
        // Changes queued just as the run ended (after its last look at the queue).
        this.kickCommits()
      },
      () => {
        // A failed run leaves its batches queued: the next change, read or sync retries them.
        this.committing = null
      },
    )
  }

  /** Commits queued changes in order: all queued batches of one head layer per statement. */
  private async runCommits(): Promise<void> {
    while (this.commitQueue.length > 0) {
      const first = this.commitQueue[0] as QueuedCommit
      let n = 1
      while (n < this.commitQueue.length && n < COMMIT_GROUP_MAX && this.commitQueue[n]?.head === first.head)
        n++
      const group = this.commitQueue.slice(0, n)
      const merged = this.metadata.newBatch()
      for (const g of group) merged.absorb(g.batch)
      const usage = (group[n - 1] as QueuedCommit).usage
      for (let attempt = 0; ; attempt++) {
        try {
          await this.metadata.commit(merged, first.head, usage)
          break
        } catch (err) {
          if (attempt >= COMMIT_RETRIES) throw err
          await new Promise((r) => setTimeout(r, 50 * 2 ** attempt))
        }
      }
      this.commitQueue.splice(0, n)
    }
  }

  /**
   * Runs `fn` with no metadata change running or queued, everything committed and durable:
   * snapshot, fork and restore seal or replace the head layer inside it, so no change of this
   * Vfs can land in a layer after it was sealed.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      await this.sync()
      return fn()
    })
  }

  /** Resolves once every queued change is in Postgres (relaxed); throws if committing fails. */
  async drainCommits(): Promise<void> {
    while (this.commitQueue.length > 0) {
      this.kickCommits()
      await this.committing
    }
  }

  private async allocIno(): Promise<number> {
    if (this.inoNext >= this.inoLimit) {
      this.inoNext = await this.metadata.allocInodes(this.volumeId, INO_BATCH)
      this.inoLimit = this.inoNext + INO_BATCH
    }
    return this.inoNext++
  }

  private async put(c: MetadataBatch, _head: number, i: Inode): Promise<void> {
    c.putInode(i)
    this.inodes.set(i.ino, i)
  }

  private async link(
    c: MetadataBatch,
    _head: number,
    parent: number,
    name: Buffer,
    ino: number,
    mode: number,
  ): Promise<void> {
    c.putEntry(parent, name, ino, kindOf(mode))
    this.names.set(this.nameKey(parent, name), ino)
  }

  private async unlinkName(c: MetadataBatch, _head: number, parent: number, name: Buffer): Promise<void> {
    c.putEntry(parent, name, null, 0)
    this.names.set(this.nameKey(parent, name), 0)
  }

  private checkInodeQuota(): void {
    if (this.quotaInodes !== null && this.usedInodes + 1 > this.quotaInodes) {
      throw new S0Error('quota_exceeded', `inode quota of ${this.quotaInodes} reached`)
    }
  }

  private checkByteQuota(delta: number): void {
    if (delta > 0 && this.quotaBytes !== null && this.usedBytes + delta > this.quotaBytes) {
      throw new S0Error('no_space', `byte quota of ${this.quotaBytes} reached`)
    }
  }

  private newInode(ino: number, mode: number, uid: number, gid: number): Inode {
    const now = nowNs()
    return {
      ino,
      mode,
      uid,
      gid,
      nlink: 1,
      size: 0,
      rdev: 0,
      parentIno: null,
      atimeNs: now,
      mtimeNs: now,
      ctimeNs: now,
      target: null,
      xattrs: new Map(),
      extents: [],
    }
  }

  private async touchDir(c: MetadataBatch, head: number, dir: Inode, nlinkDelta = 0): Promise<void> {
    const now = nowNs()
    await this.put(c, head, { ...dir, nlink: dir.nlink + nlinkDelta, mtimeNs: now, ctimeNs: now })
  }

  /** Creates a node (regular file, directory, symlink, fifo) under `parent`. */
  private async makeNode(
    parent: number,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
    extra: (i: Inode) => void = () => undefined,
  ): Promise<Attr> {
    checkName(name)
    return this.mutate(async (c, head) => {
      const dir = await this.dirInode(parent)
      if (await this.entry(parent, name)) throw new S0Error('path_exists', `${name.toString()} exists`)
      this.checkInodeQuota()
      const i = this.newInode(await this.allocIno(), mode, owner.uid, owner.gid)
      extra(i)
      // Every inode remembers the directory it was made in (or last moved to): rename uses it for
      // directories, change events to name files.
      i.parentIno = parent
      if (isDir(mode)) {
        i.nlink = 2
        this.completeDirs.add(i.ino) // new and empty: every name it will hold goes through us
      }
      await this.put(c, head, i)
      await this.link(c, head, parent, name, i.ino, mode)
      await this.touchDir(c, head, dir, isDir(mode) ? 1 : 0)
      this.usedInodes++
      this.usedBytes += i.size
      this.emit('create', parent, name)
      return attrOf(i)
    })
  }

  /** O_CREAT: with `exclusive`, an existing name is EEXIST; otherwise it is returned as is. */
  async create(
    parent: number,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
    exclusive = true,
  ): Promise<Attr> {
    if (!exclusive) {
      checkName(name)
      const existing = await this.entry(parent, name).catch(() => 0)
      if (existing) return this.getattr(existing)
    }
    return this.makeNode(parent, name, S_IFREG | (mode & 0o7777), owner)
  }

  async mkdir(
    parent: number,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
  ): Promise<Attr> {
    return this.makeNode(parent, name, S_IFDIR | (mode & 0o7777), owner)
  }

  /**
   * Regular files and FIFOs; character and block devices only with `devices` (the server's own
   * rootfs capture: overlayfs whiteouts are character devices 0:0). A mount never creates them.
   */
  async mknod(
    parent: number,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
    opts: { devices?: boolean; rdev?: number } = {},
  ): Promise<Attr> {
    const type = mode & S_IFMT
    const device = type === S_IFCHR || type === S_IFBLK
    if (!(type === S_IFIFO || type === S_IFREG || type === 0 || (device && opts.devices))) {
      throw new S0Error('not_supported', 'only regular files and FIFOs can be created with mknod')
    }
    return this.makeNode(parent, name, (type || S_IFREG) | (mode & 0o7777), owner, (i) => {
      if (device) i.rdev = opts.rdev ?? 0
    })
  }

  async symlink(
    parent: number,
    name: Buffer,
    target: Buffer,
    owner: { uid: number; gid: number },
  ): Promise<Attr> {
    if (target.length === 0 || target.length > SYMLINK_BYTES_MAX || target.includes(0)) {
      throw new S0Error('invalid_path', `symlink target must be 1..${SYMLINK_BYTES_MAX} bytes without NUL`)
    }
    return this.makeNode(parent, name, S_IFLNK | 0o777, owner, (i) => {
      i.target = Buffer.from(target)
      i.size = target.length
    })
  }

  async hardlink(ino: number, newParent: number, newName: Buffer): Promise<Attr> {
    checkName(newName)
    return this.mutate(async (c, head) => {
      const i = await this.inode(ino)
      if (isDir(i.mode)) throw new S0Error('forbidden', 'hard links to directories are not allowed')
      const dir = await this.dirInode(newParent)
      if (await this.entry(newParent, newName))
        throw new S0Error('path_exists', `${newName.toString()} exists`)
      const updated = { ...i, nlink: i.nlink + 1, ctimeNs: nowNs() }
      await this.put(c, head, updated)
      await this.link(c, head, newParent, newName, ino, i.mode)
      await this.touchDir(c, head, dir)
      this.emit('create', newParent, newName)
      return attrOf(updated)
    })
  }

  /** Drops one link of `i`; frees it when no link and no open handle is left. */
  private async dropLink(c: MetadataBatch, head: number, i: Inode): Promise<void> {
    const nlink = isDir(i.mode) ? 0 : i.nlink - 1
    if (nlink > 0) {
      await this.put(c, head, { ...i, nlink, ctimeNs: nowNs() })
      return
    }
    if ((this.openCount.get(i.ino) ?? 0) > 0) {
      // Unlinked while open: keep the data readable until the last release.
      this.orphans.add(i.ino)
      await this.put(c, head, { ...i, nlink: 0, ctimeNs: nowNs() })
      return
    }
    await this.free(c, head, i)
  }

  private async free(c: MetadataBatch, head: number, i: Inode): Promise<void> {
    c.deleteInode(i.ino)
    this.inodes.set(i.ino, false)
    this.dirty.delete(i.ino)
    this.usedInodes--
    this.usedBytes -= i.size
  }

  async unlink(parent: number, name: Buffer): Promise<void> {
    checkName(name)
    await this.mutate(async (c, head) => {
      const dir = await this.dirInode(parent)
      const ino = await this.entry(parent, name)
      if (!ino) throw new S0Error('file_not_found', `${name.toString()} does not exist`)
      const i = await this.inode(ino)
      if (isDir(i.mode)) throw new S0Error('path_not_file', `${name.toString()} is a directory`)
      await this.unlinkName(c, head, parent, name)
      await this.dropLink(c, head, i)
      await this.touchDir(c, head, dir)
      this.emit('remove', parent, name)
    })
  }

  async rmdir(parent: number, name: Buffer): Promise<void> {
    checkName(name)
    await this.mutate(async (c, head) => {
      const dir = await this.dirInode(parent)
      const ino = await this.entry(parent, name)
      if (!ino) throw new S0Error('file_not_found', `${name.toString()} does not exist`)
      const i = await this.inode(ino)
      if (!isDir(i.mode)) throw new S0Error('path_not_directory', `${name.toString()} is not a directory`)
      await this.drainCommits()
      if (await this.metadata.hasEntries(this.chain, ino))
        throw new S0Error('directory_not_empty', `${name.toString()} is not empty`)
      await this.unlinkName(c, head, parent, name)
      await this.free(c, head, i)
      await this.touchDir(c, head, dir, -1)
      this.dirPaths.clear()
      this.emit('remove', parent, name)
    })
  }

  async rename(
    oldParent: number,
    oldName: Buffer,
    newParent: number,
    newName: Buffer,
    flags = 0,
  ): Promise<void> {
    checkName(oldName)
    checkName(newName)
    if (
      flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
      (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE)
    ) {
      throw new S0Error('bad_request', `unsupported rename flags ${flags}`)
    }
    await this.mutate(async (c, head) => {
      const src = await this.entry(oldParent, oldName)
      if (!src) throw new S0Error('file_not_found', `${oldName.toString()} does not exist`)
      await this.dirInode(newParent)
      if (oldParent === newParent && oldName.equals(newName)) return
      const srcInode = await this.inode(src)
      const dst = await this.entry(newParent, newName)
      if (isDir(srcInode.mode) && (await this.isAncestor(src, newParent))) {
        throw new S0Error('bad_request', 'cannot move a directory into itself')
      }
      if (flags & RENAME_NOREPLACE && dst) throw new S0Error('path_exists', `${newName.toString()} exists`)
      if (flags & RENAME_EXCHANGE) {
        if (!dst) throw new S0Error('file_not_found', `${newName.toString()} does not exist`)
        const dstInode = await this.inode(dst)
        if (isDir(dstInode.mode) && (await this.isAncestor(dst, oldParent))) {
          throw new S0Error('bad_request', 'cannot move a directory into itself')
        }
        await this.link(c, head, newParent, newName, src, srcInode.mode)
        await this.link(c, head, oldParent, oldName, dst, dstInode.mode)
        await this.reparent(c, head, srcInode, oldParent, newParent)
        await this.reparent(c, head, dstInode, newParent, oldParent)
        this.dirPaths.clear()
        this.emit('rename', oldParent, oldName)
        this.emit('rename', newParent, newName)
        return
      }
      if (dst) {
        if (dst === src) return // two names of one inode: POSIX says do nothing
        const dstInode = await this.inode(dst)
        if (isDir(srcInode.mode)) {
          if (!isDir(dstInode.mode))
            throw new S0Error('path_not_directory', `${newName.toString()} is not a directory`)
          await this.drainCommits()
          if (await this.metadata.hasEntries(this.chain, dst))
            throw new S0Error('directory_not_empty', `${newName.toString()} is not empty`)
          await this.free(c, head, dstInode)
          await this.touchDir(c, head, await this.inode(newParent), -1)
        } else {
          if (isDir(dstInode.mode)) throw new S0Error('path_not_file', `${newName.toString()} is a directory`)
          await this.dropLink(c, head, dstInode)
        }
      }
      await this.link(c, head, newParent, newName, src, srcInode.mode)
      await this.unlinkName(c, head, oldParent, oldName)
      await this.reparent(c, head, srcInode, oldParent, newParent)
      if (isDir(srcInode.mode)) this.dirPaths.clear()
      this.emit('rename', oldParent, oldName)
      this.emit('create', newParent, newName)
    })
  }

  /** After `i` moved from one directory to another: link counts, parent pointer, times. */
  private async reparent(c: MetadataBatch, head: number, i: Inode, from: number, to: number): Promise<void> {
    const now = nowNs()
    const moved = isDir(i.mode) && from !== to
    await this.put(c, head, {
      ...(await this.inode(i.ino)),
      parentIno: isDir(i.mode) ? to : i.parentIno,
      ctimeNs: now,
    })
    await this.touchDir(c, head, await this.inode(from), moved ? -1 : 0)
    if (to !== from) await this.touchDir(c, head, await this.inode(to), moved ? 1 : 0)
  }

  private async isAncestor(ancestor: number, ino: number): Promise<boolean> {
    for (let cur = ino, steps = 0; ; steps++) {
      if (cur === ancestor) return true
      if (cur === ROOT_INO) return false
      assert(steps < 100_000, 'directory parent chain does not reach the root')
      const parent = (await this.inode(cur)).parentIno
      if (parent === null) return false
      cur = parent
    }
  }

  async setattr(ino: number, set: SetAttr): Promise<Attr> {
    if (set.size !== undefined) {
      if (set.size < 0 || !Number.isSafeInteger(set.size))
        throw new S0Error('bad_request', `invalid size ${set.size}`)
      await this.flush(ino)
    }
    return this.mutate(async (c, head) => {
      const i = { ...(await this.inode(ino)) }
      const now = nowNs()
      if (set.mode !== undefined) i.mode = (i.mode & S_IFMT) | (set.mode & 0o7777)
      if (set.uid !== undefined) i.uid = set.uid
      if (set.gid !== undefined) i.gid = set.gid
      if (set.atimeNs !== undefined) i.atimeNs = set.atimeNs
      if (set.mtimeNs !== undefined) {
        i.mtimeNs = set.mtimeNs
        const d = this.dirty.get(ino)
        if (d) d.mtimeNs = null // buffered writes must not move it forward when they land
      }
      if (set.size !== undefined && set.size !== i.size) {
        if (!isReg(i.mode)) throw new S0Error('path_not_file', `inode ${ino} is not a regular file`)
        this.checkByteQuota(set.size - i.size)
        this.usedBytes += set.size - i.size
        i.extents = truncateExtents(i.extents, set.size)
        this.dirty.get(ino)?.truncate(set.size)
        i.size = set.size
        if (set.mtimeNs === undefined) i.mtimeNs = now
      }
      i.ctimeNs = now
      await this.put(c, head, i)
      this.emit(set.size !== undefined ? 'write' : 'chmod', i.parentIno ?? ROOT_INO, null, ino)
      return attrOf(i)
    })
  }

  async setxattr(
    ino: number,
    name: string,
    value: Buffer,
    mode: 'create' | 'replace' | 'any' = 'any',
  ): Promise<void> {
    if (
      Buffer.byteLength(name) === 0 ||
      Buffer.byteLength(name) > XATTR_NAME_BYTES_MAX ||
      value.length > XATTR_VALUE_BYTES_MAX
    ) {
      throw new S0Error(
        'xattr_too_large',
        `xattr name must be 1..${XATTR_NAME_BYTES_MAX} bytes, value at most ${XATTR_VALUE_BYTES_MAX}`,
      )
    }
    await this.mutate(async (c, head) => {
      const i = await this.inode(ino)
      if (mode === 'create' && i.xattrs.has(name))
        throw new S0Error('path_exists', `attribute ${name} exists`)
      if (mode === 'replace' && !i.xattrs.has(name))
        throw new S0Error('xattr_not_found', `no attribute ${name}`)
      const xattrs = new Map(i.xattrs).set(name, Buffer.from(value))
      await this.put(c, head, { ...i, xattrs, ctimeNs: nowNs() })
      this.emit('chmod', i.parentIno ?? ROOT_INO, null, ino)
    })
  }

  async removexattr(ino: number, name: string): Promise<void> {
    await this.mutate(async (c, head) => {
      const i = await this.inode(ino)
      if (!i.xattrs.has(name)) throw new S0Error('xattr_not_found', `no attribute ${name}`)
      const xattrs = new Map(i.xattrs)
      xattrs.delete(name)
      await this.put(c, head, { ...i, xattrs, ctimeNs: nowNs() })
      this.emit('chmod', i.parentIno ?? ROOT_INO, null, ino)
    })
  }

  // ---- file data ---------------------------------------------------------------------------

  open(ino: number): void {
    this.openCount.set(ino, (this.openCount.get(ino) ?? 0) + 1)
  }

  /**
   * Last close of an unlinked file frees it. Every close flushes: at once and awaited by
   * default; with `flush: 'soon'` the file joins the next writeback batch (FUSE with
   * durability at fsync), so a burst of small files shares one pack and one commit.
   */
  async release(ino: number, opts: { flush?: 'now' | 'soon' } = {}): Promise<void> {
    const n = (this.openCount.get(ino) ?? 0) - 1
    if (n > 0) this.openCount.set(ino, n)
    else this.openCount.delete(ino)
    if (n <= 0 && this.orphans.has(ino)) {
      this.orphans.delete(ino)
      this.dirty.delete(ino)
      await this.mutate(async (c, head) => this.free(c, head, await this.inode(ino)))
      return
    }
    if (opts.flush === 'soon') this.flushSoon(ino)
    else await this.flush(ino)
  }

  async write(ino: number, off: number, data: Uint8Array): Promise<number> {
    if (this.readOnly) throw new S0Error('read_only', 'the volume is mounted read-only')
    const i = await this.inode(ino)
    if (!isReg(i.mode)) throw new S0Error('path_not_file', `inode ${ino} is not a regular file`)
    let d = this.dirty.get(ino)
    const newEnd = Math.max(off + data.length, d?.end ?? 0)
    this.checkByteQuota(newEnd - Math.max(i.size, d?.end ?? 0))
    if (!d) this.dirty.set(ino, (d = new DirtyFile()))
    d.pending.write(off, data)
    d.mtimeNs = nowNs()
    if (d.pending.bytes >= this.fileDirtyMax) {
      // Flush in the background while the writer goes on; wait only when a second buffer's
      // worth piles up behind the one in flight (bounded memory, pipelined throughput).
      const flushed = this.flush(ino)
      if (d.bytes >= 2 * this.fileDirtyMax) await flushed
      else flushed.catch(() => undefined) // the runs went back to pending; fsync will report
    } else await this.boundVolumeDirty()
    return data.length
  }

  private async boundVolumeDirty(): Promise<void> {
    let total = 0
    let largest: [number, number] = [0, 0]
    for (const [ino, d] of this.dirty) {
      total += d.bytes
      if (d.pending.bytes > largest[1]) largest = [ino, d.pending.bytes]
    }
    if (total > this.volumeDirtyMax) await this.flush(largest[0])
  }

  /**
   * Commits the file's buffered writes: content goes to the chunk store first (rule 1), then the
   * new extent list, size and mtime in one transaction (rule 2). Resolves only after every write
   * made before the call is committed. Flushes are batched: files asking while a batch runs go
   * together in the next one (shared packs, one durability barrier, one metadata statement).
   */
  async flush(ino: number): Promise<void> {
    if (!this.dirty.has(ino)) return
    const batch = this.nextBatch()
    batch.inos.add(ino)
    batch.urgent = true
    this.kickWriteback()
    await batch.done
  }

  /** Queues the file for the next writeback batch, which starts within writebackDelayMs. */
  flushSoon(ino: number): void {
    if (!this.dirty.has(ino)) return
    this.nextBatch().inos.add(ino)
    this.kickWriteback()
  }

  private nextBatch(): WritebackBatch {
    if (!this.pendingBatch) {
      let resolve!: () => void
      let reject!: (err: unknown) => void
      const done = new Promise<void>((res, rej) => {
        resolve = res
        reject = rej
      })
      done.catch(() => undefined) // a batch nobody awaits (flushSoon) logs nothing twice
      this.pendingBatch = { inos: new Set(), urgent: false, done, resolve, reject }
    }
    return this.pendingBatch
  }

  /** Starts the pending batch when none runs: now if someone waits on it, else after a delay. */
  private kickWriteback(): void {
    const batch = this.pendingBatch
    if (!batch || this.batchRunning) return
    if (!batch.urgent) {
      this.writebackTimer ??= setTimeout(() => {
        this.writebackTimer = null
        if (this.pendingBatch) this.pendingBatch.urgent = true
        this.kickWriteback()
      }, this.writebackDelayMs)
      this.writebackTimer.unref?.()
      return
    }
    if (this.writebackTimer) clearTimeout(this.writebackTimer)
    this.writebackTimer = null
    this.pendingBatch = null
    this.batchRunning = true
    this.runBatch(batch)
      .then(batch.resolve, (err: unknown) => {
        this.writebackErrors++
        batch.reject(err)
      })
      .finally(() => {
        this.batchRunning = false
        this.kickWriteback()
      })
  }

  private async runBatch(batch: WritebackBatch): Promise<void> {
    const files: Array<{ ino: number; d: DirtyFile; inFlight: WriteBuffer; added: Added[] }> = []
    for (const ino of batch.inos) {
      const d = this.dirty.get(ino)
      if (!d || d.pending.bytes === 0) continue
      const inFlight = new WriteBuffer()
      for (const r of d.pending.take()) inFlight.runs.push(r)
      inFlight.bytes = inFlight.runs.reduce((s, r) => s + r.data.length, 0)
      d.inFlight = inFlight
      files.push({ ino, d, inFlight, added: [] })
    }
    if (files.length === 0) return
    try {
      // Each contiguous range is one chunking stream, so a file written in small pieces is cut
      // into the same chunks as one written at once. Chunks of every file share packs; one
      // barrier then makes them all durable before any metadata refers to them.
      for (const f of files) {
        for (const group of f.inFlight.contiguous()) {
          const w = this.chunks.writer(this.teamId)
          for (const r of group) await w.write(r.data)
          const refs = await w.finish({ durable: false })
          const start = (group[0] as { off: number }).off
          let at = start
          const extents: Extent[] = refs.map((ref) => {
            const e = { off: at, len: ref.size, hash: ref.hash, coff: 0 }
            at += ref.size
            return e
          })
          f.added.push({ off: start, len: at - start, extents })
        }
      }
      await this.chunks.flush()
      await this.mutate(async (c, head) => {
        for (const f of files) {
          if (this.dirty.get(f.ino) !== f.d) continue // freed (unlinked and closed) meanwhile
          const i = { ...(await this.inode(f.ino)) }
          for (const a of f.added) i.extents = spliceExtents(i.extents, a.off, a.len, a.extents)
          checkExtents(i.extents)
          const size = Math.max(i.size, f.inFlight.end)
          this.usedBytes += size - i.size
          i.size = size
          // The data changed when it was written, not now; a later utimens wins over both.
          if (f.d.mtimeNs !== null) i.mtimeNs = f.d.mtimeNs
          i.ctimeNs = nowNs()
          await this.put(c, head, i)
          this.emit('write', i.parentIno ?? ROOT_INO, null, f.ino)
        }
      })
      for (const f of files) {
        f.d.inFlight = null
        if (f.d.pending.bytes === 0 && this.dirty.get(f.ino) === f.d) this.dirty.delete(f.ino)
      }
    } catch (err) {
      // Nothing was acknowledged: the runs go back under any newer writes, to be retried.
      for (const f of files) {
        const newer = f.d.pending.take()
        for (const r of f.inFlight.runs) f.d.pending.write(r.off, r.data)
        for (const r of newer) f.d.pending.write(r.off, r.data)
        f.d.inFlight = null
      }
      throw err
    }
  }

  /** Data and metadata of the file durable (and, as a side effect, every earlier change). */
  async fsync(ino: number): Promise<void> {
    // The flush commits relaxed; the one synchronous commit of sync() then makes it (and every
    // earlier change) durable: one WAL flush instead of two.
    await this.flush(ino)
    await this.sync()
  }

  /**
   * Makes every committed change of this volume durable: one synchronous commit flushes the
   * WAL past all relaxed commits before it. Free when nothing relaxed happened since. Group
   * commit: callers arriving while one runs share the next one.
   */
  async sync(): Promise<void> {
    await this.drainCommits()
    if (this.syncing) {
      // The running sync covers changes made before it started (the flag was clear then); a
      // change since set the flag again and needs the next one.
      if (!this.relaxedSinceSync) return this.syncing
      this.syncNext ??= this.syncing
        .catch(() => undefined)
        .then(() => {
          this.syncNext = null
          return this.sync()
        })
      return this.syncNext
    }
    if (!this.relaxedSinceSync) return
    this.relaxedSinceSync = false
    const run = this.metadata.syncVolume(this.volumeId).then(
      () => undefined,
      (err: unknown) => {
        this.relaxedSinceSync = true
        throw err
      },
    )
    this.syncing = run
    void run
      .catch(() => undefined)
      .finally(() => {
        if (this.syncing === run) this.syncing = null
      })
    return run
  }

  /** Flushes every file and makes everything durable (before snapshot, fork, unmount). */
  async flushAll(): Promise<void> {
    if (this.dirty.size > 0) {
      const batch = this.nextBatch()
      for (const ino of this.dirty.keys()) batch.inos.add(ino)
      batch.urgent = true
      this.kickWriteback()
      await batch.done
      // Files dirtied while that batch ran (or by a batch that was already running).
      for (let rounds = 0; this.dirty.size > 0 && rounds < 3; rounds++) {
        for (const ino of [...this.dirty.keys()]) await this.flush(ino)
      }
    }
    await this.sync()
  }

  /** Writeback batches that failed so far (their writes were kept and will be retried). */
  writebackErrors = 0
}
