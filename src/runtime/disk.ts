// A sandbox's bounded writable root: an ext4 file system in a sparse image file of exactly the
// limit, loop-mounted where the overlay's upper and work directories go. Writes past it get
// ENOSPC inside (and in the files API on the host), `df /` inside shows it, and the image never
// takes more host disk than the limit. Only images made here are ever mounted: the sandbox
// writes files through the kernel, never the image's bytes.
// An empty image is made once per size (mkfs.ext4, cached here) and copied per sandbox with
// `cp --sparse=always`: ~10 ms instead of a mkfs per start, whatever the size.
import { mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises'
import path from 'node:path'
import { assert } from '../core/assert.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { runCliOk } from './cli.js'

const IMAGE_PREFIX = 'ext4-'

/** `bytes` rounded down to the image step, within the platform bounds; `invalid_request` outside. */
export function diskImageBytes(bytes: number): number {
  if (
    !Number.isSafeInteger(bytes) ||
    bytes < limits.sandboxDiskBytesMin ||
    bytes > limits.sandboxDiskBytesMax
  )
    throw new S0Error(
      'invalid_request',
      `a sandbox disk must be ${limits.sandboxDiskBytesMin} to ${limits.sandboxDiskBytesMax} bytes (got ${bytes})`,
    )
  return bytes - (bytes % limits.sandboxDiskBytesStep)
}

/** The cache of empty images, one file per size (per runtime state directory). */
export class DiskImages {
  /** Sizes being made or copied now: shared by concurrent starts, never evicted meanwhile. */
  private readonly busy = new Map<number, { ready: Promise<string>; users: number }>()

  constructor(private readonly dir: string) {}

  /**
   * Copies an empty ext4 image of `bytes` (diskImageBytes) to `dest` (sparse: it takes almost no
   * host disk until written).
   */
  async copyEmpty(bytes: number, dest: string): Promise<void> {
    assert(bytes === diskImageBytes(bytes), 'disk size must be a whole step')
    let e = this.busy.get(bytes)
    if (!e) {
      e = { ready: this.ensure(bytes), users: 0 }
      this.busy.set(bytes, e)
    }
    e.users++
    try {
      await runCliOk('cp', ['--sparse=always', await e.ready, dest])
    } finally {
      if (--e.users === 0) this.busy.delete(bytes)
    }
  }

  /** The image of this size, made if absent (one left by an earlier process is reused). */
  private async ensure(bytes: number): Promise<string> {
    const file = path.join(this.dir, `${IMAGE_PREFIX}${bytes}.img`)
    const size = await stat(file).then(
      (st) => st.size,
      () => -1,
    )
    if (size === bytes) {
      const now = new Date()
      await utimes(file, now, now) // recently used: evicted last
      return file
    }
    await mkdir(this.dir, { recursive: true })
    await this.evict()
    const raw = `${file}.mkfs`
    const sparse = `${file}.tmp`
    try {
      await runCliOk('truncate', ['-s', String(bytes), raw])
      // -m 0: sandbox processes run as root, a root reserve would only hide space from df.
      // Inode tables and journal zeroed now (they become holes in the copy below), or the kernel
      // would zero them in the background of every sandbox's first mount.
      await runCliOk(
        'mkfs.ext4',
        ['-q', '-F', '-m', '0', '-L', 's0-disk', '-E', 'lazy_itable_init=0,lazy_journal_init=0', raw],
        { timeoutMs: limits.sandboxDiskMkfsTimeoutMs },
      )
      // mkfs zeroes by allocating (unwritten extents): a sparse copy keeps ~4 MiB of a 10 GiB image.
      await runCliOk('cp', ['--sparse=always', raw, sparse])
      await rename(sparse, file)
      return file
    } finally {
      await rm(raw, { force: true })
      await rm(sparse, { force: true })
    }
  }

  /** Keeps the cache within its bound (the sizes in use count): least recently used go first. */
  private async evict(): Promise<void> {
    const names = (await readdir(this.dir)).filter((n) => n.startsWith(IMAGE_PREFIX))
    const images: { name: string; mtimeMs: number }[] = []
    for (const name of names) {
      const bytes = Number(name.slice(IMAGE_PREFIX.length).split('.')[0])
      if (this.busy.has(bytes)) continue
      // A temp file of a mkfs cut short by a crash (those of a running one are busy).
      if (!name.endsWith('.img')) await rm(path.join(this.dir, name), { force: true })
      else images.push({ name, mtimeMs: (await stat(path.join(this.dir, name))).mtimeMs })
    }
    images.sort((a, b) => a.mtimeMs - b.mtimeMs)
    const excess = images.length + this.busy.size - limits.sandboxDiskImagesCachedMax
    for (const { name } of images.slice(0, Math.max(0, excess)))
      await rm(path.join(this.dir, name), { force: true })
  }
}

/**
 * Loop-mounts a sandbox's image at `target`. `loop`: the device clears itself at the last
 * unmount, so unmounting (even lazily) is the whole teardown. `discard`: blocks freed inside are
 * punched out of the image, back to the host. `minixdf`: statfs counts ext4's own metadata as
 * used instead of leaving it out of the size, so `df /` inside shows the limit itself.
 */
export async function mountDisk(image: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true })
  await runCliOk('mount', ['-t', 'ext4', '-o', 'loop,discard,minixdf', image, target])
}
