// S0Error → the negative errno fuse-native expects. The catalogue names each code's errno, so
// the mapping lives in one place (src/core/errors.ts) for FUSE, the files API and the VFS.
import { createRequire } from 'node:module'
import { AssertionError } from '../core/assert.js'
import { S0Error } from '../core/errors.js'
import type { Logger } from '../core/log.js'

const require = createRequire(import.meta.url)
const ERRNO = require('node:os').constants.errno as Record<string, number>

/**
 * -errno for a failure; unexpected errors are logged and become EIO (never wrong data). A bug
 * (AssertionError) is no failure to report: it is thrown again, never turned into EIO.
 */
export function toErrno(err: unknown, log: Logger, op: string, path: string): number {
  if (err instanceof AssertionError) throw err
  if (err instanceof S0Error) {
    const n = ERRNO[err.errno]
    if (n !== undefined) return -n
  }
  log.error('fuse operation failed unexpectedly', { op, path, err })
  if (process.env.S0_FUSE_TRACE) console.error('fuse op failed', op, path, err)
  return -(ERRNO.EIO as number)
}
