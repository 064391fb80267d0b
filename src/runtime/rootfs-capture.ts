// Root-filesystem capture: an overlayfs upper directory (what a sandbox changed over its lower
// layers) applied onto a rootfs volume that holds those lower layers' checkpoint, so that the
// volume becomes the new checkpoint. The result is itself an overlay layer over the template:
// files, directories, symlinks, FIFOs and devices as they are, plus overlay whiteouts
// (character devices 0:0) for names deleted from the template and `trusted.overlay.opaque`
// directories that hide it. Mounted read-only (FUSE) as the top lower layer of the next
// generation's overlay, it reads exactly as the sandbox's root did when it was captured.
//
// Incremental: a manifest remembers what each upper entry looked like at the last capture into
// the same volume; unchanged files are not read again, and names that left the upper since are
// removed (a name leaves the upper only when no lower layer shows it: overlayfs would have left a
// whiteout otherwise). Content is deduplicated by the chunk store either way.
//
// The overlay is mounted with redirect_dir=off, metacopy=off and index=off, so the upper holds
// whole copies only: no redirects, no metadata-only copy-ups. Internal `trusted.overlay.*`
// attributes other than `opaque` are not captured. Sockets are not captured (they mean nothing
// once their process is gone).
import type { Ino } from '../core/ids.js'
import type { BigIntStats } from 'node:fs'
import { lstat, open, readdir, readlink } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { native, type NativeAddon } from '../core/native.js'
import { removeTree } from '../snapshots/paths.js'
import {
  isDir,
  ROOT_INO,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  type DirEntry,
} from '../snapshots/types.js'
import type { Vfs } from '../snapshots/vfs.js'

const OPAQUE = 'trusted.overlay.opaque'
const OVERLAY_XATTR_PREFIX = 'trusted.overlay.'
const S_IFSOCK = 0o140000
const SLASH = Buffer.from('/')

/** What one upper entry looked like when it was captured. */
interface Seen {
  sig: string
  dir: boolean
  opaque: boolean
}

/**
 * What the last capture into a volume saw, per upper directory (relative path, '' for the
 * root). Valid only for the volume it was made with; a new capture target starts without one.
 */
export class CaptureManifest {
  readonly dirs = new Map<string, Map<string, Seen>>()

  get entries(): number {
    let n = 0
    for (const d of this.dirs.values()) n += d.size
    return n
  }

  /** Drops a directory's record and everything recorded below it. */
  dropTree(rel: string): void {
    for (const k of [...this.dirs.keys()]) if (k === rel || k.startsWith(rel + '/')) this.dirs.delete(k)
  }
}

export interface CaptureOptions {
  /** The overlay's upper directory; nothing may write it meanwhile (container stopped or frozen). */
  upperDir: string
  /** The template root under the checkpoint: a whiteout is kept only where it has the name. */
  templateDir: string
  /** The rootfs volume: holds the lower checkpoint (or nothing) and receives the capture. */
  vfs: Vfs
  /** Absolute paths inside the sandbox that are not captured (volume mount points). */
  exclude?: readonly string[]
  /** From the previous capture into this same volume (incremental); updated in place. */
  manifest?: CaptureManifest
  signal?: AbortSignal
}

export interface CaptureStats {
  entries: number
  unchanged: number
  files: number
  bytesRead: number
  directories: number
  whiteouts: number
  removed: number
  skipped: number
  durationMs: number
}

/**
 * Applies the upper directory onto the volume and makes it durable (flushAll: chunks in the
 * object store, then metadata committed synchronously). Returns the manifest for the next
 * incremental capture into the same volume.
 */
export async function captureUpper(
  opts: CaptureOptions,
): Promise<{ manifest: CaptureManifest; stats: CaptureStats }> {
  if (!native) throw new S0Error('runtime_unavailable', 'the s0 native addon is not built (run npm install)')
  const started = performance.now()
  const c = new Capture(opts, opts.manifest ?? new CaptureManifest(), native)
  const upper = Buffer.from(path.resolve(opts.upperDir))
  await c.dir(upper, ROOT_INO, '', c.manifest.dirs.get(''), false)
  await c.rootAttrs(upper)
  await opts.vfs.flushAll()
  c.stats.durationMs = performance.now() - started
  return { manifest: c.manifest, stats: c.stats }
}

type Kind = 'dir' | 'reg' | 'lnk' | 'fifo' | 'dev' | 'whiteout' | 'sock'

function kindOf(mode: number, rdev: bigint): Kind {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'dir'
    case S_IFREG:
      return 'reg'
    case S_IFLNK:
      return 'lnk'
    case S_IFIFO:
      return 'fifo'
    case S_IFCHR:
      return rdev === 0n ? 'whiteout' : 'dev'
    case S_IFBLK:
      return 'dev'
    case S_IFSOCK:
      return 'sock'
    default:
      return 'sock'
  }
}

class Capture {
  readonly stats: CaptureStats = {
    entries: 0,
    unchanged: 0,
    files: 0,
    bytesRead: 0,
    directories: 0,
    whiteouts: 0,
    removed: 0,
    skipped: 0,
    durationMs: 0,
  }
  private readonly vfs: Vfs
  private readonly exclude: Set<string>
  /** Upper inode → volume inode, for files with several names (hard links made in the sandbox). */
  private readonly links = new Map<bigint, Ino>()
  private readonly buf = Buffer.allocUnsafe(limits.captureCopyBufferBytes)

  constructor(
    private readonly opts: CaptureOptions,
    readonly manifest: CaptureManifest,
    private readonly xattrs: Pick<NativeAddon, 'listXattrs' | 'getXattr'>,
  ) {
    this.vfs = opts.vfs
    // Keys are byte strings (latin1), as names are: a name need not be UTF-8.
    this.exclude = new Set(
      (opts.exclude ?? [])
        .map((p) => p.replace(/^\/+/, '').replace(/\/+$/, ''))
        .filter(Boolean)
        .map((p) => Buffer.from(p).toString('latin1')),
    )
  }

  /**
   * Captures the upper directory `upper` into the volume directory `ino`. `seen` is what the
   * last capture recorded for it (absent for a directory new to this volume); `fresh` says the
   * volume directory was made empty by this capture, so it holds no names to look for.
   */
  async dir(
    upper: Buffer,
    ino: Ino,
    rel: string,
    seen: Map<string, Seen> | undefined,
    fresh: boolean,
  ): Promise<boolean> {
    this.opts.signal?.throwIfAborted()
    const names = (await readdir(upper, { encoding: 'buffer' })).sort(Buffer.compare)
    // What the volume directory holds now: listed once (no lookup per name), unless it is new.
    const existing = new Map<string, DirEntry>()
    if (!fresh) for (const e of await this.vfs.listAll(ino)) existing.set(e.name.toString('latin1'), e)
    const now = new Map<string, Seen>()
    // Whether a name in the volume directory changed (its times must then be set again).
    let changed = false
    for (const name of names) {
      const key = name.toString('latin1')
      const childRel = rel === '' ? key : `${rel}/${key}`
      if (this.exclude.has(childRel)) continue
      const p = Buffer.concat([upper, SLASH, name])
      const st = await lstat(p, { bigint: true })
      const kind = kindOf(Number(st.mode), st.rdev)
      if (kind === 'sock') {
        this.stats.skipped++
        continue
      }
      this.stats.entries++
      const opaque = kind === 'dir' && this.xattrs.getXattr(p, OPAQUE)?.toString() === 'y'
      const sig = `${st.mode}:${st.uid}:${st.gid}:${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}:${st.nlink}:${st.rdev}${opaque ? ':o' : ''}`
      const entry: Seen = { sig, dir: kind === 'dir', opaque }
      now.set(key, entry)
      const prev = seen?.get(key)
      if (kind === 'dir') {
        if (await this.subdir(p, ino, name, childRel, st, prev, entry, existing.get(key))) changed = true
        continue
      }
      if (prev?.sig === sig) {
        this.stats.unchanged++
        continue
      }
      if (existing.has(key)) await removeTree(this.vfs, ino, name)
      if (prev?.dir) this.manifest.dropTree(childRel)
      await this.leaf(p, ino, name, childRel, st, kind)
      changed = true
    }
    // Names captured before and gone from the upper now: no lower layer shows them (or overlayfs
    // would have left a whiteout), so the checkpoint must not either.
    for (const [key, prev] of seen ?? []) {
      if (now.has(key)) continue
      const childRel = rel === '' ? key : `${rel}/${key}`
      const name = Buffer.from(key, 'latin1')
      if (existing.has(key)) {
        await removeTree(this.vfs, ino, name)
        this.stats.removed++
        changed = true
      }
      if (prev.dir) this.manifest.dropTree(childRel)
    }
    this.manifest.dirs.set(rel, now)
    return changed
  }

  /** Captures one upper directory; true if the parent's entries changed (made or replaced). */
  private async subdir(
    p: Buffer,
    parent: Ino,
    name: Buffer,
    rel: string,
    st: BigIntStats,
    prev: Seen | undefined,
    entry: Seen,
    there: DirEntry | undefined,
  ): Promise<boolean> {
    this.stats.directories++
    let parentChanged = false
    let fresh = false
    let seen = this.manifest.dirs.get(rel)
    let ino: Ino
    const kept = prev?.dir === true && prev.opaque === entry.opaque && there !== undefined
    if (kept) {
      ino = (there as DirEntry).ino
    } else {
      // New to this volume, or it changed kind or opacity: the volume's entry is replaced. An
      // opaque upper directory hides everything below, so the checkpoint's own copy goes too;
      // and one an earlier capture wrote (`prev`) is stale whole: a directory whose opacity
      // changed was made again, and overlayfs makes it non-opaque only where no lower layer has
      // the name, so nothing of the checkpoint's is left to merge with.
      if (there && (entry.opaque || !isDir(there.kind << 12) || prev !== undefined)) {
        await removeTree(this.vfs, parent, name)
        there = undefined
        parentChanged = true
      }
      if (there) {
        ino = there.ino // a directory of the checkpoint: the upper's one merges with it
      } else {
        const owner = { uid: Number(st.uid), gid: Number(st.gid) }
        ino = (await this.vfs.mkdir(parent, name, Number(st.mode) & 0o7777, owner)).ino
        fresh = true
        parentChanged = true
      }
      if (entry.opaque) await this.vfs.setxattr(ino, OPAQUE, Buffer.from('y'))
      this.manifest.dropTree(rel)
      seen = undefined
    }
    const inside = await this.dir(p, ino, rel, seen, fresh)
    // After the children: their changes move the directory's times.
    if (prev?.sig !== entry.sig || !kept || inside) await this.attrs(p, ino, st, { keepOpaque: true })
    return parentChanged
  }

  private async leaf(
    p: Buffer,
    parent: Ino,
    name: Buffer,
    rel: string,
    st: BigIntStats,
    kind: Exclude<Kind, 'dir' | 'sock'>,
  ): Promise<void> {
    const owner = { uid: Number(st.uid), gid: Number(st.gid) }
    const mode = Number(st.mode)
    if (kind === 'whiteout') {
      // overlayfs links whiteouts to one shared inode: never treat them as hard links.
      this.stats.whiteouts++
      if (await this.templateHas(rel)) await this.vfs.mknod(parent, name, S_IFCHR, owner, { rdev: 0 })
      return
    }
    const linked = st.nlink > 1n ? this.links.get(st.ino) : undefined
    if (linked !== undefined) {
      await this.vfs.hardlink(linked, parent, name)
      return
    }
    let ino: Ino
    if (kind === 'reg') {
      ino = (await this.vfs.create(parent, name, mode & 0o7777, owner)).ino
      await this.copy(p, ino)
      this.stats.files++
    } else if (kind === 'lnk') {
      ino = (await this.vfs.symlink(parent, name, await readlink(p, { encoding: 'buffer' }), owner)).ino
    } else {
      ino = (await this.vfs.mknod(parent, name, mode, owner, { rdev: Number(st.rdev) })).ino
    }
    if (st.nlink > 1n) this.links.set(st.ino, ino)
    await this.attrs(p, ino, st, { keepOpaque: false, symlink: kind === 'lnk' })
  }

  private async copy(p: Buffer, ino: Ino): Promise<void> {
    const fh = await open(p, 'r')
    this.vfs.open(ino)
    try {
      for (let off = 0; ;) {
        const { bytesRead } = await fh.read(this.buf, 0, this.buf.length, off)
        if (bytesRead === 0) break
        await this.vfs.write(ino, off, this.buf.subarray(0, bytesRead))
        off += bytesRead
        this.stats.bytesRead += bytesRead
      }
    } finally {
      await fh.close()
      // Joins the next writeback batch: many small files share packs; flushAll makes it durable.
      await this.vfs.release(ino, { flush: 'soon' })
    }
  }

  /** The root directory's own attributes (the sandbox may chmod or touch `/`). */
  async rootAttrs(upper: Buffer): Promise<void> {
    await this.attrs(upper, ROOT_INO, await lstat(upper, { bigint: true }), { keepOpaque: true })
  }

  /** Mode, owner, times and extended attributes as the upper has them. */
  private async attrs(
    p: Buffer,
    ino: Ino,
    st: BigIntStats,
    o: { keepOpaque: boolean; symlink?: boolean },
  ): Promise<void> {
    await this.vfs.setattr(ino, {
      ...(o.symlink ? {} : { mode: Number(st.mode) & 0o7777 }),
      uid: Number(st.uid),
      gid: Number(st.gid),
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
    })
    const want = new Map<string, Buffer>()
    for (const n of this.xattrs.listXattrs(p)) {
      if (n.startsWith(OVERLAY_XATTR_PREFIX)) continue
      const v = this.xattrs.getXattr(p, n)
      if (v) want.set(n, v)
    }
    for (const n of await this.vfs.listxattr(ino)) {
      if (want.has(n) || (o.keepOpaque && n === OPAQUE)) continue
      await this.vfs.removexattr(ino, n)
    }
    for (const [n, v] of want) await this.vfs.setxattr(ino, n, v)
  }

  /** Whether the template has `rel` (no symlink followed: overlayfs looks names up per layer). */
  private async templateHas(rel: string): Promise<boolean> {
    let p = Buffer.from(path.resolve(this.opts.templateDir))
    const parts = rel.split('/')
    for (let i = 0; i < parts.length; i++) {
      p = Buffer.concat([p, SLASH, Buffer.from(parts[i] as string, 'latin1')])
      const st = await lstat(p).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null
        throw err
      })
      if (!st) return false
      if (i < parts.length - 1 && !st.isDirectory()) return false
    }
    return true
  }
}
