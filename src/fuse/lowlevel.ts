// The `lowlevel` transport: the kernel's inode-based requests (libfuse 3 low-level API, through
// native/fuse3.c) mapped onto one volume's Vfs. Requests arrive on the event loop, one
// synchronous dispatch call each; every handler is async and answers by request id exactly once.
//
// Kernel caching is exact rather than off: names, attributes and misses are cached for the
// mount's TTLs and file pages across opens, and every change this mount did not make (the files
// API, another mount of the volume, sync, a restore) is sent to the kernel as an invalidation
// (Vfs change events carry their origin; ours are skipped, the kernel made them).
import { spawn, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import { constants as fsConstants } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { AssertionError, crashOnBug } from '../core/assert.js'
import { S0Error } from '../core/errors.js'
import type { Ino } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { addonPath } from '../core/native.js'
import type { Logger } from '../core/log.js'
import type { Attr, DirEntry } from '../snapshots/types.js'
import { ROOT_INO, S_IFDIR } from '../snapshots/types.js'
import type { ChangeEvent, Vfs } from '../snapshots/vfs.js'
import { toErrno } from './errno.js'
import {
  trackOp,
  type FuseSession,
  type FuseTransport,
  type OpStats,
  type TransportOptions,
} from './transport.js'

// Request kinds: the enum at the top of native/fuse3.c.
const OP = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  MKNOD: 6,
  MKDIR: 7,
  UNLINK: 8,
  RMDIR: 9,
  SYMLINK: 10,
  RENAME: 11,
  LINK: 12,
  OPEN: 13,
  READ: 14,
  WRITE: 15,
  FLUSH: 16,
  RELEASE: 17,
  FSYNC: 18,
  OPENDIR: 19,
  READDIR: 20,
  RELEASEDIR: 21,
  FSYNCDIR: 22,
  STATFS: 23,
  SETXATTR: 24,
  GETXATTR: 25,
  LISTXATTR: 26,
  REMOVEXATTR: 27,
  CREATE: 28,
  READDIRPLUS: 29,
  CLOSED: 30,
  SETTLED: 31,
} as const
const OP_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(OP).map(([k, v]) => [v, k.toLowerCase()]),
)

// Attribute layout in the scratch array (native/fuse3.c, A_*), and setattr's input after it.
const A_COUNT = 16
const S_SET = 16
const DIR_STRIDE = 17

// setattr's `to_set` bits (fuse_lowlevel.h)
const SET_MODE = 1 << 0
const SET_UID = 1 << 1
const SET_GID = 1 << 2
const SET_SIZE = 1 << 3
const SET_ATIME = 1 << 4
const SET_MTIME = 1 << 5
const SET_ATIME_NOW = 1 << 7
const SET_MTIME_NOW = 1 << 8

// open reply flags (native/fuse3.c, OPEN_*)
const OPEN_KEEP_CACHE = 1
const OPEN_NOFLUSH = 4

const XATTR_CREATE = 1
const XATTR_REPLACE = 2
const O_ACCMODE = 3
const ERRNO = osConstants.errno

// notify kinds
const INVAL_INODE = 1
const INVAL_ENTRY = 2
const BARRIER = 4

interface Addon {
  mount(
    dir: string,
    args: string[],
    dispatch: (...a: never[]) => void,
    scratch: Float64Array,
    maxWrite: number,
    maxBackground: number,
    writeback: boolean,
    readdirplus: boolean,
  ): object
  unmount(s: object): void
  replyErr(s: object, id: number, errno: number): void
  replyEntry(s: object, id: number, entryTimeout: number, attrTimeout: number): void
  replyCreate(
    s: object,
    id: number,
    entryTimeout: number,
    attrTimeout: number,
    fh: number,
    flags: number,
  ): void
  replyAttr(s: object, id: number, attrTimeout: number): void
  replyOpen(s: object, id: number, fh: number, flags: number): void
  replyWrite(s: object, id: number, count: number): void
  replyBuf(s: object, id: number, data: Buffer): void
  replyReadlink(s: object, id: number, target: Buffer): void
  replyXattr(s: object, id: number, size: number, data: Buffer): void
  replyStatfs(s: object, id: number): void
  replyDir(
    s: object,
    id: number,
    size: number,
    plus: boolean,
    names: Buffer[],
    count: number,
    nums: Float64Array,
    entryTimeout: number,
    attrTimeout: number,
  ): number
  notify(s: object, kind: number, a: number, b: number, name: Buffer | null, off: number, len: number): void
}

let loaded: { addon?: Addon; error?: string } | undefined

function addon(): { addon?: Addon; error?: string } {
  if (loaded) return loaded
  try {
    loaded = { addon: createRequire(import.meta.url)(addonPath('s0_fuse3.node')) as Addon }
  } catch (err) {
    loaded = {
      error: `the libfuse 3 addon did not load (${(err as Error).message.split('\n')[0]}); install libfuse3-dev and run npm ci, or set S0_FUSE_TRANSPORT=fuse-native`,
    }
  }
  return loaded
}

interface FileHandle {
  kind: 'file'
  ino: Ino
  /** Written through this handle since its last flush (close then makes it durable). */
  wrote: boolean
}

interface DirHandle {
  kind: 'dir'
  ino: Ino
  /** The listing, taken at offset 0 (so offsets stay stable while the directory changes). */
  entries: DirEntry[] | null
}

const FH_MAX = 2 ** 48

/** Seconds and nanoseconds of a time, the nanoseconds in [0, 1e9) as struct timespec has them. */
function nsParts(ns: bigint): [number, number] {
  let s = ns / 1_000_000_000n
  let n = ns % 1_000_000_000n
  if (n < 0n) {
    n += 1_000_000_000n
    s -= 1n
  }
  return [Number(s), Number(n)]
}

function toNs(s: number, n: number): bigint {
  return BigInt(Math.trunc(s)) * 1_000_000_000n + BigInt(Math.trunc(n))
}

/** One mounted session: the dispatcher, its handles and what the kernel has been told. */
class LowLevelSession implements FuseSession {
  readonly transport = 'lowlevel' as const
  readonly stats = new Map<string, OpStats>()
  private readonly scratch = new Float64Array(32)
  private dirNums = new Float64Array(DIR_STRIDE * 64)
  private readonly handles = new Map<number, FileHandle | DirHandle>()
  private nextFh = 1
  /** The kernel's lookup count per inode (replies that gave it a reference, minus forgets). */
  private readonly lookups = new Map<Ino, number>()
  /**
   * Names the kernel may cache, per inode it holds, as `${parent}/${name in latin1}`: what a
   * full invalidation (restore) must drop. Forgotten with the inode.
   */
  private readonly names = new Map<Ino, Set<string>>()
  private namesCount = 0
  /** Cached misses (negative entries), bounded: past the bound misses are not cached. */
  private readonly negatives = new Set<string>()
  private session: object | null = null
  private closed = false
  private unwatch: (() => void) | null = null
  /** Barriers sent to the notifier thread and not yet passed, in order. */
  private readonly barriers: Array<{ n: number; resolve: () => void }> = []
  private barrierSeq = 0
  /** Invalidations queued since the last barrier. */
  private noticesSinceBarrier = 0
  private readonly owner: { uid: number; gid: number } | null
  private watchdog: ChildProcess | null = null

  constructor(
    private readonly a: Addon,
    private readonly vfs: Vfs,
    private readonly opts: TransportOptions,
    private readonly log: Logger,
  ) {
    this.owner = opts.owner === 'caller' ? null : opts.owner
  }

  get openHandles(): number {
    let n = 0
    for (const h of this.handles.values()) if (h.kind === 'file') n++
    return n
  }

  start(dir: string): void {
    const o = this.opts
    const mountOpts = [`fsname=s0:${this.vfs.volumeId}`, 'subtype=s0', 'default_permissions']
    if (o.allowOther) mountOpts.push('allow_other')
    if (o.readOnly) mountOpts.push('ro')
    const args = ['-o', mountOpts.join(',')]
    if (process.env.S0_FUSE_DEBUG) args.push('-d')
    this.session = this.a.mount(
      dir,
      args,
      this.dispatch as (...a: never[]) => void,
      this.scratch,
      limits.fuseLowlevelWriteBytesMax,
      limits.fuseMaxBackground,
      o.writebackCache && !o.readOnly,
      true,
    )
    this.unwatch = this.vfs.watch((e) => this.invalidate(e))
    if (o.autoUnmount) this.watchdog = startWatchdog(dir)
  }

  async unmount(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.unwatch?.()
    if (this.session) this.a.unmount(this.session)
    this.settled(Infinity)
    this.watchdog?.stdin?.end('done\n')
  }

  // ---- replies -----------------------------------------------------------------------------

  private get s(): object {
    return this.session as object
  }

  private putAttr(a: Attr, at = 0, out: Float64Array = this.scratch): void {
    const [as, an] = nsParts(a.atimeNs)
    const [ms, mn] = nsParts(a.mtimeNs)
    const [cs, cn] = nsParts(a.ctimeNs)
    out[at] = a.ino
    out[at + 1] = a.mode
    out[at + 2] = a.nlink
    out[at + 3] = a.uid
    out[at + 4] = a.gid
    out[at + 5] = a.rdev
    out[at + 6] = a.size
    out[at + 7] = Math.ceil(a.size / 512)
    out[at + 8] = as
    out[at + 9] = an
    out[at + 10] = ms
    out[at + 11] = mn
    out[at + 12] = cs
    out[at + 13] = cn
    out[at + 14] = 4096
    out[at + 15] = 0
  }

  /** The kernel now holds a reference to `a.ino` under `parent/name`. */
  private remember(parent: Ino, name: Buffer, ino: Ino): void {
    this.lookups.set(ino, (this.lookups.get(ino) ?? 0) + 1)
    if (this.namesCount >= limits.fuseKnownNamesMax) return
    let set = this.names.get(ino)
    if (!set) this.names.set(ino, (set = new Set()))
    const key = `${parent}/${name.toString('latin1')}`
    if (!set.has(key)) {
      set.add(key)
      this.namesCount++
    }
  }

  /** Entry and attribute lifetimes for a new kernel reference: none once we cannot track more. */
  private get entryTtl(): number {
    return this.namesCount < limits.fuseKnownNamesMax ? this.opts.entryTimeoutS : 0
  }

  private get attrTtl(): number {
    return this.namesCount < limits.fuseKnownNamesMax ? this.opts.attrTimeoutS : 0
  }

  private replyEntry(id: number, parent: Ino, name: Buffer, a: Attr): void {
    this.putAttr(a)
    this.a.replyEntry(this.s, id, this.entryTtl, this.attrTtl)
    this.remember(parent, name, a.ino)
  }

  private replyNegative(id: number, parent: Ino, name: Buffer): void {
    this.scratch.fill(0, 0, A_COUNT)
    let ttl = this.opts.negativeTimeoutS
    if (ttl > 0) {
      if (this.negatives.size >= limits.fuseNegativeNamesMax) ttl = 0
      else this.negatives.add(`${parent}/${name.toString('latin1')}`)
    }
    this.a.replyEntry(this.s, id, ttl, 0)
  }

  private forget(ino: Ino, n: number): void {
    const left = (this.lookups.get(ino) ?? 0) - n
    if (left > 0) {
      this.lookups.set(ino, left)
      return
    }
    this.lookups.delete(ino)
    const set = this.names.get(ino)
    if (set) {
      this.namesCount -= set.size
      this.names.delete(ino)
    }
  }

  // ---- invalidation ------------------------------------------------------------------------

  private notify(kind: number, a: number, b: number, name: Buffer | null, off = 0, len = 0): void {
    if (!this.session || this.closed) return
    this.a.notify(this.session, kind, a, b, name, off, len)
    this.noticesSinceBarrier++
  }

  /** Resolves once the kernel has processed every invalidation queued before the call. */
  settle(): Promise<void> {
    if (!this.session || this.closed || this.noticesSinceBarrier === 0) return Promise.resolve()
    this.noticesSinceBarrier = 0
    const n = ++this.barrierSeq
    return new Promise<void>((resolve) => {
      this.barriers.push({ n, resolve })
      this.a.notify(this.session as object, BARRIER, n, 0, null, 0, 0)
    })
  }

  private settled(upTo: number): void {
    while (this.barriers.length > 0 && (this.barriers[0] as { n: number }).n <= upTo)
      (this.barriers.shift() as { resolve: () => void }).resolve()
  }

  /**
   * A change not made through this mount: the kernel is told to drop what it cached of it, and
   * the change is acknowledged (the Vfs awaits the promise) only once the kernel has.
   */
  private invalidate(e: ChangeEvent): Promise<void> | undefined {
    if (e.origin === this) return undefined
    this.queueInvalidation(e)
    return this.settle()
  }

  private queueInvalidation(e: ChangeEvent): void {
    switch (e.event) {
      case 'invalidate':
        return this.invalidateAll()
      case 'create':
      case 'remove':
      case 'rename':
        if (e.name) {
          this.negatives.delete(`${e.parentIno}/${e.name.toString('latin1')}`)
          this.notify(INVAL_ENTRY, e.parentIno, 0, e.name)
        }
        // The directory's size, times and cached listing.
        this.notify(INVAL_INODE, e.parentIno, 0, null, 0, 0)
        if (e.ino) this.notify(INVAL_INODE, e.ino, 0, null, -1, 0)
        return
      case 'write':
        if (e.ino) this.notify(INVAL_INODE, e.ino, 0, null, 0, 0)
        return
      case 'chmod':
        if (e.ino) this.notify(INVAL_INODE, e.ino, 0, null, -1, 0)
        return
    }
  }

  /** The whole volume changed under us (restore): every name, miss, attribute and page. */
  private invalidateAll(): void {
    for (const [ino, set] of this.names) {
      for (const key of set) {
        const at = key.indexOf('/')
        this.notify(INVAL_ENTRY, Number(key.slice(0, at)), 0, Buffer.from(key.slice(at + 1), 'latin1'))
      }
      this.notify(INVAL_INODE, ino, 0, null, 0, 0)
    }
    for (const key of this.negatives) {
      const at = key.indexOf('/')
      this.notify(INVAL_ENTRY, Number(key.slice(0, at)), 0, Buffer.from(key.slice(at + 1), 'latin1'))
    }
    this.negatives.clear()
    this.notify(INVAL_INODE, ROOT_INO, 0, null, 0, 0)
  }

  // ---- dispatch ----------------------------------------------------------------------------

  private writable(): void {
    if (this.opts.readOnly) throw new S0Error('read_only', 'the volume is mounted read-only')
  }

  private ownerOf(uid: number, gid: number): { uid: number; gid: number } {
    return this.owner ?? { uid, gid }
  }

  private addHandle(h: FileHandle | DirHandle): number {
    for (;;) {
      const fh = this.nextFh
      this.nextFh = fh >= FH_MAX ? 1 : fh + 1
      if (!this.handles.has(fh)) {
        this.handles.set(fh, h)
        return fh
      }
    }
  }

  private file(fh: number): FileHandle {
    const h = this.handles.get(fh)
    if (!h || h.kind !== 'file') throw new S0Error('bad_file_handle', `file handle ${fh} is not open`)
    return h
  }

  private dir(fh: number): DirHandle {
    const h = this.handles.get(fh)
    if (!h || h.kind !== 'dir') throw new S0Error('bad_file_handle', `directory handle ${fh} is not open`)
    return h
  }

  /** Runs one request's handler; a failure becomes its errno, a bug crashes the process. */
  private run(op: number, id: number, ino: number, fn: () => Promise<void>): void {
    const started = performance.now()
    fn().then(
      () => trackOp(this.stats, OP_NAMES[op] as string, started, false),
      (err: unknown) => {
        trackOp(this.stats, OP_NAMES[op] as string, started, true)
        if (err instanceof AssertionError) crashOnBug(err, this.log, { op: OP_NAMES[op], ino })
        if (this.closed) return
        const errno = -toErrno(err, this.log, OP_NAMES[op] as string, `inode ${ino}`)
        this.a.replyErr(this.s, id, errno)
      },
    )
  }

  private readonly dispatch = (
    op: number,
    id: number,
    ino: number,
    a?: unknown,
    b?: unknown,
    c?: unknown,
    d?: unknown,
    e?: unknown,
  ): void => {
    const vfs = this.vfs
    const s = this.s
    const i = ino as Ino
    switch (op) {
      case OP.LOOKUP:
        return this.run(op, id, ino, async () => {
          const name = a as Buffer
          let attr: Attr
          try {
            attr = await vfs.lookup(i, name)
          } catch (err) {
            if (err instanceof S0Error && err.code === 'file_not_found')
              return this.replyNegative(id, i, name)
            throw err
          }
          this.replyEntry(id, i, name, attr)
        })
      case OP.FORGET:
        return this.forget(i, a as number)
      case OP.GETATTR:
        return this.run(op, id, ino, async () => {
          this.putAttr(await vfs.getattr(i))
          this.a.replyAttr(s, id, this.attrTtl)
        })
      case OP.SETATTR: {
        const toSet = a as number
        const x = this.scratch
        const set: Parameters<Vfs['setattr']>[1] = {}
        if (toSet & SET_MODE) set.mode = x[S_SET] as number
        if (toSet & SET_UID) set.uid = x[S_SET + 1] as number
        if (toSet & SET_GID) set.gid = x[S_SET + 2] as number
        if (toSet & SET_SIZE) set.size = x[S_SET + 3] as number
        const now = BigInt(Date.now()) * 1_000_000n
        if (toSet & SET_ATIME_NOW) set.atimeNs = now
        else if (toSet & SET_ATIME) set.atimeNs = toNs(x[S_SET + 4] as number, x[S_SET + 5] as number)
        if (toSet & SET_MTIME_NOW) set.mtimeNs = now
        else if (toSet & SET_MTIME) set.mtimeNs = toNs(x[S_SET + 6] as number, x[S_SET + 7] as number)
        return this.run(op, id, ino, async () => {
          this.writable()
          this.putAttr(await vfs.setattr(i, set, this))
          this.a.replyAttr(s, id, this.attrTtl)
        })
      }
      case OP.READLINK:
        return this.run(op, id, ino, async () => this.a.replyReadlink(s, id, await vfs.readlink(i)))
      case OP.MKNOD:
        return this.run(op, id, ino, async () => {
          this.writable()
          const name = a as Buffer
          const attr = await vfs.mknod(i, name, b as number, this.ownerOf(d as number, e as number), {
            rdev: c as number,
            origin: this,
          })
          this.replyEntry(id, i, name, attr)
        })
      case OP.MKDIR:
        return this.run(op, id, ino, async () => {
          this.writable()
          const name = a as Buffer
          const attr = await vfs.mkdir(i, name, b as number, this.ownerOf(c as number, d as number), this)
          this.replyEntry(id, i, name, attr)
        })
      case OP.UNLINK:
        return this.run(op, id, ino, async () => {
          this.writable()
          await vfs.unlink(i, a as Buffer, this)
          this.a.replyErr(s, id, 0)
        })
      case OP.RMDIR:
        return this.run(op, id, ino, async () => {
          this.writable()
          await vfs.rmdir(i, a as Buffer, this)
          this.a.replyErr(s, id, 0)
        })
      case OP.SYMLINK:
        return this.run(op, id, ino, async () => {
          this.writable()
          const name = a as Buffer
          const attr = await vfs.symlink(i, name, b as Buffer, this.ownerOf(c as number, d as number), this)
          this.replyEntry(id, i, name, attr)
        })
      case OP.RENAME:
        return this.run(op, id, ino, async () => {
          this.writable()
          await vfs.rename(i, a as Buffer, b as Ino, c as Buffer, d as number, this)
          this.a.replyErr(s, id, 0)
        })
      case OP.LINK:
        return this.run(op, id, ino, async () => {
          this.writable()
          const name = b as Buffer
          const attr = await vfs.hardlink(i, a as Ino, name, this)
          this.replyEntry(id, a as Ino, name, attr)
        })
      case OP.OPEN:
        return this.run(op, id, ino, async () => {
          const flags = a as number
          if ((flags & O_ACCMODE) !== 0) this.writable()
          await vfs.getattr(i) // ENOENT for an inode freed meanwhile
          vfs.open(i)
          const fh = this.addHandle({ kind: 'file', ino: i, wrote: false })
          this.a.replyOpen(s, id, fh, this.openFlags())
        })
      case OP.CREATE:
        return this.run(op, id, ino, async () => {
          this.writable()
          const name = a as Buffer
          const flags = c as number
          const attr = await vfs.create(
            i,
            name,
            b as number,
            this.ownerOf(d as number, e as number),
            (flags & fsConstants.O_EXCL) !== 0,
            this,
          )
          vfs.open(attr.ino)
          const fh = this.addHandle({ kind: 'file', ino: attr.ino, wrote: false })
          this.putAttr(attr)
          this.a.replyCreate(s, id, this.entryTtl, this.attrTtl, fh, this.openFlags())
          this.remember(i, name, attr.ino)
        })
      case OP.READ:
        return this.run(op, id, ino, async () => {
          this.file(a as number)
          this.a.replyBuf(s, id, await vfs.read(i, c as number, b as number))
        })
      case OP.WRITE:
        return this.run(op, id, ino, async () => {
          this.writable()
          const h = this.file(a as number)
          const data = b as Buffer
          await vfs.write(i, c as number, data, this)
          h.wrote = true
          this.a.replyWrite(s, id, data.length)
        })
      case OP.FLUSH:
        // close(2) waits for flush (not for release): durability at close happens here.
        return this.run(op, id, ino, async () => {
          const h = this.file(a as number)
          if (this.opts.durability === 'close' && h.wrote) {
            h.wrote = false
            await vfs.flush(i)
            await vfs.sync()
          }
          this.a.replyErr(s, id, 0)
        })
      case OP.RELEASE:
        return this.run(op, id, ino, async () => {
          this.file(a as number)
          this.handles.delete(a as number)
          await vfs.release(i, { flush: 'soon' })
          this.a.replyErr(s, id, 0)
        })
      case OP.FSYNC:
        return this.run(op, id, ino, async () => {
          const h = this.file(a as number)
          h.wrote = false
          await vfs.fsync(i)
          this.a.replyErr(s, id, 0)
        })
      case OP.OPENDIR:
        return this.run(op, id, ino, async () => {
          await vfs.getattr(i)
          const fh = this.addHandle({ kind: 'dir', ino: i, entries: null })
          this.a.replyOpen(s, id, fh, 0)
        })
      case OP.READDIR:
      case OP.READDIRPLUS:
        return this.run(op, id, ino, () =>
          this.readdir(id, this.dir(a as number), b as number, c as number, op === OP.READDIRPLUS),
        )
      case OP.RELEASEDIR:
        this.handles.delete(a as number)
        return this.a.replyErr(s, id, 0)
      case OP.FSYNCDIR:
        return this.run(op, id, ino, async () => {
          await vfs.sync()
          this.a.replyErr(s, id, 0)
        })
      case OP.STATFS:
        return this.run(op, id, ino, async () => {
          const st = await vfs.statfs()
          const x = this.scratch
          x[0] = st.blockSize
          x[1] = st.blockSize
          x[2] = st.blocks
          x[3] = st.blocksFree
          x[4] = st.blocksFree
          x[5] = st.files
          x[6] = st.filesFree
          x[7] = st.filesFree
          x[8] = st.nameMax
          this.a.replyStatfs(s, id)
        })
      case OP.SETXATTR:
        return this.run(op, id, ino, async () => {
          this.writable()
          const flags = c as number
          const mode = flags & XATTR_CREATE ? 'create' : flags & XATTR_REPLACE ? 'replace' : 'any'
          await vfs.setxattr(i, (a as Buffer).toString(), b as Buffer, mode, this)
          this.a.replyErr(s, id, 0)
        })
      case OP.GETXATTR:
        return this.run(op, id, ino, async () => {
          this.a.replyXattr(s, id, b as number, await vfs.getxattr(i, (a as Buffer).toString()))
        })
      case OP.LISTXATTR:
        return this.run(op, id, ino, async () => {
          const names = await vfs.listxattr(i)
          const data = Buffer.from(names.map((n) => `${n}\0`).join(''))
          this.a.replyXattr(s, id, a as number, data)
        })
      case OP.REMOVEXATTR:
        return this.run(op, id, ino, async () => {
          this.writable()
          await vfs.removexattr(i, (a as Buffer).toString(), this)
          this.a.replyErr(s, id, 0)
        })
      case OP.SETTLED:
        return this.settled(ino)
      case OP.CLOSED:
        // The kernel caches nothing of an unmounted file system: every barrier is passed.
        this.settled(Infinity)
        if (!this.closed) {
          this.closed = true
          this.unwatch?.()
          this.log.warn('FUSE mount went away (unmounted from outside or aborted)', {
            volumeId: this.vfs.volumeId,
          })
        }
        return
      default:
        this.a.replyErr(s, id, ERRNO.ENOSYS)
    }
  }

  private openFlags(): number {
    let f = 0
    if (this.opts.keepCache) f |= OPEN_KEEP_CACHE
    // With durability at fsync, close has nothing to wait for: the kernel need not ask.
    if (this.opts.durability === 'fsync') f |= OPEN_NOFLUSH
    return f
  }

  private async readdir(id: number, h: DirHandle, size: number, off: number, plus: boolean): Promise<void> {
    if (off === 0 || !h.entries) {
      const self = await this.vfs.getattr(h.ino)
      const parent = self.parentIno ?? ROOT_INO
      h.entries = [
        { name: Buffer.from('.'), ino: h.ino, kind: S_IFDIR >> 12 },
        { name: Buffer.from('..'), ino: h.ino === ROOT_INO ? ROOT_INO : parent, kind: S_IFDIR >> 12 },
        ...(await this.vfs.listAll(h.ino)),
      ]
    }
    const entries = h.entries
    // At most what fits: a plus entry is over 150 bytes, a plain one over 24.
    const n = Math.max(0, Math.min(entries.length - off, Math.ceil(size / (plus ? 150 : 24)) + 1))
    if (this.dirNums.length < n * DIR_STRIDE) this.dirNums = new Float64Array(n * DIR_STRIDE * 2)
    const nums = this.dirNums
    const names: Buffer[] = []
    const attrs = plus
      ? await Promise.all(
          entries
            .slice(off, off + n)
            .map((e, k) =>
              off + k < 2 ? this.vfs.getattr(e.ino) : this.vfs.getattr(e.ino).catch(() => null),
            ),
        )
      : null
    let count = 0
    for (let k = 0; k < n; k++) {
      const e = entries[off + k] as DirEntry
      const at = count * DIR_STRIDE
      if (attrs) {
        const attr = attrs[k]
        if (!attr) continue // removed since the listing: left out
        this.putAttr(attr, at + 1, nums)
      } else {
        nums.fill(0, at + 1, at + DIR_STRIDE)
        nums[at + 1] = e.ino
        nums[at + 2] = e.kind << 12
      }
      nums[at] = off + k + 1
      names.push(e.name)
      count++
    }
    if (this.closed) return
    const added = this.a.replyDir(this.s, id, size, plus, names, count, nums, this.entryTtl, this.attrTtl)
    if (plus) {
      for (let k = 0; k < added; k++) {
        const name = names[k] as Buffer
        if (name.length <= 2 && (name.equals(DOT) || name.equals(DOTDOT))) continue
        this.remember(h.ino, name, nums[k * DIR_STRIDE + 1] as Ino)
      }
    }
  }
}

/**
 * libfuse's auto_unmount without fusermount3 (the fuse3 package excludes fuse-native's fuse):
 * a shell that waits on a pipe from us. When this process dies, however (kill -9), the pipe
 * closes and it detaches the dead mount, so nothing is left answering ENOTCONN; after a clean
 * unmount we tell it so and it just exits.
 */
function startWatchdog(dir: string): ChildProcess {
  const child = spawn('sh', ['-c', 'read -r line; [ "$line" = done ] || exec umount -l -- "$1"', 'sh', dir], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
    cwd: '/',
  })
  child.on('error', () => undefined) // no shell: no auto-unmount, the next mount recovers the point
  child.unref()
  ;(child.stdin as unknown as { unref?: () => void } | null)?.unref?.()
  return child
}

const DOT = Buffer.from('.')
const DOTDOT = Buffer.from('..')

export const lowLevelTransport: FuseTransport = {
  name: 'lowlevel',
  unavailable: () => addon().error ?? null,
  async mount(vfs, dir, opts, log) {
    const { addon: a, error } = addon()
    if (!a) throw new S0Error('mount_failed', error as string)
    const session = new LowLevelSession(a, vfs, opts, log)
    try {
      session.start(dir)
    } catch (err) {
      throw new S0Error('mount_failed', `mounting ${dir} failed: ${(err as Error).message}`, { cause: err })
    }
    return session
  },
}
