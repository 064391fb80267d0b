// Claim admission against the team's quotas: active_sandboxes (a level) and sandbox_claims (a
// count per fixed window). Checked and counted in one transaction under a per-team advisory lock,
// which also inserts a slot that counts as an active sandbox until the claim has its row (or
// failed), so two concurrent claims at the limit cannot both pass, on one server or several.
import { ADVISORY_LOCK_KEYS } from '../core/advisory-locks.js'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { randomHexId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import { inTurn } from '../core/turns.js'
import { ACTIVE_SANDBOX_STATUSES, readQuotas, windowStart } from '../core/quota-dimensions.js'

export interface ClaimSlot {
  /** The slot's row: a claim deletes it in the statement that inserts its sandbox. */
  readonly id: string
  /** Ends the admission (the sandbox row, if any, now counts by itself). Never throws. */
  release(): Promise<void>
}

/**
 * Admits one new sandbox (a claim or a fork) of `teamId` or throws `quota_exceeded` naming the
 * dimension, having changed nothing. The caller releases the slot once its row exists or it failed.
 */
export async function admitClaim(db: Db, teamId: TeamId): Promise<ClaimSlot> {
  const slotId = `slot-${randomHexId(8)}`
  // One admission per team at a time in this process (core/turns.ts): the rest wait off the pool.
  await inTurn(db, `admit:${teamId}`, () => admit(db, teamId, slotId))
  return {
    id: slotId,
    release: async () => {
      // A slot left behind (the database went away) stops counting at its expiry.
      await db.query('DELETE FROM quota_claim_slots WHERE id = $1', [slotId]).catch(() => undefined)
    },
  }
}

async function admit(db: Db, teamId: TeamId, slotId: string): Promise<void> {
  await db.tx(async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [
      ADVISORY_LOCK_KEYS.quotaAdmission,
      teamId,
    ])
    const quotas = await readQuotas(c, teamId)
    const active = quotas.get('active_sandboxes')
    if (active?.limit != null) {
      const { rows } = await c.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM sandboxes WHERE team_id = $1 AND status = ANY($2::text[]))::int
              + (SELECT count(*) FROM quota_claim_slots WHERE team_id = $1 AND expires_at > now())::int AS n`,
        [teamId, ACTIVE_SANDBOX_STATUSES],
      )
      const n = rows[0]?.n ?? 0
      if (n >= active.limit)
        throw new S0Error(
          'quota_exceeded',
          `quota active_sandboxes exceeded: the team has ${n} active sandboxes (running or paused) of ${active.limit}; delete one first`,
          { details: { dimension: 'active_sandboxes', limit: active.limit, current: n }, retryAfterS: 5 },
        )
    }
    const claims = quotas.get('sandbox_claims')
    const intervalMs = claims?.intervalMs ?? limits.quotaClaimsIntervalMsDefault
    const now = Date.now()
    const start = windowStart(now, intervalMs)
    if (claims?.limit != null) {
      const { rows } = await c.query<{ value: number }>(
        `SELECT value FROM quota_counters WHERE team_id = $1 AND dimension = 'sandbox_claims' AND window_start = $2`,
        [teamId, start],
      )
      const n = rows[0]?.value ?? 0
      if (n >= claims.limit) {
        const retryAfterS = Math.max(1, Math.ceil((start.getTime() + intervalMs - now) / 1000))
        throw new S0Error(
          'quota_exceeded',
          `quota sandbox_claims exceeded: ${n} claims of ${claims.limit} in this ${intervalMs / 1000} s window; retry in ${retryAfterS} s`,
          { details: { dimension: 'sandbox_claims', limit: claims.limit, current: n }, retryAfterS },
        )
      }
    }
    // Counted with or without a limit: the quota API reports the count either way.
    await c.query(
      `INSERT INTO quota_counters (team_id, dimension, window_start, value) VALUES ($1, 'sandbox_claims', $2, 1)
       ON CONFLICT (team_id, dimension, window_start) DO UPDATE SET value = quota_counters.value + 1`,
      [teamId, start],
    )
    await c.query(
      `INSERT INTO quota_claim_slots (id, team_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))`,
      [slotId, teamId, limits.quotaClaimSlotTtlMs / 1000],
    )
  })
}
