// Types for fuse-native 2.2.6 (the package ships none). Only what src/fuse uses.
declare module 'fuse-native' {
  type Cb = (err: number) => void
  type CbV<T> = (err: number, value?: T) => void

  export interface FuseStat {
    mode: number
    uid: number
    gid: number
    size: number
    dev?: number
    nlink: number
    ino: number
    rdev?: number
    blksize?: number
    blocks?: number
    /** Milliseconds since the epoch (the binding carries no finer precision). */
    atime: number
    mtime: number
    ctime: number
  }

  export interface FuseStatfs {
    bsize: number
    frsize: number
    blocks: number
    bfree: number
    bavail: number
    files: number
    ffree: number
    favail: number
    fsid: number
    flag: number
    namemax: number
  }

  export interface FuseOperations {
    init?(cb: Cb): void
    statfs?(path: string, cb: CbV<FuseStatfs>): void
    getattr?(path: string, cb: CbV<FuseStat>): void
    fgetattr?(path: string, fd: number, cb: CbV<FuseStat>): void
    access?(path: string, mode: number, cb: Cb): void
    flush?(path: string, fd: number, cb: Cb): void
    fsync?(path: string, datasync: number, fd: number, cb: Cb): void
    fsyncdir?(path: string, datasync: number, fd: number, cb: Cb): void
    /** Only `mode` (d_type) and `ino` of each stat reach the kernel (FUSE 2 has no readdirplus). */
    readdir?(
      path: string,
      cb: (err: number, names?: string[], stats?: Array<Partial<FuseStat>>) => void,
    ): void
    truncate?(path: string, size: number, cb: Cb): void
    ftruncate?(path: string, fd: number, size: number, cb: Cb): void
    utimens?(path: string, atime: number, mtime: number, cb: Cb): void
    readlink?(path: string, cb: CbV<string>): void
    chown?(path: string, uid: number, gid: number, cb: Cb): void
    chmod?(path: string, mode: number, cb: Cb): void
    mknod?(path: string, mode: number, dev: number, cb: Cb): void
    setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Cb): void
    getxattr?(path: string, name: string, position: number, cb: CbV<Buffer | null>): void
    listxattr?(path: string, cb: CbV<string[]>): void
    removexattr?(path: string, name: string, cb: Cb): void
    open?(path: string, flags: number, cb: CbV<number>): void
    opendir?(path: string, flags: number, cb: CbV<number>): void
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void): void
    release?(path: string, fd: number, cb: Cb): void
    releasedir?(path: string, fd: number, cb: Cb): void
    create?(path: string, mode: number, cb: CbV<number>): void
    unlink?(path: string, cb: Cb): void
    rename?(src: string, dest: string, cb: Cb): void
    link?(src: string, dest: string, cb: Cb): void
    symlink?(target: string, path: string, cb: Cb): void
    mkdir?(path: string, mode: number, cb: Cb): void
    rmdir?(path: string, cb: Cb): void
  }

  export interface FuseOptions {
    force?: boolean
    mkdir?: boolean
    debug?: boolean
    allowOther?: boolean
    allowRoot?: boolean
    autoUnmount?: boolean
    defaultPermissions?: boolean
    maxRead?: number
    fsname?: string
    subtype?: string
    kernelCache?: boolean
    autoCache?: boolean
    entryTimeout?: number
    attrTimeout?: number
    acAttrTimeout?: number
    /** Per-operation timeout in ms (false: none). */
    timeout?: number | false
  }

  class Fuse {
    constructor(mnt: string, ops: FuseOperations, opts?: FuseOptions)
    readonly mnt: string
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    protected _fuseOptions(): string
    static unmount(mnt: string, cb: (err: Error | null) => void): void
    static readonly [errno: string]: number
  }
  export default Fuse
}
