// The `fuse-native` transport: the fuse-native package (libfuse 2.9, path-based, its own
// multi-threaded loop), kept for hosts without libfuse 3 and because the product's owner named
// it. What FUSE 2 through this binding cannot do (docs/ARCHITECTURE.md, "FUSE transports"): the
// caller's uid/gid (new files get the mount's owner), nanosecond timestamps (milliseconds),
// 64-bit inode numbers (truncated), cache invalidation (so attributes are not cached: every
// stat asks us), readdirplus and requests over 128 KiB.
import Fuse from 'fuse-native'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { VolumeFuseOps } from './operations.js'
import type { FuseSession, FuseTransport } from './transport.js'

/** fuse-native has no option for these: they go through its private option string. */
class S0Fuse extends Fuse {
  constructor(
    mnt: string,
    ops: ConstructorParameters<typeof Fuse>[1],
    opts: ConstructorParameters<typeof Fuse>[2],
    private readonly extra: string[],
  ) {
    super(mnt, ops, opts)
  }

  protected override _fuseOptions(): string {
    const base = super._fuseOptions()
    const extra = this.extra.join(',')
    return base ? `${base},${extra}` : `-o${extra}`
  }
}

export const fuseNativeTransport: FuseTransport = {
  name: 'fuse-native',
  unavailable: () => null,
  async mount(vfs, dir, o, log): Promise<FuseSession> {
    const owner = o.owner === 'caller' ? { uid: 0, gid: 0 } : o.owner
    const ops = new VolumeFuseOps({ vfs, log, readOnly: o.readOnly, durability: o.durability, ...owner })
    const extra = [
      // 128 KiB write requests instead of 4 KiB (libfuse 2.9 caps max_write there).
      'big_writes',
      `max_write=${limits.fuseIoRequestBytesMax}`,
      `max_read=${limits.fuseIoRequestBytesMax}`,
      // st_ino is ours, so hard links share one (rsync -H, tar, git rely on it).
      'use_ino',
      'readdir_ino',
      `entry_timeout=${o.entryTimeoutS}`,
      `attr_timeout=${o.attrTimeoutS}`,
      `negative_timeout=${o.negativeTimeoutS}`,
      `fsname=s0:${vfs.volumeId}`,
      'subtype=s0',
      'default_permissions',
    ]
    if (o.allowOther) extra.push('allow_other')
    if (o.autoUnmount) extra.push('auto_unmount')
    if (o.keepCache) extra.push(o.immutable ? 'kernel_cache' : 'auto_cache')
    if (o.readOnly) extra.push('ro')
    if (process.env.S0_FUSE_DEBUG) extra.push('debug')
    const fuse = new S0Fuse(dir, ops.operations(), { timeout: false }, extra)
    await new Promise<void>((res, rej) =>
      fuse.mount((err) =>
        err
          ? rej(new S0Error('mount_failed', `mounting ${dir} failed: ${err.message}`, { cause: err }))
          : res(),
      ),
    )
    let unmounting: Promise<void> | null = null
    return {
      transport: 'fuse-native',
      get stats() {
        return ops.stats
      },
      get openHandles() {
        return ops.openHandles
      },
      unmount() {
        unmounting ??= new Promise<void>((res, rej) =>
          fuse.unmount((err) =>
            err ? rej(new S0Error('mount_failed', `unmounting ${dir} failed: ${err.message}`)) : res(),
          ),
        )
        return unmounting
      },
    }
  },
}
