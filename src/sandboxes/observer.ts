// Contexts seen from outside: each start and exit is a `process` event, each output chunk a log
// line. A warm context's output before it is handed out belongs to no team and is not kept.
import type { SandboxAudit } from './audit.js'
import type { ContextInfo, ContextObserver, ContextState } from './contexts/types.js'
import type { LogStream, SandboxLogs } from './logs.js'

// The command as recorded in an event: enough to recognise it, never a whole script.
const COMMAND_CHARS_MAX = 1024

export class ContextRecorder implements ContextObserver {
  constructor(
    private readonly audit: SandboxAudit,
    /** Absent: output is not kept. */
    private readonly logs: SandboxLogs | undefined,
  ) {}

  started(ctx: ContextInfo): void {
    if (!ctx.teamId) return
    this.audit.record(ctx.teamId, ctx.sandboxId, {
      eventType: 'process',
      source: 'procd',
      action: 'context.start',
      phase: 'effect',
      outcome: 'succeeded',
      resource: { type: 'context', id: ctx.id },
      attributes: {
        type: ctx.opts.type,
        ...(ctx.opts.alias ? { alias: ctx.opts.alias } : {}),
        ...(ctx.opts.command ? { command: ctx.opts.command.join(' ').slice(0, COMMAND_CHARS_MAX) } : {}),
      },
    })
  }

  output(ctx: ContextInfo, stream: LogStream, data: string): void {
    if (!ctx.teamId || !this.logs) return
    this.logs.append({
      teamId: ctx.teamId,
      sandboxId: ctx.sandboxId,
      contextId: ctx.id,
      stream,
      occurredAt: new Date(),
      message: data,
    })
  }

  exited(ctx: ContextInfo, exitCode: number, state: ContextState): void {
    if (!ctx.teamId) return
    this.audit.record(ctx.teamId, ctx.sandboxId, {
      eventType: 'process',
      source: 'procd',
      action: 'context.exit',
      phase: 'effect',
      outcome: exitCode === 0 ? 'succeeded' : 'failed',
      resource: { type: 'context', id: ctx.id },
      attributes: { exit_code: exitCode, state },
    })
  }
}
