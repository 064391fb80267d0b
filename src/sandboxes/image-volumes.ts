// Registry images in the chunk engine: the unpacked root file system of an image (by manifest
// digest) is imported into a rootfs volume of a system owner (team `s0-images`), and a host that lacks
// `<images dir>/rootfs/<digest>` writes it back from that volume instead of pulling from the
// registry. Chunks are content-addressed (FastCDC + BLAKE3) and deduplicated per team; every
// image volume is under the one system team, so two images sharing layer content store it once,
// and a host reading one back fetches only the chunks its cache lacks.
//
// Images are public content named by digest: no team owns their volume. `image_volumes` maps a
// digest to its volume; a row is kept while a template or a sandbox names the digest, and the
// orphan sweep (checkpoints.ts) drops it after that, then the volume with the other orphans.
//
// The import is the rootfs capture (runtime/rootfs-capture.ts) of the unpacked directory onto an
// empty volume: ownership, modes (setuid included), times, symlinks, hard links, FIFOs, device
// nodes as metadata and extended attributes. The way back is `materialize` below.
import { link, lchown, lutimes, mkdir, open, chmod, symlink, writeFile, rm } from 'node:fs/promises'
import path from 'node:path'
import type { Db } from '../core/db.js'
import { S0Error, isS0Error } from '../core/errors.js'
import type { Ino, TeamId, VolumeId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import { runCliOk } from '../runtime/cli.js'
import type { ImageRootfsStore } from '../runtime/image-pull.js'
import { captureUpper } from '../runtime/rootfs-capture.js'
import type { VolumeEngine } from '../snapshots/engine.js'
import {
  ROOT_INO,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  type Attr,
} from '../snapshots/types.js'
import type { Vfs } from '../snapshots/vfs.js'

/**
 * The owner of image volumes and of their chunks: a system team no account has (teams are
 * `team-<hex>`; the built-in templates' '' cannot name objects: pack keys hold the team).
 */
export const IMAGE_VOLUME_TEAM = 's0-images' as TeamId

const DIGEST = /^sha256:[a-f0-9]{64}$/

export interface ImageVolumesOptions {
  db: Db
  engine: VolumeEngine
  log: Logger
}

export class ImageVolumes implements ImageRootfsStore {
  private running = 0
  private readonly waiting: (() => void)[] = []

  constructor(private readonly o: ImageVolumesOptions) {}

  /** The volume holding the image's root file system, if one was imported. */
  async volumeOf(digest: string): Promise<VolumeId | undefined> {
    checkDigest(digest)
    const { rows } = await this.o.db.query<{ volume_id: VolumeId }>(
      'SELECT volume_id FROM image_volumes WHERE digest = $1',
      [digest],
    )
    return rows[0]?.volume_id
  }

  async has(digest: string): Promise<boolean> {
    return (await this.volumeOf(digest)) !== undefined
  }

  /**
   * Imports an unpacked root file system (nothing writes it meanwhile) into a new volume and
   * records it for `digest`; a digest already recorded is left as it is. A crash before the row
   * is written leaves an unreferenced rootfs volume, which the orphan sweep deletes.
   */
  async save(digest: string, rootfs: string): Promise<void> {
    checkDigest(digest)
    if (await this.has(digest)) return
    await this.bounded(async (signal) => {
      const engine = this.o.engine
      const v = await engine.create(IMAGE_VOLUME_TEAM, { kind: 'rootfs' })
      let recorded = false
      try {
        const { stats } = await captureUpper({
          upperDir: rootfs,
          // A character device 0:0 of the image is kept as such (the capture keeps a "whiteout"
          // only where the template has the name: here the image is its own template).
          templateDir: rootfs,
          vfs: await engine.vfs(IMAGE_VOLUME_TEAM, v.id),
          signal,
        })
        await engine.closeVfs(IMAGE_VOLUME_TEAM, v.id)
        const r = await this.o.db.query(
          `INSERT INTO image_volumes (digest, volume_id, bytes, entries) VALUES ($1, $2, $3, $4)
           ON CONFLICT (digest) DO NOTHING`,
          [digest, v.id, stats.bytesRead, stats.entries],
        )
        recorded = (r.rowCount ?? 0) > 0
        this.o.log.info('image stored in the chunk store', {
          digest,
          volumeId: v.id,
          bytes: stats.bytesRead,
          entries: stats.entries,
          ms: Math.round(stats.durationMs),
        })
      } finally {
        // Failed, or another import of the same digest won: ours goes.
        if (!recorded) await this.drop(v.id)
      }
    }, `storing image ${digest} in the chunk store`)
  }

  /**
   * Writes the image's root file system into `into` (which must not exist; the caller renames it
   * into place). False when no volume holds the image. The volume is read through a fork made
   * for the purpose (O(1)): the image volume's own writer lease stays free, so hosts may
   * materialize the same image at once.
   */
  async restore(digest: string, into: string): Promise<boolean> {
    const volumeId = await this.volumeOf(digest)
    if (!volumeId) return false
    await this.bounded(async (signal) => {
      const engine = this.o.engine
      const fork = await engine.fork(IMAGE_VOLUME_TEAM, volumeId, { kind: 'rootfs' })
      try {
        const started = performance.now()
        const stats = await materialize(await engine.vfs(IMAGE_VOLUME_TEAM, fork.id), into, signal)
        this.o.log.info('image materialized from the chunk store', {
          digest,
          bytes: stats.bytes,
          entries: stats.entries,
          ms: Math.round(performance.now() - started),
        })
      } finally {
        await this.drop(fork.id)
      }
    }, `materializing image ${digest} from the chunk store`)
    return true
  }

  private async drop(volumeId: VolumeId): Promise<void> {
    try {
      await this.o.engine.closeVfs(IMAGE_VOLUME_TEAM, volumeId)
      await this.o.engine.delete(IMAGE_VOLUME_TEAM, volumeId)
    } catch (err) {
      // The orphan sweep deletes it later (kind rootfs, referenced by nothing).
      if (!isS0Error(err, 'not_found')) this.o.log.warn('image volume not deleted', { volumeId, err })
    }
  }

  /** Runs `fn` within imageVolumeTransfersMax at once and imageVolumeTransferTimeoutMs. */
  private async bounded(fn: (signal: AbortSignal) => Promise<void>, what: string): Promise<void> {
    while (this.running >= limits.imageVolumeTransfersMax)
      await new Promise<void>((r) => this.waiting.push(r))
    this.running++
    const signal = AbortSignal.timeout(limits.imageVolumeTransferTimeoutMs)
    try {
      await fn(signal)
    } catch (err) {
      if (signal.aborted)
        throw new S0Error(
          'timeout',
          `${what} took longer than ${limits.imageVolumeTransferTimeoutMs / 1000} s`,
        )
      if (isS0Error(err)) throw err
      throw new S0Error('internal_error', `${what} failed: ${(err as Error).message}`)
    } finally {
      this.running--
      this.waiting.shift()?.()
    }
  }
}

/**
 * Deletes `image_volumes` rows older than `graceMs` whose digest no template and no sandbox
 * names (a template being built names its digest only once its import is done: the grace covers
 * that). Their volumes are then unreferenced rootfs volumes: the orphan sweep deletes them.
 */
export async function releaseUnusedImageVolumes(db: Db, graceMs: number): Promise<VolumeId[]> {
  const { rows } = await db.query<{ volume_id: VolumeId }>(
    `DELETE FROM image_volumes i
      WHERE i.created_at < now() - make_interval(secs => $1::double precision / 1000)
        AND NOT EXISTS (SELECT 1 FROM sandbox_templates t
                         WHERE t.rootfs ->> 'kind' = 'registry' AND t.rootfs ->> 'digest' = i.digest)
        AND NOT EXISTS (SELECT 1 FROM sandboxes s
                         WHERE s.config -> 'template' -> 'rootfs' ->> 'digest' = i.digest)
      RETURNING i.volume_id`,
    [graceMs],
  )
  return rows.map((r) => r.volume_id)
}

function checkDigest(digest: string): void {
  if (!DIGEST.test(digest))
    throw new S0Error('invalid_request', `not a sha256 digest: ${JSON.stringify(digest)}`)
}

// ---- volume → host directory ------------------------------------------------------------------

export interface MaterializeStats {
  entries: number
  bytes: number
  xattrs: number
}

/**
 * Writes a volume's tree into the host directory `into` (made here; its parent must exist):
 * regular files, directories, symlinks, hard links (one inode, several names), FIFOs and device
 * nodes (mknod), owners, modes (setuid/setgid/sticky: chmod after chown, which clears them),
 * times, and extended attributes (setfattr --restore, once, after every chown: a chown drops
 * `security.capability`). Directory times are set after their children are written.
 */
export async function materialize(vfs: Vfs, into: string, signal?: AbortSignal): Promise<MaterializeStats> {
  const m = new Materializer(vfs, signal)
  await mkdir(into, { mode: 0o700 })
  await m.dir(ROOT_INO, Buffer.from(path.resolve(into)))
  await m.attrs(Buffer.from(path.resolve(into)), await vfs.getattr(ROOT_INO), false)
  await m.restoreXattrs(path.resolve(into))
  return m.stats
}

const SLASH = Buffer.from('/')

class Materializer {
  readonly stats: MaterializeStats = { entries: 0, bytes: 0, xattrs: 0 }
  /** Volume inode → the first host path written for it (hard links). */
  private readonly links = new Map<Ino, Buffer>()
  /** `setfattr --restore` input, built as the tree is written (paths relative to the root). */
  private readonly xattrLines: string[] = []
  private rootLen = 0
  private readonly buf = Buffer.allocUnsafe(limits.imageVolumeCopyBufferBytes)

  constructor(
    private readonly vfs: Vfs,
    private readonly signal: AbortSignal | undefined,
  ) {}

  async dir(ino: Ino, at: Buffer): Promise<void> {
    if (this.rootLen === 0) this.rootLen = at.length
    for (const e of await this.vfs.listAll(ino)) {
      this.signal?.throwIfAborted()
      const p = Buffer.concat([at, SLASH, e.name])
      const a = await this.vfs.getattr(e.ino)
      this.stats.entries++
      const first = a.nlink > 1 && (a.mode & S_IFMT) !== S_IFDIR ? this.links.get(e.ino) : undefined
      if (first) {
        await link(first, p)
        continue
      }
      switch (a.mode & S_IFMT) {
        case S_IFDIR:
          await mkdir(p, { mode: 0o700 })
          await this.dir(e.ino, p)
          break
        case S_IFREG:
          await this.file(e.ino, a, p)
          break
        case S_IFLNK:
          await symlink(await this.vfs.readlink(e.ino), p)
          break
        case S_IFIFO:
          await runCliOk('mknod', [p.toString(), 'p'])
          break
        case S_IFCHR:
        case S_IFBLK:
          await runCliOk('mknod', [
            p.toString(),
            (a.mode & S_IFMT) === S_IFCHR ? 'c' : 'b',
            String(major(a.rdev)),
            String(minor(a.rdev)),
          ])
          break
        default:
          continue // sockets are never captured
      }
      if (a.nlink > 1 && (a.mode & S_IFMT) !== S_IFDIR) this.links.set(e.ino, p)
      await this.attrs(p, a, (a.mode & S_IFMT) === S_IFLNK)
      await this.noteXattrs(e.ino, p, (a.mode & S_IFMT) === S_IFLNK)
    }
  }

  private async file(ino: Ino, a: Attr, p: Buffer): Promise<void> {
    const fh = await open(p, 'wx', 0o600)
    try {
      for (let off = 0; off < a.size;) {
        const data = await this.vfs.read(ino, off, Math.min(this.buf.length, a.size - off))
        if (data.length === 0) break
        await fh.write(data, 0, data.length, off)
        off += data.length
        this.stats.bytes += data.length
      }
      // A file whose tail reads as zeros beyond its data (sparse) keeps its size.
      await fh.truncate(a.size)
    } finally {
      await fh.close()
    }
  }

  /** Owner, then mode (a chown clears setuid), then times (after the children of a directory). */
  async attrs(p: Buffer, a: Attr, isSymlink: boolean): Promise<void> {
    await lchown(p, a.uid, a.gid)
    if (!isSymlink) await chmod(p, a.mode & 0o7777)
    await lutimes(p, nsToDate(a.atimeNs), nsToDate(a.mtimeNs))
  }

  private async noteXattrs(ino: Ino, p: Buffer, isSymlink: boolean): Promise<void> {
    const names = await this.vfs.listxattr(ino)
    // Linux allows only trusted.* and security.* on symlinks, which setfattr would follow.
    if (names.length === 0 || isSymlink) return
    const rel = p.subarray(this.rootLen + 1)
    this.xattrLines.push(`# file: ${escapePath(rel)}`)
    for (const n of names) {
      const v = await this.vfs.getxattr(ino, n)
      this.xattrLines.push(`${escapePath(Buffer.from(n))}=0x${v.toString('hex')}`)
      this.stats.xattrs++
    }
    this.xattrLines.push('')
  }

  /** One setfattr for every attribute (Node has no setxattr); the root's own are included. */
  async restoreXattrs(root: string): Promise<void> {
    const names = await this.vfs.listxattr(ROOT_INO)
    if (names.length > 0) {
      this.xattrLines.push('# file: .')
      for (const n of names) {
        const v = await this.vfs.getxattr(ROOT_INO, n)
        this.xattrLines.push(`${escapePath(Buffer.from(n))}=0x${v.toString('hex')}`)
        this.stats.xattrs++
      }
      this.xattrLines.push('')
    }
    if (this.xattrLines.length === 0) return
    const file = path.join(path.dirname(root), `.xattrs-${path.basename(root)}`)
    await writeFile(file, this.xattrLines.join('\n') + '\n', { mode: 0o600 })
    try {
      await runCliOk('setfattr', [`--restore=${file}`], { cwd: root })
    } finally {
      await rm(file, { force: true })
    }
  }
}

/** getfattr's escaping, which setfattr --restore reads back: octal for bytes outside printable ASCII, `\\`, `=`. */
function escapePath(name: Buffer): string {
  let out = ''
  for (const b of name) {
    if (b <= 0x20 || b >= 0x7f || b === 0x5c || b === 0x3d) out += '\\' + b.toString(8).padStart(3, '0')
    else out += String.fromCharCode(b)
  }
  return out
}

function nsToDate(ns: bigint): Date {
  return new Date(Number(ns / 1_000_000n))
}

/** Linux's new_decode_dev (what stat's st_rdev holds). */
function major(rdev: number): number {
  return ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff)
}
function minor(rdev: number): number {
  return (rdev & 0xff) | ((rdev >>> 12) & 0xfff00)
}
