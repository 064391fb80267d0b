// Extracts a tar stream into a volume directory (the files API's archive import). Bad input
// changes nothing: the archive is extracted into a hidden staging directory in the volume root
// (`.s0-import-<random>`), checked whole, and only then moved into place.
//
// Semantics:
// - Entry names are relative: an absolute name, a `..` component, NUL, a name over 255 bytes or
//   a path over 4096 bytes is refused (invalid_path, naming the entry). `.` components and the
//   archive's own root entry (`./`) are ignored; the destination keeps its attributes.
// - Symlinks may not point outside the destination: the target may not be absolute, and resolved
//   from the link's directory, following the archive's own symlinks, it may not climb above the
//   destination. Entries are never written through a symlink (a path through one is refused).
// - Hard links must name a file or symlink extracted earlier from the same archive.
// - Files, directories and symlinks keep the archive's permission bits and mtime; the owner is the
//   volume's default uid/gid (the archive's ids belong to the machine that made it).
// - A later entry with the same name replaces an earlier one (as `tar -x` does), except that
//   nothing replaces a directory; directories with the same name merge.
// - Moving into place: a new name is renamed in; an existing file or symlink is replaced by the
//   archive's entry (atomically per name); an existing directory merges with the archive's
//   directory and takes its mode and mtime; an existing file or symlink where the archive has a
//   directory is removed first. An existing directory where the archive has a file is refused
//   (path_not_file) before anything moves.
// - Counts: `files` counts regular files and hard links, `directories` and `symlinks` their
//   entries, `bytes` the file data. Devices, FIFOs, sparse and other entry types are skipped and
//   counted nowhere (a volume has no use for them), but they count against the entry limit.
// - Limits: at most archiveEntriesMax entries (quota_exceeded) and fileUploadBytesMax bytes of
//   entry data in all (file_too_large); the volume's quotas apply as to any write.
// The move into place is not atomic against a crash or a concurrent writer of the same names.
import type { Ino } from '../core/ids.js'
import { randomBytes } from 'node:crypto'
import { S0Error } from '../core/errors.js'
import { limits as defaultLimits } from '../core/limits.js'
import { joinPath, mkdirp, PATH_BYTES_MAX, removeTree } from './paths.js'
import { readTar, type TarEntry } from './tar.js'
import { isDir, NAME_BYTES_MAX, ROOT_INO, SYMLINK_BYTES_MAX, type Attr } from './types.js'
import type { Vfs } from './vfs.js'

export interface ArchiveImportLimits {
  archiveEntriesMax: number
  fileUploadBytesMax: number
}

export interface ArchiveImportResult {
  files: number
  directories: number
  symlinks: number
  bytes: number
}

export interface Owner {
  uid: number
  gid: number
}

const STAGING_PREFIX = '.s0-import-'

/** Extracts `stream` (a tar) under `destParts`, created if missing. */
export async function importArchive(
  vfs: Vfs,
  destParts: Buffer[],
  stream: AsyncIterable<Buffer | Uint8Array>,
  owner: Owner,
  limits: ArchiveImportLimits = defaultLimits,
): Promise<ArchiveImportResult> {
  await existingDir(vfs, destParts) // fail early on a destination that cannot be a directory
  const stagingName = Buffer.from(STAGING_PREFIX + randomBytes(8).toString('hex'))
  const staging = await vfs.mkdir(ROOT_INO, stagingName, 0o700, owner)
  const x = new Extraction(vfs, owner, limits, staging.ino)
  try {
    for await (const entry of readTar(stream)) await x.add(entry)
    x.checkSymlinks()
    await x.applyDirAttrs()
    await x.checkConflicts(staging.ino, await existingDir(vfs, destParts), destParts)
    const dest = await mkdirp(vfs, destParts, owner)
    await x.merge(staging.ino, dest.ino)
    await vfs.rmdir(ROOT_INO, stagingName)
    return x.counts
  } catch (err) {
    // The original error is what the caller needs; a failed cleanup leaves a hidden directory.
    await removeTree(vfs, ROOT_INO, stagingName).catch(() => undefined)
    throw err
  }
}

/**
 * The destination directory if it exists; null if a suffix of it is missing. A component that is
 * not a directory (a symlink included: they are not followed) is path_not_directory.
 */
async function existingDir(vfs: Vfs, parts: Buffer[]): Promise<Attr | null> {
  let a = await vfs.getattr(ROOT_INO)
  for (let k = 0; k < parts.length; k++) {
    const next = await lookupOrNull(vfs, a.ino, parts[k] as Buffer)
    if (!next) return null
    if (!isDir(next.mode))
      throw new S0Error('path_not_directory', `${joinPath(parts.slice(0, k + 1))} is not a directory`)
    a = next
  }
  return a
}

async function lookupOrNull(vfs: Vfs, dir: Ino, name: Buffer): Promise<Attr | null> {
  try {
    return await vfs.lookup(dir, name)
  } catch (err) {
    if (err instanceof S0Error && err.code === 'file_not_found') return null
    throw err
  }
}

function refuse(path: string, why: string): S0Error {
  return new S0Error('invalid_path', `archive entry ${JSON.stringify(path)}: ${why}`)
}

/** The components of a relative entry name; `what` is the entry name for messages. */
function entryParts(path: string, what: string): string[] {
  if (path === '') throw refuse(what, 'empty name')
  if (path.startsWith('/')) throw refuse(what, 'absolute paths are not allowed')
  if (path.includes('\0')) throw refuse(what, 'name contains NUL')
  if (Buffer.byteLength(path) > PATH_BYTES_MAX) throw refuse(what, `path is over ${PATH_BYTES_MAX} bytes`)
  const parts: string[] = []
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') throw refuse(what, '".." components are not allowed')
    if (Buffer.byteLength(seg) > NAME_BYTES_MAX) throw refuse(what, `a name is over ${NAME_BYTES_MAX} bytes`)
    parts.push(seg)
  }
  return parts
}

/**
 * Whether `target`, resolved from the directory `dir` (components below the destination),
 * climbs above the destination. Intermediate components that are symlinks in `links` (keyed by
 * their path below the destination) are followed; anything else is taken as a directory.
 */
function escapes(dir: readonly string[], target: string, links: ReadonlyMap<string, string>): boolean {
  if (target.startsWith('/')) return true
  // Each stack element is the full key of that prefix, so no join per step.
  const stack: string[] = []
  for (const c of dir) stack.push(stack.length === 0 ? c : `${stack[stack.length - 1]}/${c}`)
  const todo = target.split('/').reverse()
  let hops = 0
  while (todo.length > 0) {
    const c = todo.pop() as string
    if (c === '' || c === '.') continue
    if (c === '..') {
      if (stack.length === 0) return true
      stack.pop()
      continue
    }
    const key = stack.length === 0 ? c : `${stack[stack.length - 1]}/${c}`
    const via = todo.length > 0 ? links.get(key) : undefined // the last link is checked on its own
    if (via === undefined) {
      stack.push(key)
      continue
    }
    // A chain longer than archiveSymlinkHopsMax is a loop (or an attempt to look like one).
    if (++hops > defaultLimits.archiveSymlinkHopsMax || via.startsWith('/')) return true
    for (const t of via.split('/').reverse()) todo.push(t)
  }
  return false
}

const NO_LINKS: ReadonlyMap<string, string> = new Map()

/** The state of one import: what is staged where, counts and budgets. */
class Extraction {
  readonly counts: ArchiveImportResult = { files: 0, directories: 0, symlinks: 0, bytes: 0 }
  /** Staged directories by path below the destination ('' is the staging root). */
  private readonly dirs = new Map<string, Ino>()
  /** Staged files and symlinks by path: hard-link targets. */
  private readonly nodes = new Map<string, Ino>()
  /** Staged symlinks by path, with their targets. */
  private readonly links = new Map<string, string>()
  /** Mode and mtime of the directories the archive names, applied once their contents are in. */
  private readonly dirAttrs = new Map<Ino, { mode: number; mtimeNs: bigint }>()
  private entries = 0
  private dataBytes = 0

  constructor(
    private readonly vfs: Vfs,
    private readonly owner: Owner,
    private readonly limits: ArchiveImportLimits,
    stagingIno: Ino,
  ) {
    this.dirs.set('', stagingIno)
  }

  async add(e: TarEntry): Promise<void> {
    if (++this.entries > this.limits.archiveEntriesMax)
      throw new S0Error(
        'quota_exceeded',
        `the archive has more than ${this.limits.archiveEntriesMax} entries`,
      )
    // Skipped entries' data counts too, so no archive is an unbounded stream.
    if (this.dataBytes + e.size > this.limits.fileUploadBytesMax)
      throw new S0Error(
        'file_too_large',
        `the archive holds more than ${this.limits.fileUploadBytesMax} bytes`,
      )
    this.dataBytes += e.size
    if (e.type === 'other') return
    const parts = entryParts(e.path, e.path)
    if (parts.length === 0) {
      if (e.type !== 'dir') throw refuse(e.path, 'only a directory may name the destination itself')
      return
    }
    const key = parts.join('/')
    const parent = await this.parentOf(parts, e.path)
    const name = Buffer.from(parts[parts.length - 1] as string)
    if (e.type === 'dir') await this.addDir(e, key, parent, name)
    else if (e.type === 'file') await this.addFile(e, key, parent, name)
    else if (e.type === 'symlink') await this.addSymlink(e, parts, key, parent, name)
    else await this.addHardlink(e, parts, key, parent, name)
  }

  /** The staged directory that holds `parts`, made (0755, no attributes) where missing. */
  private async parentOf(parts: string[], path: string): Promise<Ino> {
    let ino = this.dirs.get('') as Ino
    let key = ''
    for (let k = 0; k < parts.length - 1; k++) {
      const seg = parts[k] as string
      key = key === '' ? seg : `${key}/${seg}`
      const known = this.dirs.get(key)
      if (known !== undefined) {
        ino = known
        continue
      }
      if (this.nodes.has(key)) throw refuse(path, `${key} is not a directory in the archive`)
      ino = (await this.vfs.mkdir(ino, Buffer.from(seg), 0o755, this.owner)).ino
      this.dirs.set(key, ino)
    }
    return ino
  }

  /** An earlier file or symlink of the same name gives way; a directory never does. */
  private async makeRoom(path: string, key: string, parent: Ino, name: Buffer): Promise<void> {
    if (this.dirs.has(key)) throw refuse(path, 'replaces a directory of the archive')
    if (!this.nodes.has(key)) return
    await this.vfs.unlink(parent, name)
    this.nodes.delete(key)
    this.links.delete(key)
  }

  private async addDir(e: TarEntry, key: string, parent: Ino, name: Buffer): Promise<void> {
    let ino = this.dirs.get(key)
    if (ino === undefined) {
      await this.makeRoom(e.path, key, parent, name)
      ino = (await this.vfs.mkdir(parent, name, e.mode, this.owner)).ino
      this.dirs.set(key, ino)
    }
    this.dirAttrs.set(ino, { mode: e.mode, mtimeNs: e.mtimeNs })
    this.counts.directories++
  }

  private async addFile(e: TarEntry, key: string, parent: Ino, name: Buffer): Promise<void> {
    await this.makeRoom(e.path, key, parent, name)
    const { ino } = await this.vfs.create(parent, name, e.mode, this.owner)
    this.nodes.set(key, ino)
    this.vfs.open(ino)
    let off = 0
    try {
      for await (const piece of e.body) {
        await this.vfs.write(ino, off, piece)
        off += piece.length
      }
    } catch (err) {
      // The write's error is the one to report; this file goes with the staging directory next.
      await this.vfs.release(ino).catch(() => undefined)
      throw err
    }
    await this.vfs.release(ino) // flushes, which stamps mtime: set the archive's mtime after it
    await this.vfs.setattr(ino, { mtimeNs: e.mtimeNs })
    this.counts.files++
    this.counts.bytes += off
  }

  private checkTarget(
    path: string,
    parts: string[],
    target: string,
    links: ReadonlyMap<string, string>,
  ): void {
    if (target === '' || target.includes('\0') || Buffer.byteLength(target) > SYMLINK_BYTES_MAX)
      throw refuse(path, `symlink target must be 1..${SYMLINK_BYTES_MAX} bytes without NUL`)
    if (target.startsWith('/')) throw refuse(path, `symlink target ${JSON.stringify(target)} is absolute`)
    if (escapes(parts.slice(0, -1), target, links))
      throw refuse(path, `symlink target ${JSON.stringify(target)} points outside the destination`)
  }

  private async addSymlink(
    e: TarEntry,
    parts: string[],
    key: string,
    parent: Ino,
    name: Buffer,
  ): Promise<void> {
    const target = e.linkTarget ?? ''
    // The archive's other links may not exist yet: chains are checked once all are in.
    this.checkTarget(e.path, parts, target, NO_LINKS)
    await this.makeRoom(e.path, key, parent, name)
    const { ino } = await this.vfs.symlink(parent, name, Buffer.from(target), this.owner)
    await this.vfs.setattr(ino, { mtimeNs: e.mtimeNs })
    this.nodes.set(key, ino)
    this.links.set(key, target)
    this.counts.symlinks++
  }

  private async addHardlink(
    e: TarEntry,
    parts: string[],
    key: string,
    parent: Ino,
    name: Buffer,
  ): Promise<void> {
    const targetKey = entryParts(e.linkTarget ?? '', e.path).join('/')
    if (targetKey === key) return // a link to itself: the name is already there
    const ino = this.nodes.get(targetKey)
    if (ino === undefined) {
      const why = this.dirs.has(targetKey) ? 'is a directory' : 'is not an earlier entry of the archive'
      throw refuse(e.path, `hard link target ${JSON.stringify(e.linkTarget)} ${why}`)
    }
    // A second name for a symlink resolves from its own directory: check it from there.
    const target = this.links.get(targetKey)
    if (target !== undefined) this.checkTarget(e.path, parts, target, NO_LINKS)
    await this.makeRoom(e.path, key, parent, name)
    if (target !== undefined) this.links.set(key, target)
    await this.vfs.hardlink(ino, parent, name)
    this.nodes.set(key, ino)
    this.counts.files++
  }

  /** Every symlink again, now following the archive's other symlinks (a chain could escape). */
  checkSymlinks(): void {
    for (const [key, target] of this.links) {
      const parts = key.split('/')
      if (escapes(parts.slice(0, -1), target, this.links))
        throw refuse(key, `symlink target ${JSON.stringify(target)} points outside the destination`)
    }
  }

  async applyDirAttrs(): Promise<void> {
    for (const [ino, a] of this.dirAttrs) await this.vfs.setattr(ino, a)
  }

  /** Refuses, before anything moves, an archive file where the volume has a directory. */
  async checkConflicts(staged: Ino, dest: Attr | null, destParts: Buffer[]): Promise<void> {
    if (!dest) return
    for (let after: Buffer | null = null; ;) {
      const page = await this.vfs.readdir(staged, after, defaultLimits.readdirPageEntries)
      for (const e of page) {
        const there = await lookupOrNull(this.vfs, dest.ino, e.name)
        if (!there || !isDir(there.mode)) continue
        const path = [...destParts, e.name]
        if (!isDir(e.kind << 12))
          throw new S0Error('path_not_file', `${joinPath(path)} is a directory; the archive has a file there`)
        await this.checkConflicts(e.ino, there, path)
      }
      if (page.length < defaultLimits.readdirPageEntries) return
      after = (page[page.length - 1] as { name: Buffer }).name
    }
  }

  /** Moves the staged tree into `dest` (see the file comment); empties `staged`. */
  async merge(staged: Ino, dest: Ino): Promise<void> {
    for (;;) {
      // Every entry handled leaves `staged`, so each page starts from the beginning.
      const page = await this.vfs.readdir(staged, null, defaultLimits.readdirPageEntries)
      if (page.length === 0) return
      for (const e of page) {
        const there = await lookupOrNull(this.vfs, dest, e.name)
        const stagedDir = isDir(e.kind << 12)
        if (there && stagedDir && isDir(there.mode)) {
          await this.merge(e.ino, there.ino)
          const a = this.dirAttrs.get(e.ino)
          if (a) await this.vfs.setattr(there.ino, a)
          await this.vfs.rmdir(staged, e.name)
          continue
        }
        // tar replaces a file or symlink by a directory; rename cannot, so it goes first.
        if (there && stagedDir) await this.vfs.unlink(dest, e.name)
        await this.vfs.rename(staged, e.name, dest, e.name)
      }
    }
  }
}
