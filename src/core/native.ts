// The project's N-API addon (native/*.c, built by `npm install` with node-gyp): the FastCDC gear
// loop (the write path's hottest code) and extended-attribute reads, which Node has no API for.
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export interface NativeAddon {
  /** FastCDC cut ends (see src/blockstore/chunker.ts). */
  cuts(
    buf: Uint8Array,
    used: number,
    final: boolean,
    min: number,
    avg: number,
    max: number,
    gear: Int32Array,
    hard: number,
    easy: number,
    out: Uint32Array,
  ): number
  /** llistxattr(2): the names, [] where the file system has none. Throws with `errno` otherwise. */
  listXattrs(path: string | Buffer): string[]
  /** lgetxattr(2): the value, or null when the attribute is absent. */
  getXattr(path: string | Buffer, name: string): Buffer | null
}

/** The addon, when it built and loaded; callers that cannot do without it say so. */
export const native: NativeAddon | undefined = (() => {
  try {
    // src/core and dist/core are both two levels below the package root.
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
    return createRequire(import.meta.url)(
      path.join(root, 'build', 'Release', 's0_native.node'),
    ) as NativeAddon
  } catch {
    // Not built (no compiler at `npm install`) or built for another Node ABI: the JavaScript
    // fallbacks run instead, and callers that need it (xattr reads) fail with their own message.
    return undefined
  }
})()
