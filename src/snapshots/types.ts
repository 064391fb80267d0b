// Inodes as the volume engine sees them, and the POSIX constants it needs.
import type { Ino } from '../core/ids.js'
import type { Extent } from './extents.js'

export const S_IFMT = 0o170000
export const S_IFREG = 0o100000
export const S_IFDIR = 0o040000
export const S_IFLNK = 0o120000
export const S_IFIFO = 0o010000
export const S_IFCHR = 0o020000
export const S_IFBLK = 0o060000
export const S_IFSOCK = 0o140000
export const S_ISGID = 0o2000

export const ROOT_INO = 1 as Ino
export const NAME_BYTES_MAX = 255
export const SYMLINK_BYTES_MAX = 4096
export const XATTR_NAME_BYTES_MAX = 255
export const XATTR_VALUE_BYTES_MAX = 64 * 1024

export const RENAME_NOREPLACE = 1
export const RENAME_EXCHANGE = 2

export interface Inode {
  ino: Ino
  mode: number
  uid: number
  gid: number
  nlink: number
  size: number
  rdev: number
  atimeNs: bigint
  mtimeNs: bigint
  ctimeNs: bigint
  /** Directories: the parent directory. */
  parentIno: Ino | null
  /** Symlinks: the target bytes. */
  target: Buffer | null
  xattrs: Map<string, Buffer>
  extents: Extent[]
  /**
   * Regular files stored inline: bytes [0, inline.length) of the file, kept in the inode row
   * (the rest up to `size` reads as zeros). Never set together with extents, never longer than
   * limits.inlineFileBytesMax when written (older rows may be longer and still read), never empty.
   */
  inline: Buffer | null
}

export type Attr = Omit<Inode, 'xattrs' | 'extents' | 'target' | 'inline'>

export function isDir(mode: number): boolean {
  return (mode & S_IFMT) === S_IFDIR
}
export function isReg(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG
}
export function isLnk(mode: number): boolean {
  return (mode & S_IFMT) === S_IFLNK
}

export function kindOf(mode: number): number {
  return (mode & S_IFMT) >> 12
}

let lastNs = 0n

/**
 * The time for a change, in ns: the clock's milliseconds, made strictly increasing within the
 * process, so that two changes never share a ctime (workspace sync tells versions apart by it).
 */
export function nowNs(): bigint {
  const t = BigInt(Date.now()) * 1_000_000n
  lastNs = t > lastNs ? t : lastNs + 1n
  return lastNs
}

export function attrOf(i: Inode): Attr {
  return {
    ino: i.ino,
    mode: i.mode,
    uid: i.uid,
    gid: i.gid,
    nlink: i.nlink,
    size: i.size,
    rdev: i.rdev,
    atimeNs: i.atimeNs,
    mtimeNs: i.mtimeNs,
    ctimeNs: i.ctimeNs,
    parentIno: i.parentIno,
  }
}

export interface DirEntry {
  name: Buffer
  ino: Ino
  /** mode >> 12 */
  kind: number
}
