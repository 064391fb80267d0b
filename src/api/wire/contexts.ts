// Contexts in the SDK's wire shapes: ContextResponse (with or without its output) and the exec result.
import type { Context, ExecOutput } from '../../sandboxes/index.js'

export function execJson(o: ExecOutput): Record<string, unknown> {
  return {
    output_raw: o.outputRaw,
    stdout: o.stdout,
    stderr: o.stderr,
    ...(o.exitCode === undefined ? {} : { exit_code: o.exitCode }),
    state: o.state,
  }
}

export function contextJson(c: Context, withOutput: boolean): Record<string, unknown> {
  return {
    id: c.id,
    type: c.opts.type,
    ...(c.opts.type === 'repl' ? { alias: c.opts.alias ?? 'python' } : {}),
    ...(c.opts.cwd === undefined ? {} : { cwd: c.opts.cwd }),
    env_vars: c.opts.env,
    running: c.running,
    paused: false,
    created_at: c.createdAt,
    ...(c.ptySize ? { pty_size: c.ptySize } : {}),
    ...(withOutput ? execJson(c.result()) : { state: c.state }),
    ...(c.exitCode === undefined ? {} : { exit_code: c.exitCode }),
  }
}
