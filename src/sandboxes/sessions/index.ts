// Execution sessions: supervised, journaled processes of a sandbox (see docs/SESSIONS.md).
export {
  SessionManager,
  checkCursor,
  type InputRequest,
  type InputResult,
  type SessionSandbox,
} from './manager.js'
export type { SessionEvent, EventCursor } from './journal.js'
export type { SessionRow, Attempt } from './store.js'
export type { SessionSpec, SessionSpecInput, SessionPhase } from './spec.js'
export type { SessionSpawner } from './runner.js'
