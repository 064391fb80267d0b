// The vocabulary of contexts, shared by the context, its REPL specs, its buffers and the manager.
import type { SandboxId } from '../../core/ids.js'
import type { SandboxProcess } from '../../runtime/sandbox-runtime.js'

export type ContextType = 'repl' | 'cmd'
export type ContextState = 'running' | 'stopped' | 'killed' | 'crashed'
export type StreamName = 'stdout' | 'stderr'
export type Frame =
  | { type: 'output'; source: StreamName; data: string }
  | { type: 'done'; request_id: string }
  | { type: 'done'; exit_code: number; state: ContextState }

/** Starts a process in a sandbox (the service routes it to the sandbox's runtime). */
export type Spawner = (
  sandboxId: SandboxId,
  argv: readonly string[],
  opts: { env: Record<string, string>; cwd?: string; timeoutMs: number },
) => Promise<SandboxProcess>

export interface CreateContextOptions {
  type: ContextType
  alias?: string
  /** A template's warm process, started before the sandbox was claimed. */
  warm?: boolean
  command?: string[]
  cwd?: string
  env: Record<string, string>
  ptySize?: { rows: number; cols: number }
  ttlSec?: number
  idleTimeoutSec?: number
  /** The team the context works for (a warm one gets it when it is handed out). */
  teamId?: string
}

/** Hears what contexts do (events and output logs, sandboxes/observer.ts). Must not throw. */
export interface ContextObserver {
  started(ctx: ContextInfo): void
  output(ctx: ContextInfo, stream: 'stdout' | 'stderr' | 'pty', data: string): void
  exited(ctx: ContextInfo, exitCode: number, state: ContextState): void
}

export interface ContextInfo {
  readonly id: string
  readonly sandboxId: string
  readonly teamId: string | undefined
  readonly opts: CreateContextOptions
}

/** What one exec (or a whole cmd context) printed, and how it ended. */
export interface ExecOutput {
  outputRaw: string
  stdout: string
  stderr: string
  exitCode?: number
  state: ContextState
}
