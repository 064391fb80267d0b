// A request for a context, as the domain takes it, and its checks: a REPL or a command, with the
// sandbox's environment under the request's, and a template's warm REPL handed to the first
// plain request for its language.
import { S0Error } from '../../core/errors.js'
import type { SandboxRow } from '../rows.js'
import type { Context } from './context.js'
import type { ContextManager } from './manager.js'
import type { ContextType } from './types.js'

export interface ContextRequest {
  type?: ContextType
  /** REPL language (default python) and an input to run at once. */
  repl?: { alias?: string; input?: string }
  cmd?: { command: string[] }
  /** cmd: answer once the process has exited (bounded by ttlSec, not by the exec timeout). */
  waitUntilDone?: boolean
  cwd?: string
  env?: Record<string, string> | null
  ptySize?: { rows: number; cols: number }
  ttlSec?: number
  idleTimeoutSec?: number
}

/** Creates (or hands out a warm) context in a running sandbox and runs what the request asks at once. */
export async function createContext(
  contexts: ContextManager,
  sandbox: SandboxRow,
  req: ContextRequest,
  execTimeoutMs: number,
): Promise<Context> {
  const type = req.type ?? (req.cmd ? 'cmd' : 'repl')
  if (type === 'repl' && req.cmd) throw new S0Error('invalid_request', 'a repl context takes no cmd')
  if (type === 'cmd' && req.repl) throw new S0Error('invalid_request', 'a cmd context takes no repl')
  if (type === 'cmd' && !req.cmd) throw new S0Error('invalid_request', 'a cmd context needs cmd.command')
  const alias = req.repl?.alias?.trim() || 'python'
  // A template's warm REPL, started before the claim, serves the first plain request for its
  // language (same environment: nothing asked beyond the template's).
  const plain =
    req.cwd === undefined &&
    req.env === undefined &&
    !req.ttlSec &&
    !req.idleTimeoutSec &&
    !req.ptySize &&
    Object.keys(sandbox.config.env_vars ?? {}).length === 0
  const warm = type === 'repl' && plain ? contexts.takeWarm(sandbox.id, alias, sandbox.teamId) : undefined
  const ctx =
    warm ??
    (await contexts.create(sandbox.id, {
      type,
      teamId: sandbox.teamId,
      ...(req.repl?.alias ? { alias } : {}),
      ...(req.cmd ? { command: req.cmd.command } : {}),
      ...(req.cwd !== undefined ? { cwd: req.cwd } : {}),
      env: { ...sandbox.config.env_vars, ...req.env },
      ...(req.ptySize ? { ptySize: req.ptySize } : {}),
      ...(req.ttlSec ? { ttlSec: req.ttlSec } : {}),
      ...(req.idleTimeoutSec ? { idleTimeoutSec: req.idleTimeoutSec } : {}),
    }))
  if (type === 'repl' && req.repl?.input) await ctx.exec(req.repl.input, execTimeoutMs)
  // wait_until_done blocks with no timeout (the context's ttl_sec bounds it).
  if (type === 'cmd' && req.waitUntilDone) await ctx.waitExit()
  return ctx
}
