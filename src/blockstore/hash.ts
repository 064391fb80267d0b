// BLAKE3-256 names every chunk. The native addon (npm blake3 -> @c4312/blake3-native) runs on
// the calling thread at several GB/s; the digest is 32 bytes.
import { hash as blake3 } from 'blake3'

export const HASH_BYTES = 32

export function hashChunk(data: Uint8Array): Buffer {
  return blake3(data)
}
