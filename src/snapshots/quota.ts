// A volume's usage against its quotas: bytes (no_space, ENOSPC) and inodes (quota_exceeded,
// EDQUOT), counted in memory by the single writer and recorded with every metadata commit.
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { NAME_BYTES_MAX } from './types.js'

export interface StatFs {
  blockSize: number
  blocks: number
  blocksFree: number
  files: number
  filesFree: number
  nameMax: number
}

/** What statfs reports for a volume without a quota (not a bound: nothing is counted up to it). */
const UNLIMITED = 2 ** 50

export class Quota {
  usedBytes: number
  usedInodes: number

  constructor(
    private readonly quotaBytes: number | null,
    private readonly quotaInodes: number | null,
    used: { usedBytes: number; usedInodes: number },
  ) {
    this.usedBytes = used.usedBytes
    this.usedInodes = used.usedInodes
  }

  /** After a snapshot, fork or restore: the counters the volume row holds now. */
  reset(used: { usedBytes: number; usedInodes: number }): void {
    this.usedBytes = used.usedBytes
    this.usedInodes = used.usedInodes
  }

  checkInode(): void {
    if (this.quotaInodes !== null && this.usedInodes + 1 > this.quotaInodes) {
      throw new S0Error('quota_exceeded', `inode quota of ${this.quotaInodes} reached`)
    }
  }

  checkBytes(delta: number): void {
    if (delta > 0 && this.quotaBytes !== null && this.usedBytes + delta > this.quotaBytes) {
      throw new S0Error('no_space', `byte quota of ${this.quotaBytes} reached`)
    }
  }

  statfs(): StatFs {
    const block = limits.statBlockSizeBytes
    const bytes = this.quotaBytes ?? UNLIMITED
    const inodes = this.quotaInodes ?? UNLIMITED
    return {
      blockSize: block,
      blocks: Math.floor(bytes / block),
      blocksFree: Math.max(0, Math.floor((bytes - this.usedBytes) / block)),
      files: inodes,
      filesFree: Math.max(0, inodes - this.usedInodes),
      nameMax: NAME_BYTES_MAX,
    }
  }
}
