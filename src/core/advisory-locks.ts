// Every Postgres advisory lock key s0 takes, in one registry: two subsystems that picked the same
// number would serialise on each other (GC and first-start bootstrap once did). Checked at load.
import { assert } from './assert.js'

export const ADVISORY_LOCK_KEYS = {
  /** Schema migrations, a transaction lock (src/core/migrate.ts). */
  migrations: 0x5330_0001,
  /**
   * A GC run, a session lock held for the whole run (src/blockstore/gc.ts). Its value is the
   * one GC always had, so a GC of an older s0 on the same database still excludes this one.
   */
  gc: 0x5330_0002,
  /** First-start bootstrap of the default team and admin key, a transaction lock (src/api/auth.ts). */
  bootstrap: 0x5330_0003,
  /** One batch of sandbox events, a transaction lock: batches commit in cursor order (core/events.ts). */
  eventAppend: 0x5330_0010,
  /** One batch of sandbox logs, a transaction lock, for the same reason (sandboxes/logs.ts). */
  logAppend: 0x5330_0011,
  /** Claim admission of one team, a transaction lock with the team's hash as second key (src/sandboxes/claim-quota.ts). */
  quotaAdmission: 0x5330_0004,
  /** One usage sampler at a time across servers sharing the database, a transaction lock (src/accounts/usage.ts). */
  usageSampler: 0x5330_0005,
  /** Placement of one claim across the live nodes, a transaction lock (src/sandboxes/cluster/placement.ts). */
  placement: 0x5330_0006,
  /** Declaring nodes dead and handing their sandboxes over, a transaction lock (src/sandboxes/cluster/reaper.ts). */
  nodeReaper: 0x5330_0007,
} as const

export type AdvisoryLockName = keyof typeof ADVISORY_LOCK_KEYS

const keys = Object.values(ADVISORY_LOCK_KEYS)
assert(new Set(keys).size === keys.length, 'two advisory locks share a key')
assert(
  keys.every((k) => Number.isSafeInteger(k) && k > 0 && k <= 0x7fff_ffff),
  'advisory lock keys must be positive int4 values',
)
