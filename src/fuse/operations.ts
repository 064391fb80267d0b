// FUSE operations (fuse-native's path-based FUSE 2 API) mapped onto one volume's Vfs. Every
// handler is async (fuse-native runs libfuse's multi-threaded loop, so many requests are in
// flight at once); failures become the errno the error catalogue names.
import type { Ino } from '../core/ids.js'
import type { FuseOperations, FuseStat, FuseStatfs } from 'fuse-native'
import { AssertionError, crashOnBug } from '../core/assert.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { Vfs } from '../snapshots/vfs.js'
import { ROOT_INO, S_IFDIR, type Attr } from '../snapshots/types.js'
import { toErrno } from './errno.js'
import { trackOp, type Durability, type OpStats } from './transport.js'

export type { Durability, OpStats }

export interface FuseOpsOptions {
  vfs: Vfs
  log: Logger
  readOnly: boolean
  durability: Durability
  /** Owner of new files: the FUSE 2 binding does not pass the caller's uid/gid. */
  uid: number
  gid: number
}

interface Handle {
  ino: Ino
  /** Written through this handle since its last flush (close then makes it durable). */
  wrote: boolean
}

const XATTR_CREATE = 1
const XATTR_REPLACE = 2
const UINT32_MAX = 0xffffffff
/** UTIME_OMIT and UTIME_NOW as our patch of fuse-native passes them (tools/patch-fuse-native.mjs). */
const UTIME_OMIT_MS = 0xffffffffffff
const UTIME_NOW_MS = 0xfffffffffffe
const FD_MAX = 0x7fffffff

function msOf(ns: bigint): number {
  return Number(ns / 1_000_000n)
}

export function toStat(a: Attr): FuseStat {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    nlink: a.nlink,
    ino: a.ino % 2 ** 32,
    rdev: a.rdev,
    blksize: 4096,
    blocks: Math.ceil(a.size / 512),
    atime: msOf(a.atimeNs),
    mtime: msOf(a.mtimeNs),
    ctime: msOf(a.ctimeNs),
  }
}

function split(path: string): { dir: string; name: Buffer } {
  const at = path.lastIndexOf('/')
  return { dir: at <= 0 ? '/' : path.slice(0, at), name: Buffer.from(path.slice(at + 1)) }
}

export class VolumeFuseOps {
  readonly stats = new Map<string, OpStats>()
  private readonly vfs: Vfs
  private readonly log: Logger
  private readonly handles = new Map<number, Handle>()
  private nextFd = 1
  private readonly owner: { uid: number; gid: number }

  constructor(private readonly opts: FuseOpsOptions) {
    this.vfs = opts.vfs
    this.log = opts.log
    this.owner = { uid: opts.uid, gid: opts.gid }
  }

  get openHandles(): number {
    return this.handles.size
  }

  /** The attributes at `path`, walking it from the root (the Vfs caches names and inodes). */
  async resolve(path: string): Promise<Attr> {
    let attr = await this.vfs.getattr(ROOT_INO)
    let from = 1
    while (from < path.length) {
      let to = path.indexOf('/', from)
      if (to < 0) to = path.length
      if (to > from) attr = await this.vfs.lookup(attr.ino, Buffer.from(path.slice(from, to)))
      from = to + 1
    }
    return attr
  }

  private async parent(path: string): Promise<{ parent: Ino; name: Buffer }> {
    const { dir, name } = split(path)
    return { parent: (await this.resolve(dir)).ino, name }
  }

  private writable(): void {
    if (this.opts.readOnly) throw new S0Error('read_only', 'the volume is mounted read-only')
  }

  private handle(fd: number): Handle {
    const h = this.handles.get(fd)
    if (!h) throw new S0Error('bad_file_handle', `file handle ${fd} is not open`)
    return h
  }

  private addHandle(ino: Ino): number {
    this.vfs.open(ino)
    for (;;) {
      const fd = this.nextFd
      this.nextFd = fd >= FD_MAX ? 1 : fd + 1
      if (!this.handles.has(fd)) {
        this.handles.set(fd, { ino, wrote: false })
        return fd
      }
    }
  }

  private track(op: string, started: number, failed: boolean): void {
    trackOp(this.stats, op, started, failed)
  }

  /**
   * Runs `fn` and answers fuse-native's (errno, value) callback exactly once, except for a bug:
   * then the process crashes, and the kernel fails the request with ECONNABORTED and any later
   * one on the mount with ENOTCONN.
   */
  private run<T>(op: string, path: string, cb: (err: number, v?: T) => void, fn: () => Promise<T>): void {
    const started = performance.now()
    // Not awaited: fuse-native wants the callback. Both outcomes are handled below; a throw from
    // the callback itself would surface as an unhandled rejection, which crashes the process.
    void fn().then(
      (v) => {
        this.track(op, started, false)
        cb(0, v)
      },
      (err: unknown) => {
        this.track(op, started, true)
        if (err instanceof AssertionError) crashOnBug(err, this.log, { op, path })
        else cb(toErrno(err, this.log, op, path))
      },
    )
  }

  /** Same for read/write, whose callback takes a byte count or a negative errno. */
  private runIo(op: string, path: string, cb: (n: number) => void, fn: () => Promise<number>): void {
    const started = performance.now()
    void fn().then(
      (n) => {
        this.track(op, started, false)
        cb(n)
      },
      (err: unknown) => {
        this.track(op, started, true)
        if (err instanceof AssertionError) crashOnBug(err, this.log, { op, path })
        else cb(toErrno(err, this.log, op, path))
      },
    )
  }

  operations(): FuseOperations {
    const vfs = this.vfs
    return {
      getattr: (path, cb) => this.run('getattr', path, cb, async () => toStat(await this.resolve(path))),

      readdir: (path, cb) =>
        this.run(
          'readdir',
          path,
          (err, out?: { names: string[]; stats: Array<Partial<FuseStat>> }) =>
            cb(err, out?.names, out?.stats),
          async () => {
            const self = await this.resolve(path)
            const ino = self.ino
            // Each name goes with its type (d_type) and inode number: overlayfs, with a volume
            // as a lower layer, finds whiteouts by DT_CHR and would list them otherwise. `.` and
            // `..` need theirs too: readdir(3) skips an entry whose inode number is 0.
            const names = ['.', '..']
            const stats: Array<Partial<FuseStat>> = [
              { mode: S_IFDIR, ino: ino % 2 ** 32 },
              { mode: S_IFDIR, ino: (ino === ROOT_INO ? ROOT_INO : (self.parentIno ?? ROOT_INO)) % 2 ** 32 },
            ]
            for (let after: Buffer | null = null; ;) {
              const page = await vfs.readdir(ino, after, limits.fuseReaddirPageEntries)
              for (const e of page) {
                names.push(e.name.toString())
                stats.push({ mode: e.kind << 12, ino: e.ino % 2 ** 32 })
              }
              if (page.length < limits.fuseReaddirPageEntries) return { names, stats }
              after = (page[page.length - 1] as { name: Buffer }).name
            }
          },
        ),

      readlink: (path, cb) =>
        this.run('readlink', path, cb, async () =>
          (await vfs.readlink((await this.resolve(path)).ino)).toString(),
        ),

      statfs: (path, cb) =>
        this.run('statfs', path, cb, async (): Promise<FuseStatfs> => {
          const s = await vfs.statfs()
          const cap = (n: number): number => Math.min(n, UINT32_MAX)
          return {
            bsize: s.blockSize,
            frsize: s.blockSize,
            blocks: cap(s.blocks),
            bfree: cap(s.blocksFree),
            bavail: cap(s.blocksFree),
            files: cap(s.files),
            ffree: cap(s.filesFree),
            favail: cap(s.filesFree),
            fsid: 0,
            flag: 0,
            namemax: s.nameMax,
          }
        }),

      open: (path, _flags, cb) =>
        this.run('open', path, cb, async () => this.addHandle((await this.resolve(path)).ino)),

      create: (path, mode, cb) =>
        this.run('create', path, cb, async () => {
          this.writable()
          const { parent, name } = await this.parent(path)
          // The kernel asks only after a lookup said "no such name": exclusive is right, and
          // a racing creator gets EEXIST rather than a silently shared file.
          const a = await vfs.create(parent, name, mode, this.owner, true)
          return this.addHandle(a.ino)
        }),

      read: (path, fd, buf, len, pos, cb) =>
        this.runIo('read', path, cb, async () => {
          const data = await vfs.read(this.handle(fd).ino, pos, len)
          data.copy(buf)
          return data.length
        }),

      write: (path, fd, buf, len, pos, cb) =>
        this.runIo('write', path, cb, async () => {
          this.writable()
          const h = this.handle(fd)
          // The Vfs copies the bytes: fuse-native's buffer is reused once we answer.
          await vfs.write(h.ino, pos, buf.subarray(0, len))
          h.wrote = true
          return len
        }),

      // close(2) waits for flush (not for release): durability at close happens here.
      flush: (path, fd, cb) =>
        this.run('flush', path, cb, async () => {
          const h = this.handle(fd)
          if (this.opts.durability !== 'close' || !h.wrote) return
          h.wrote = false
          await vfs.flush(h.ino)
          await vfs.sync()
        }),

      release: (path, fd, cb) =>
        this.run('release', path, cb, async () => {
          const h = this.handle(fd)
          this.handles.delete(fd)
          await vfs.release(h.ino, { flush: 'soon' })
        }),

      fsync: (path, _datasync, fd, cb) =>
        this.run('fsync', path, cb, async () => {
          const h = this.handle(fd)
          h.wrote = false
          await vfs.fsync(h.ino)
        }),

      fsyncdir: (path, _datasync, _fd, cb) => this.run('fsyncdir', path, cb, () => vfs.sync()),

      truncate: (path, size, cb) =>
        this.run('truncate', path, cb, async () => {
          this.writable()
          await vfs.setattr((await this.resolve(path)).ino, { size })
        }),

      ftruncate: (path, fd, size, cb) =>
        this.run('ftruncate', path, cb, async () => {
          this.writable()
          await vfs.setattr(this.handle(fd).ino, { size })
        }),

      utimens: (path, atime, mtime, cb) =>
        this.run('utimens', path, cb, async () => {
          this.writable()
          const now = BigInt(Date.now()) * 1_000_000n
          const ns = (ms: number): bigint | undefined =>
            ms === UTIME_OMIT_MS ? undefined : ms === UTIME_NOW_MS ? now : BigInt(Math.round(ms)) * 1_000_000n
          const set: { atimeNs?: bigint; mtimeNs?: bigint } = {}
          const a = ns(atime)
          const m = ns(mtime)
          if (a !== undefined) set.atimeNs = a
          if (m !== undefined) set.mtimeNs = m
          await vfs.setattr((await this.resolve(path)).ino, set)
        }),

      chmod: (path, mode, cb) =>
        this.run('chmod', path, cb, async () => {
          this.writable()
          await vfs.setattr((await this.resolve(path)).ino, { mode })
        }),

      chown: (path, uid, gid, cb) =>
        this.run('chown', path, cb, async () => {
          this.writable()
          await vfs.setattr((await this.resolve(path)).ino, {
            uid: uid === UINT32_MAX ? undefined : uid,
            gid: gid === UINT32_MAX ? undefined : gid,
          })
        }),

      mknod: (path, mode, dev, cb) =>
        this.run('mknod', path, cb, async () => {
          this.writable()
          const { parent, name } = await this.parent(path)
          await vfs.mknod(parent, name, mode, this.owner, { rdev: dev })
        }),

      mkdir: (path, mode, cb) =>
        this.run('mkdir', path, cb, async () => {
          this.writable()
          const { parent, name } = await this.parent(path)
          await vfs.mkdir(parent, name, mode, this.owner)
        }),

      unlink: (path, cb) =>
        this.run('unlink', path, cb, async () => {
          this.writable()
          const { parent, name } = await this.parent(path)
          await vfs.unlink(parent, name)
        }),

      rmdir: (path, cb) =>
        this.run('rmdir', path, cb, async () => {
          this.writable()
          const { parent, name } = await this.parent(path)
          await vfs.rmdir(parent, name)
        }),

      rename: (src, dest, cb) =>
        this.run('rename', src, cb, async () => {
          this.writable()
          const from = await this.parent(src)
          const to = await this.parent(dest)
          await vfs.rename(from.parent, from.name, to.parent, to.name)
        }),

      link: (src, dest, cb) =>
        this.run('link', src, cb, async () => {
          this.writable()
          const target = await this.resolve(src)
          const to = await this.parent(dest)
          await vfs.hardlink(target.ino, to.parent, to.name)
        }),

      symlink: (target, path, cb) =>
        this.run('symlink', path, cb, async () => {
          this.writable()
          const { parent, name } = await this.parent(path)
          await vfs.symlink(parent, name, Buffer.from(target), this.owner)
        }),

      setxattr: (path, name, value, _position, flags, cb) =>
        this.run('setxattr', path, cb, async () => {
          this.writable()
          const mode = flags & XATTR_CREATE ? 'create' : flags & XATTR_REPLACE ? 'replace' : 'any'
          await vfs.setxattr((await this.resolve(path)).ino, name, value, mode)
        }),

      getxattr: (path, name, _position, cb) =>
        this.run('getxattr', path, cb, async () => vfs.getxattr((await this.resolve(path)).ino, name)),

      listxattr: (path, cb) =>
        this.run('listxattr', path, cb, async () => vfs.listxattr((await this.resolve(path)).ino)),

      removexattr: (path, name, cb) =>
        this.run('removexattr', path, cb, async () => {
          this.writable()
          await vfs.removexattr((await this.resolve(path)).ino, name)
        }),
    }
  }
}
