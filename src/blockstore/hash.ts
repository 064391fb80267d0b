// BLAKE3-256 names every chunk; the digest is 32 bytes. The project's addon (native/blake3, the
// official C implementation with its SIMD kernels) hashes in one N-API call per chunk; the npm
// blake3 package is the fallback when the addon did not build. Both give the same digests (a
// test checks it), but the package wraps every hash in a stream.Transform (~10 µs a call), which
// made small files hash at ~600 MiB/s.
import { hash as blake3 } from 'blake3'
import { native } from '../core/native.js'

export const HASH_BYTES = 32

/** The addon's hashInto, unless S0_NATIVE_HASH=0 (tests compare both paths). */
const hashInto =
  process.env['S0_NATIVE_HASH'] === '0' || typeof native?.hashInto !== 'function'
    ? undefined
    : native.hashInto

export function hashChunk(data: Uint8Array): Buffer {
  if (hashInto === undefined) return blake3(data)
  const out = Buffer.allocUnsafe(HASH_BYTES)
  hashInto(data, out, 0)
  return out
}

/** The npm package's BLAKE3 (the fallback), for tests that compare it with the addon's. */
export function hashChunkPortable(data: Uint8Array): Buffer {
  return blake3(data)
}
