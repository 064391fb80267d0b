// The project's N-API addon (native/*.c, built by `npm install` with node-gyp): the FastCDC gear
// loop and BLAKE3 (the write path's hottest code), and extended-attribute reads and a redirected
// connection's original destination, which Node has no API for.
import { createRequire } from 'node:module'
import type net from 'node:net'
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
  // A build from before BLAKE3 was added lacks the next two; callers check (npm install rebuilds).
  /** As cuts, and the BLAKE3-256 of chunk k into hashes[32k, 32k+32); stops when either is full. */
  cutAndHash(
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
    hashes: Uint8Array,
  ): number
  /** The BLAKE3-256 of `data` into out[at, at+32). */
  hashInto(data: Uint8Array, out: Uint8Array, at: number): void
  /** llistxattr(2): the names, [] where the file system has none. Throws with `errno` otherwise. */
  listXattrs(path: string | Buffer): string[]
  /** lgetxattr(2): the value, or null when the attribute is absent. */
  getXattr(path: string | Buffer, name: string): Buffer | null
  /**
   * getsockopt(SOL_IP, SO_ORIGINAL_DST) on an accepted TCP socket (`socket._handle.fd`): where
   * the client connected before an nftables `redirect` / `dnat` sent it to us (for a connection
   * that was not NATed: its own local address and port). IPv4 only. Throws with `errno`:
   * ENOENT when conntrack has no entry for it, ENOPROTOOPT for a socket that is not TCP/IPv4.
   */
  originalDst(fd: number): { address: string; port: number }
}

/** Where node-gyp put one of the project's addons (src/core and dist/core are both two levels below the package root). */
export function addonPath(file: string): string {
  return path.join(
    path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..'),
    'build',
    'Release',
    file,
  )
}

/** This addon's file: worker threads load the same one (src/blockstore/hash-pool.ts). */
export const nativeAddonPath = addonPath('s0_native.node')

/** The addon, when it built and loaded; callers that cannot do without it say so. */
export const native: NativeAddon | undefined = (() => {
  try {
    return createRequire(import.meta.url)(nativeAddonPath) as NativeAddon
  } catch {
    // Not built (no compiler at `npm install`) or built for another Node ABI: the JavaScript
    // fallbacks run instead, and callers that need it (xattr reads) fail with their own message.
    return undefined
  }
})()

/**
 * The file descriptor of a connected TCP socket (Node keeps it on its internal handle; Linux
 * only), for originalDst. Throws when the socket has none (closed, or not a TCP handle).
 */
export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no file descriptor')
  return fd
}
