// A sandbox's lifecycle as one transition table (as gVisor's container.go has it): every status
// change is checked against it, and an operation asks `requireStatus` for the statuses it may
// start from. A request for an operation the sandbox's status forbids is the caller's error
// (409); a status change outside the table is a bug in this code and asserts.
import { assert } from '../core/assert.js'
import { S0Error } from '../core/errors.js'

/** `idle`: started by a warm pool, not claimed yet; never shown by the API. */
export type SandboxStatus = 'idle' | 'starting' | 'running' | 'paused' | 'terminating' | 'failed'

export const SANDBOX_STATUSES: readonly SandboxStatus[] = [
  'idle',
  'starting',
  'running',
  'paused',
  'terminating',
  'failed',
]

/** The statuses the API shows (and filters on). */
export const VISIBLE_STATUSES: readonly SandboxStatus[] = SANDBOX_STATUSES.filter((s) => s !== 'idle')

/**
 * Which status may follow which. A row is created `starting` (claim, warm pool) or `paused`
 * (fork); `terminating` ends with the row deleted. `paused → paused` is a restore (a new
 * checkpoint under the same paused sandbox); `running → paused` also happens at reconcile
 * (a crash left the processes gone but the files there).
 */
const TRANSITIONS: Record<SandboxStatus, readonly SandboxStatus[]> = {
  starting: ['running', 'idle', 'failed', 'terminating'],
  idle: ['running', 'terminating'],
  running: ['paused', 'failed', 'terminating'],
  paused: ['running', 'paused', 'failed', 'terminating'],
  failed: ['terminating'],
  terminating: ['terminating'],
}

export function canTransition(from: SandboxStatus, to: SandboxStatus): boolean {
  return TRANSITIONS[from].includes(to)
}

/** A status write: `from → to` must be in the table, or the code is wrong. */
export function assertTransition(id: string, from: SandboxStatus, to: SandboxStatus): void {
  assert(canTransition(from, to), `sandbox ${id}: no transition ${from} -> ${to}`)
}

export type SandboxAction = 'pause' | 'resume' | 'snapshot' | 'fork' | 'restore'

/**
 * The sandbox must be in one of `allowed` for `action`; otherwise a 409 `conflict` that says
 * what it is and what the action needs.
 */
export function requireStatus(
  sandbox: { id: string; status: SandboxStatus; statusReason?: string },
  action: SandboxAction,
  ...allowed: SandboxStatus[]
): void {
  assert(allowed.length > 0, 'requireStatus needs at least one allowed status')
  if (allowed.includes(sandbox.status)) return
  const why = sandbox.status === 'failed' && sandbox.statusReason ? ` (${sandbox.statusReason})` : ''
  throw new S0Error(
    'conflict',
    `sandbox ${sandbox.id} is ${sandbox.status}${why}; ${action} needs a ${allowed.join(' or ')} sandbox`,
  )
}
