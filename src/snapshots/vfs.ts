// POSIX file-system operations on one volume, independent of FUSE: the FUSE mount, the files API
// and sandbox root filesystems all call these; failures are S0Errors whose catalogue entry carries
// the errno. Namespace changes live here, serialised per volume, applied to the caches at once and
// queued for the metadata store (write-behind, commit-queue.ts); file data goes through write-back.
import type { ChunkStore } from '../blockstore/chunk-store.js'
import { assert } from '../core/assert.js'
import { isS0Error, S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { TeamId, Ino, LayerId } from '../core/ids.js'
import {
  checkExtents,
  readInline,
  spliceExtents,
  spliceInline,
  truncateExtents,
  type Extent,
} from './extents.js'
import { CommitQueue } from './commit-queue.js'
import { InoBatches } from './ino-batches.js'
import { InodeCache, nameKey } from './inode-cache.js'
import { InlinePacker, type PackedFile, type PackerOptions } from './packer.js'
import type { MetadataBatch, MetadataStore, VolumeRow } from './metadata-store.js'
import { Quota, type StatFs } from './quota.js'
import { ReadAhead } from './read-ahead.js'
import { Mutex } from './write-buffer.js'
import { WriteBack, type FlushedFile, type Placement } from './write-back.js'
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
  S_IFSOCK,
  S_ISGID,
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
  /** The writer lease's epoch (VolumeEngine): every commit is fenced with it. */
  writerEpoch?: number
  /** Dirty bytes per file before an early flush to the chunk store (limits.fileDirtyBytesMax). */
  fileDirtyBytesMax?: number
  /** Dirty bytes in the whole volume before the largest file is flushed early (limits.volumeDirtyBytesMax). */
  volumeDirtyBytesMax?: number
  /** How long a file closed with `release(ino, {flush: 'soon'})` may stay buffered (limits.writebackDelayMs). */
  writebackDelayMs?: number
  /** Files whose data ends at or below this are stored inline (limits.inlineFileBytesMax; 0: never). */
  inlineFileBytesMax?: number
  /** The background packer's bounds (limits.packer*). */
  packer?: Pick<PackerOptions, 'filesPerPassMax' | 'bytesPerPassMax' | 'delayMs'>
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
  parentIno: Ino
  /** The entry's name; null for content and attribute changes (see `pathOf`). */
  name: Buffer | null
  /** 0 for an event that names an entry rather than an inode. */
  ino: Ino | 0
  /**
   * Who made the change, as passed to the mutating call (a FUSE mount passes itself: the kernel
   * behind it already knows, every other mount's kernel cache must be told). Undefined: anyone.
   */
  origin?: Origin
}

/** An opaque tag naming the maker of a change (see ChangeEvent.origin). */
export type Origin = object

/**
 * A change watcher. It may return a promise: the change is then acknowledged to its maker only
 * after it settles (a FUSE mount: once the kernel dropped what it cached of it).
 */
export type ChangeListener = (e: ChangeEvent) => void | Promise<void>

export type { StatFs }

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
  private headId: LayerId
  private chain: LayerId[]
  private readonly metadata: MetadataStore
  private readonly mutex = new Mutex()
  private readonly cache = new InodeCache()
  private readonly commits: CommitQueue
  private readonly writeBack: WriteBack
  private readonly reads: ReadAhead
  private readonly quota: Quota
  private readonly inos: InoBatches
  private readonly inlineFileBytesMax: number
  private readonly packer: InlinePacker
  private readonly openCount = new Map<Ino, number>()
  private readonly orphans = new Set<Ino>()
  private readonly listeners = new Set<ChangeListener>()
  /** What listeners asked the running change to wait for (a FUSE mount's kernel invalidation). */
  private notices: Promise<void>[] = []
  /** The origin of the change `mutate` is running (one at a time: it holds the mutex). */
  private origin: Origin | undefined = undefined

  private constructor(opts: VfsOptions, chain: LayerId[]) {
    this.metadata = opts.metadata
    this.volumeId = opts.volume.id
    this.teamId = opts.volume.teamId
    this.readOnly = opts.readOnly ?? false
    this.headId = opts.volume.headLayerId
    this.chain = chain
    this.commits = new CommitQueue(opts.metadata, opts.volume.id, opts.writerEpoch)
    this.writeBack = new WriteBack({
      chunks: opts.chunks,
      teamId: opts.volume.teamId,
      fileDirtyBytesMax: opts.fileDirtyBytesMax ?? limits.fileDirtyBytesMax,
      volumeDirtyBytesMax: opts.volumeDirtyBytesMax ?? limits.volumeDirtyBytesMax,
      writebackDelayMs: opts.writebackDelayMs ?? limits.writebackDelayMs,
      commit: (files) => this.commitFlushed(files),
      placement: (ino, runsEnd) => this.placement(ino, runsEnd),
    })
    this.inlineFileBytesMax = opts.inlineFileBytesMax ?? limits.inlineFileBytesMax
    this.packer = new InlinePacker({
      chunks: opts.chunks,
      teamId: opts.volume.teamId,
      metadata: opts.metadata,
      head: () => this.headId,
      drain: () => this.drainCommits(),
      busy: (ino) => this.writeBack.files.has(ino),
      swap: (head, files) => this.swapPacked(head, files),
      ...opts.packer,
    })
    this.reads = new ReadAhead(opts.chunks, opts.volume.teamId)
    this.quota = new Quota(opts.volume.quotaBytes, opts.volume.quotaInodes, opts.volume)
    this.inos = new InoBatches(opts.metadata, opts.volume.id)
  }

  static async open(opts: VfsOptions): Promise<Vfs> {
    return new Vfs(opts, await opts.metadata.catalog.chainOf(opts.volume.headLayerId))
  }

  /** After a snapshot or fork sealed our head: same content, new head. */
  async headMoved(volume: VolumeRow, contentChanged: boolean): Promise<void> {
    this.headId = volume.headLayerId
    this.chain = await this.metadata.catalog.chainOf(volume.headLayerId)
    this.quota.reset(volume)
    if (contentChanged) {
      this.cache.clear()
      this.writeBack.files.clear()
      this.orphans.clear()
      this.reads.clear()
      // Listeners' promises are awaited by `exclusive`, once the mutex is free: a mount's kernel
      // may need an answer that waits for the mutex before it can take in the invalidation.
      this.emit('invalidate', ROOT_INO, null)
    }
  }

  /** Re-reads the layer chain (after a flatten re-parented a layer in it). */
  async refreshChain(): Promise<void> {
    this.chain = await this.metadata.catalog.chainOf(this.headId)
  }

  get layerChain(): readonly LayerId[] {
    return this.chain
  }

  // ---- reads -------------------------------------------------------------------------------

  private async inode(ino: Ino): Promise<Inode> {
    const cached = this.cache.inode(ino)
    if (cached) return cached
    if (cached === false) throw new S0Error('file_not_found', `inode ${ino} does not exist`)
    await this.drainCommits()
    const i = await this.metadata.readInode(this.chain, ino)
    this.cache.setInode(ino, i ?? false)
    if (!i) throw new S0Error('file_not_found', `inode ${ino} does not exist`)
    return i
  }

  private async dirInode(ino: Ino): Promise<Inode> {
    const d = await this.inode(ino)
    if (!isDir(d.mode)) throw new S0Error('path_not_directory', `inode ${ino} is not a directory`)
    return d
  }

  private async entry(parent: Ino, name: Buffer): Promise<Ino | 0> {
    const key = nameKey(parent, name)
    const cached = this.cache.name(key, parent)
    if (cached !== undefined) return cached
    await this.drainCommits()
    const ino = await this.metadata.lookupEntry(this.chain, parent, name)
    this.cache.setName(key, ino)
    return ino
  }

  private withDirtySize(i: Inode): Attr {
    const a = attrOf(i)
    const d = this.writeBack.files.get(i.ino)
    if (d) {
      if (d.end > a.size) a.size = d.end
      if (d.mtimeNs !== null) a.mtimeNs = a.ctimeNs = d.mtimeNs
    }
    return a
  }

  async getattr(ino: Ino): Promise<Attr> {
    return this.withDirtySize(await this.inode(ino))
  }

  async lookup(parent: Ino, name: Buffer): Promise<Attr> {
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

  /**
   * A regular file's committed content: its extents (slices of chunks) or inline bytes, after
   * its buffered writes are flushed (workspace sync sends chunks, not bytes).
   */
  async content(ino: Ino): Promise<{ attr: Attr; extents: readonly Extent[]; inline: Buffer | null }> {
    if (this.writeBack.files.has(ino)) await this.flush(ino)
    const i = await this.inode(ino)
    if (!isReg(i.mode)) throw new S0Error('path_not_file', `inode ${ino} is not a regular file`)
    return { attr: this.withDirtySize(i), extents: i.extents, inline: i.inline }
  }

  async readlink(ino: Ino): Promise<Buffer> {
    const i = await this.inode(ino)
    if (!isLnk(i.mode) || !i.target) throw new S0Error('bad_request', `inode ${ino} is not a symlink`)
    return i.target
  }

  /**
   * Every entry of a directory, remembered: afterwards the directory is complete in the name
   * cache (until one of its names is evicted), so lookups and creates in it cost no query. For
   * bulk writers filling directories that exist already (the root-filesystem capture).
   */
  async listAll(ino: Ino): Promise<DirEntry[]> {
    return this.mutex.run(async () => {
      await this.dirInode(ino)
      await this.drainCommits()
      const out: DirEntry[] = []
      const page = limits.readdirPageEntries
      for (let after: Buffer | null = null; ;) {
        const entries = await this.metadata.listEntries(this.chain, ino, after, page)
        out.push(...entries)
        if (entries.length < page) break
        after = (entries[entries.length - 1] as DirEntry).name
      }
      this.cache.fillDir(ino, out)
      return out
    })
  }

  /** Entries after `after` in name order (a stable cursor while the directory changes). */
  async readdir(
    ino: Ino,
    after: Buffer | null = null,
    limit: number = limits.readdirPageEntries,
  ): Promise<DirEntry[]> {
    await this.dirInode(ino)
    await this.drainCommits()
    return this.metadata.listEntries(this.chain, ino, after, limit)
  }

  async read(ino: Ino, off: number, len: number): Promise<Buffer> {
    const i = await this.inode(ino)
    if (isDir(i.mode)) throw new S0Error('path_not_file', `inode ${ino} is a directory`)
    const d = this.writeBack.files.get(ino)
    if (i.inline) {
      // Inline: the bytes are in the (cached) inode; no chunk store, no read-ahead.
      const end = Math.min(Math.max(i.size, d?.end ?? 0), off + len)
      return off >= end ? Buffer.alloc(0) : readInline(i.inline, d, off, end)
    }
    return this.reads.read(i, d, off, len)
  }

  async statfs(): Promise<StatFs> {
    return this.quota.statfs()
  }

  get usage(): { bytes: number; inodes: number } {
    return { bytes: this.quota.usedBytes, inodes: this.quota.usedInodes }
  }

  /** Subscribes to change events; returns the unsubscribe function. */
  watch(listener: ChangeListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private emit(
    event: ChangeEvent['event'],
    parentIno: Ino,
    name: Buffer | null,
    ino: Ino | 0 = 0,
    origin: Origin | undefined = this.origin,
  ): void {
    if (this.listeners.size === 0) return
    for (const l of this.listeners) {
      const p = l({ event, parentIno, name, ino, origin })
      if (p) this.notices.push(p)
    }
  }

  /**
   * Waits for what listeners of the changes made so far asked for (see ChangeListener). Never
   * with the mutex held: a FUSE mount's kernel may hold a directory lock the invalidation needs
   * while its request waits for the mutex.
   */
  private async noticed(): Promise<void> {
    while (this.notices.length > 0) {
      const waiting = this.notices
      this.notices = []
      await Promise.all(waiting)
    }
  }

  /** A path of an inode (through the directory it was created or last moved in). */
  async pathOf(ino: Ino): Promise<string> {
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
  async dirPath(ino: Ino): Promise<string> {
    if (ino === ROOT_INO) return '/'
    const cached = this.cache.dirPath(ino)
    if (cached) return cached
    const d = await this.dirInode(ino)
    const parent = d.parentIno ?? ROOT_INO
    await this.drainCommits()
    const name = await this.metadata.nameOf(this.chain, parent, ino)
    if (!name) throw new S0Error('file_not_found', `directory ${ino} has no name`)
    const parentPath = await this.dirPath(parent)
    const path = (parentPath === '/' ? '/' : parentPath + '/') + name.toString('utf8')
    this.cache.setDirPath(ino, path)
    return path
  }

  async getxattr(ino: Ino, name: string): Promise<Buffer> {
    const v = (await this.inode(ino)).xattrs.get(name)
    if (!v) throw new S0Error('xattr_not_found', `no attribute ${name}`)
    return v
  }

  async listxattr(ino: Ino): Promise<string[]> {
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
  private async mutate<T>(fn: (c: MetadataBatch, head: LayerId) => Promise<T>, origin?: Origin): Promise<T> {
    if (this.readOnly) throw new S0Error('read_only', 'the volume is mounted read-only')
    const out = await this.mutex.run(async () => {
      this.origin = origin
      const q = this.quota
      const savedBytes = q.usedBytes
      const savedInodes = q.usedInodes
      try {
        const batch = this.metadata.newBatch()
        const head = this.headId
        const result = await fn(batch, head)
        if (!batch.empty || savedBytes !== q.usedBytes || savedInodes !== q.usedInodes) {
          this.commits.enqueue(batch, head, {
            id: this.volumeId,
            usedBytes: q.usedBytes,
            usedInodes: q.usedInodes,
          })
        }
        return result
      } catch (err) {
        q.usedBytes = savedBytes
        q.usedInodes = savedInodes
        this.cache.dropRows()
        throw err
      } finally {
        this.origin = undefined
      }
    })
    // Bounded: a writer far ahead of Postgres waits for it.
    if (this.commits.full) await this.drainCommits()
    // Most changes ask for nothing: no await on the hot path then.
    if (this.notices.length > 0) await this.noticed()
    return out
  }

  /**
   * Runs `fn` with no metadata change running or queued, everything committed and durable:
   * snapshot, fork and restore seal or replace the head layer inside it, so no change of this
   * Vfs can land in a layer after it was sealed.
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const out = await this.mutex.run(async () => {
      await this.sync()
      return fn()
    })
    if (this.notices.length > 0) await this.noticed()
    return out
  }

  /** Resolves once every queued change is in Postgres (relaxed); throws if committing fails. */
  async drainCommits(): Promise<void> {
    await this.commits.drain()
  }

  private async put(c: MetadataBatch, _head: number, i: Inode): Promise<void> {
    c.putInode(i)
    this.cache.setInode(i.ino, i)
  }

  private async link(
    c: MetadataBatch,
    _head: number,
    parent: Ino,
    name: Buffer,
    ino: Ino,
    mode: number,
  ): Promise<void> {
    c.putEntry(parent, name, ino, kindOf(mode))
    this.cache.setName(nameKey(parent, name), ino)
  }

  private async unlinkName(c: MetadataBatch, _head: number, parent: Ino, name: Buffer): Promise<void> {
    c.putEntry(parent, name, null, 0)
    this.cache.setName(nameKey(parent, name), 0)
  }

  private newInode(ino: Ino, mode: number, uid: number, gid: number): Inode {
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
      inline: null,
    }
  }

  private async touchDir(c: MetadataBatch, head: LayerId, dir: Inode, nlinkDelta = 0): Promise<void> {
    const now = nowNs()
    await this.put(c, head, { ...dir, nlink: dir.nlink + nlinkDelta, mtimeNs: now, ctimeNs: now })
  }

  /** Creates a node (regular file, directory, symlink, fifo) under `parent`. */
  private async makeNode(
    parent: Ino,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
    extra: (i: Inode) => void = () => undefined,
    origin?: Origin,
  ): Promise<Attr> {
    checkName(name)
    return this.mutate(async (c, head) => {
      const dir = await this.dirInode(parent)
      if (await this.entry(parent, name)) throw new S0Error('path_exists', `${name.toString()} exists`)
      this.quota.checkInode()
      // A setgid directory hands its group to what is made in it, and its setgid bit to
      // subdirectories (BSD group semantics, as ext4 and xfs do).
      const inherit = (dir.mode & S_ISGID) !== 0
      if (inherit && isDir(mode)) mode |= S_ISGID
      const i = this.newInode(await this.inos.take(), mode, owner.uid, inherit ? dir.gid : owner.gid)
      extra(i)
      // Every inode remembers the directory it was made in (or last moved to): rename uses it for
      // directories, change events to name files.
      i.parentIno = parent
      if (isDir(mode)) {
        i.nlink = 2
        this.cache.markComplete(i.ino) // new and empty: every name it will hold goes through us
      }
      await this.put(c, head, i)
      await this.link(c, head, parent, name, i.ino, mode)
      await this.touchDir(c, head, dir, isDir(mode) ? 1 : 0)
      this.quota.usedInodes++
      this.quota.usedBytes += i.size
      this.emit('create', parent, name)
      return attrOf(i)
    }, origin)
  }

  /** O_CREAT: with `exclusive`, an existing name is EEXIST; otherwise it is returned as is. */
  async create(
    parent: Ino,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
    exclusive = true,
    origin?: Origin,
  ): Promise<Attr> {
    if (!exclusive) {
      checkName(name)
      const existing = await this.entry(parent, name)
      if (existing) return this.getattr(existing)
    }
    return this.makeNode(parent, name, S_IFREG | (mode & 0o7777), owner, undefined, origin)
  }

  async mkdir(
    parent: Ino,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
    origin?: Origin,
  ): Promise<Attr> {
    return this.makeNode(parent, name, S_IFDIR | (mode & 0o7777), owner, undefined, origin)
  }

  /**
   * Regular files, FIFOs, sockets (bind() of a Unix socket on the mount) and character and block
   * devices. A device node is metadata like any inode: mounts are `nodev`, so it grants nothing
   * (overlayfs whiteouts, the rootfs capture's, are character devices 0:0).
   */
  async mknod(
    parent: Ino,
    name: Buffer,
    mode: number,
    owner: { uid: number; gid: number },
    opts: { rdev?: number; origin?: Origin } = {},
  ): Promise<Attr> {
    const type = mode & S_IFMT
    const device = type === S_IFCHR || type === S_IFBLK
    if (!(type === S_IFIFO || type === S_IFREG || type === 0 || type === S_IFSOCK || device)) {
      throw new S0Error('bad_request', `mknod of file type 0o${type.toString(8)} is not possible`)
    }
    return this.makeNode(
      parent,
      name,
      (type || S_IFREG) | (mode & 0o7777),
      owner,
      (i) => {
        if (device) i.rdev = opts.rdev ?? 0
      },
      opts.origin,
    )
  }

  async symlink(
    parent: Ino,
    name: Buffer,
    target: Buffer,
    owner: { uid: number; gid: number },
    origin?: Origin,
  ): Promise<Attr> {
    if (target.length === 0 || target.length > SYMLINK_BYTES_MAX || target.includes(0)) {
      throw new S0Error('invalid_path', `symlink target must be 1..${SYMLINK_BYTES_MAX} bytes without NUL`)
    }
    return this.makeNode(
      parent,
      name,
      S_IFLNK | 0o777,
      owner,
      (i) => {
        i.target = Buffer.from(target)
        i.size = target.length
      },
      origin,
    )
  }

  async hardlink(ino: Ino, newParent: Ino, newName: Buffer, origin?: Origin): Promise<Attr> {
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
      // With its buffered writes: this answer becomes the kernel's attributes for the new name.
      return this.withDirtySize(updated)
    }, origin)
  }

  /** Drops one link of `i`; frees it when no link and no open handle is left. */
  private async dropLink(c: MetadataBatch, head: LayerId, i: Inode): Promise<void> {
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

  private async free(c: MetadataBatch, head: LayerId, i: Inode): Promise<void> {
    c.deleteInode(i.ino)
    this.cache.setInode(i.ino, false)
    this.writeBack.files.delete(i.ino)
    this.quota.usedInodes--
    this.quota.usedBytes -= i.size
  }

  async unlink(parent: Ino, name: Buffer, origin?: Origin): Promise<void> {
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
    }, origin)
  }

  async rmdir(parent: Ino, name: Buffer, origin?: Origin): Promise<void> {
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
      this.cache.forgetDirPaths()
      this.emit('remove', parent, name)
    }, origin)
  }

  async rename(
    oldParent: Ino,
    oldName: Buffer,
    newParent: Ino,
    newName: Buffer,
    flags = 0,
    origin?: Origin,
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
        this.cache.forgetDirPaths()
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
      if (isDir(srcInode.mode)) this.cache.forgetDirPaths()
      this.emit('rename', oldParent, oldName)
      this.emit('create', newParent, newName)
    }, origin)
  }

  /** After `i` moved from one directory to another: link counts, parent pointer, times. */
  private async reparent(c: MetadataBatch, head: LayerId, i: Inode, from: Ino, to: Ino): Promise<void> {
    const now = nowNs()
    const moved = isDir(i.mode) && from !== to
    await this.put(c, head, {
      ...(await this.inode(i.ino)),
      // Files too: change events name a file by this directory (a moved file's writes were
      // reported under its old directory, where it has no name, and so were lost to watchers).
      parentIno: to,
      ctimeNs: now,
    })
    await this.touchDir(c, head, await this.inode(from), moved ? -1 : 0)
    if (to !== from) await this.touchDir(c, head, await this.inode(to), moved ? 1 : 0)
  }

  private async isAncestor(ancestor: number, ino: Ino): Promise<boolean> {
    for (let cur = ino, steps = 0; ; steps++) {
      if (cur === ancestor) return true
      if (cur === ROOT_INO) return false
      assert(steps < limits.dirParentHopsMax, 'directory parent chain does not reach the root')
      const parent = (await this.inode(cur)).parentIno
      if (parent === null) return false
      cur = parent
    }
  }

  async setattr(ino: Ino, set: SetAttr, origin?: Origin): Promise<Attr> {
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
        const d = this.writeBack.files.get(ino)
        if (d) d.mtimeNs = null // buffered writes must not move it forward when they land
      }
      if (set.size !== undefined && set.size !== i.size) {
        if (!isReg(i.mode)) throw new S0Error('path_not_file', `inode ${ino} is not a regular file`)
        this.quota.checkBytes(set.size - i.size)
        this.quota.usedBytes += set.size - i.size
        i.extents = truncateExtents(i.extents, set.size)
        // Inline bytes past the new size go; a larger size is a sparse tail (reads as zeros).
        if (i.inline && i.inline.length > set.size)
          i.inline = set.size > 0 ? Buffer.from(i.inline.subarray(0, set.size)) : null
        this.writeBack.files.get(ino)?.truncate(set.size)
        i.size = set.size
        if (set.mtimeNs === undefined) i.mtimeNs = now
      }
      i.ctimeNs = now
      await this.put(c, head, i)
      this.emit(set.size !== undefined ? 'write' : 'chmod', i.parentIno ?? ROOT_INO, null, ino)
      // With buffered writes not yet flushed (a chmod right after a write sees the new size).
      return this.withDirtySize(i)
    }, origin)
  }

  async setxattr(
    ino: Ino,
    name: string,
    value: Buffer,
    mode: 'create' | 'replace' | 'any' = 'any',
    origin?: Origin,
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
    }, origin)
  }

  async removexattr(ino: Ino, name: string, origin?: Origin): Promise<void> {
    await this.mutate(async (c, head) => {
      const i = await this.inode(ino)
      if (!i.xattrs.has(name)) throw new S0Error('xattr_not_found', `no attribute ${name}`)
      const xattrs = new Map(i.xattrs)
      xattrs.delete(name)
      await this.put(c, head, { ...i, xattrs, ctimeNs: nowNs() })
      this.emit('chmod', i.parentIno ?? ROOT_INO, null, ino)
    }, origin)
  }

  // ---- file data ---------------------------------------------------------------------------

  open(ino: Ino): void {
    this.openCount.set(ino, (this.openCount.get(ino) ?? 0) + 1)
  }

  /**
   * Last close of an unlinked file frees it. Every close flushes: at once and awaited by
   * default; with `flush: 'soon'` the file joins the next writeback batch (FUSE with
   * durability at fsync), so a burst of small files shares one pack and one commit.
   */
  async release(ino: Ino, opts: { flush?: 'now' | 'soon' } = {}): Promise<void> {
    const n = (this.openCount.get(ino) ?? 0) - 1
    if (n > 0) this.openCount.set(ino, n)
    else this.openCount.delete(ino)
    if (n <= 0 && this.orphans.has(ino)) {
      this.orphans.delete(ino)
      this.writeBack.files.delete(ino)
      await this.mutate(async (c, head) => this.free(c, head, await this.inode(ino)))
      return
    }
    if (opts.flush === 'soon') this.writeBack.flushSoon(ino)
    else await this.flush(ino)
  }

  async write(ino: Ino, off: number, data: Uint8Array, origin?: Origin): Promise<number> {
    if (this.readOnly) throw new S0Error('read_only', 'the volume is mounted read-only')
    const i = await this.inode(ino)
    if (!isReg(i.mode)) throw new S0Error('path_not_file', `inode ${ino} is not a regular file`)
    const d = this.writeBack.files.get(ino)
    this.quota.checkBytes(Math.max(off + data.length, d?.end ?? 0) - Math.max(i.size, d?.end ?? 0))
    const wait = this.writeBack.write(ino, d, off, data, origin)
    if (wait) await wait
    return data.length
  }

  /**
   * Commits the file's buffered writes: content goes to the chunk store first (rule 1), then the
   * new extent list, size and mtime in one metadata change (rule 2). Resolves only after every
   * write made before the call is committed. Flushes are batched: files asking while a batch runs
   * go together in the next one (shared packs, one durability barrier, one metadata statement).
   */
  flush(ino: Ino): Promise<void> {
    return this.writeBack.flush(ino)
  }

  /** Queues the file for the next writeback batch, which starts within writebackDelayMs. */
  flushSoon(ino: Ino): void {
    this.writeBack.flushSoon(ino)
  }

  /**
   * Where a flush stores a file's bytes: inline while it has no extents and its data (inline
   * bytes and the runs) ends at or below inlineFileBytesMax; otherwise in the chunk store, its
   * inline bytes (if any) moving there too. Only flushes change this, one batch at a time, and
   * the packer leaves files with buffered writes alone, so the answer still holds at the commit.
   */
  private async placement(ino: Ino, runsEnd: number): Promise<Placement> {
    let i: Inode
    try {
      i = await this.inode(ino)
    } catch (err) {
      // Freed meanwhile: nothing to store, and the commit skips it.
      if (isS0Error(err, 'file_not_found')) return { inline: true }
      throw err
    }
    const dataEnd = Math.max(i.inline?.length ?? 0, runsEnd)
    if (i.extents.length === 0 && dataEnd <= this.inlineFileBytesMax) return { inline: true }
    return { inline: false, spill: i.inline }
  }

  /** The metadata change of a writeback batch: every file's extents, size and times at once. */
  private async commitFlushed(files: readonly FlushedFile[]): Promise<void> {
    let inline = false
    await this.mutate(async (c, head) => {
      for (const f of files) {
        if (this.writeBack.files.get(f.ino) !== f.d) continue // freed (unlinked and closed) meanwhile
        const i = { ...(await this.inode(f.ino)) }
        if (f.inline) {
          assert(i.extents.length === 0, 'an inline flush of a file with extents')
          const dataEnd = Math.max(i.inline?.length ?? 0, f.inFlight.end)
          i.inline = dataEnd > 0 ? spliceInline(i.inline, f.inFlight.runs, dataEnd) : null
          inline ||= i.inline !== null
        } else {
          assert(!i.inline || f.spilled, 'a chunk flush of an inline file that did not spill')
          i.inline = null
          for (const a of f.added) i.extents = spliceExtents(i.extents, a.off, a.len, a.extents)
        }
        const size = Math.max(i.size, f.inFlight.end)
        // A truncate while the batch ran cut the runs and the old extents; what it stored past
        // the new end is not part of the file.
        i.extents = truncateExtents(i.extents, size)
        checkExtents(i.extents)
        this.quota.usedBytes += size - i.size
        i.size = size
        // The data changed when it was written, not now; a later utimens wins over both.
        if (f.d.mtimeNs !== null) i.mtimeNs = f.d.mtimeNs
        i.ctimeNs = nowNs()
        await this.put(c, head, i)
        this.emit('write', i.parentIno ?? ROOT_INO, null, f.ino, f.d.origin ?? undefined)
      }
    })
    if (inline && !this.readOnly) this.packer.notify()
  }

  /**
   * The packer's compare-and-swap, under the mutex: a file's inline bytes become the extents
   * that hold the same bytes, only if the head did not move, no write to the file is buffered
   * and its inode (the version now, cached or read) holds exactly the packed bytes. Comparing
   * the bytes, not an object identity, makes an A-B-A harmless: equal bytes are equal content.
   * Nothing else of the inode changes (no time, no event): readers see the same file.
   */
  private async swapPacked(head: LayerId, files: readonly PackedFile[]): Promise<number> {
    let swapped = 0
    await this.mutate(async (c, h) => {
      if (h !== head) return
      for (const f of files) {
        if (this.writeBack.files.has(f.ino) || this.orphans.has(f.ino)) continue
        let i: Inode
        try {
          i = await this.inode(f.ino)
        } catch (err) {
          if (isS0Error(err, 'file_not_found')) continue
          throw err
        }
        if (!i.inline || i.extents.length > 0 || !i.inline.equals(f.bytes)) continue
        checkExtents(f.extents)
        await this.put(c, h, { ...i, inline: null, extents: f.extents })
        swapped++
      }
    })
    return swapped
  }

  /** Runs the background packer now (up to limits.packerPassesPerRunMax passes); files swapped. */
  packInline(): Promise<number> {
    return this.packer.runNow()
  }

  /** The background packer's counters (tests, metrics). */
  get packerStats(): Readonly<InlinePacker['stats']> {
    return this.packer.stats
  }

  /**
   * Stops background work (the packer; a running pass ends first), then flushes every file and
   * makes everything durable. The Vfs must not be used afterwards (engine close, closeVfs).
   */
  async close(): Promise<void> {
    await this.stopBackground()
    await this.flushAll()
  }

  /** Stops the packer (a running pass ends first): nothing of this Vfs runs in the background. */
  stopBackground(): Promise<void> {
    return this.packer.stop()
  }

  /** Data and metadata of the file durable (and, as a side effect, every earlier change). */
  async fsync(ino: Ino): Promise<void> {
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
  sync(): Promise<void> {
    return this.commits.sync()
  }

  /** Flushes every file and makes everything durable (before snapshot, fork, unmount). */
  async flushAll(): Promise<void> {
    await this.writeBack.flushAll()
    await this.sync()
  }

  /** Writeback batches that failed so far (their writes were kept and will be retried). */
  get writebackErrors(): number {
    return this.writeBack.errors
  }
}
