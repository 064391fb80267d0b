// The Sandbox0 contexts API (/api/v1/sandboxes/{id}/contexts...): REPL and cmd contexts, exec,
// input, signal, resize, restart, and the context WebSocket in the SDK's frame format.
// `/resize` is accepted and recorded only: contexts run on pipes, not on a pty.
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { S0Error, isS0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { contextLimits, type Context, type Frame } from './context-manager.js'
import type { SandboxService } from './sandbox-service.js'
import { ok, requireAuth } from './server.js'

const INPUT_CHARS_MAX = 1024 * 1024
const SIGNALS: Record<string, NodeJS.Signals> = {
  INT: 'SIGINT',
  TERM: 'SIGTERM',
  KILL: 'SIGKILL',
  HUP: 'SIGHUP',
  QUIT: 'SIGQUIT',
  USR1: 'SIGUSR1',
  USR2: 'SIGUSR2',
  STOP: 'SIGSTOP',
  CONT: 'SIGCONT',
  WINCH: 'SIGWINCH',
}

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 64 } },
} as const
const ctxParams = {
  type: 'object',
  required: ['id', 'ctx_id'],
  properties: { id: { type: 'string', maxLength: 64 }, ctx_id: { type: 'string', maxLength: 64 } },
} as const
const ptySize = {
  type: 'object',
  required: ['rows', 'cols'],
  additionalProperties: false,
  properties: {
    rows: { type: 'integer', minimum: 1, maximum: 65535 },
    cols: { type: 'integer', minimum: 1, maximum: 65535 },
  },
} as const
const inputBody = {
  type: 'object',
  required: ['data'],
  additionalProperties: false,
  properties: { data: { type: 'string', maxLength: INPUT_CHARS_MAX } },
} as const

const createBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    type: { type: 'string', enum: ['repl', 'cmd'] },
    repl: {
      type: 'object',
      additionalProperties: false,
      properties: {
        alias: { type: 'string', maxLength: 64 },
        input: { type: 'string', maxLength: INPUT_CHARS_MAX },
        repl_config: { type: 'object' },
      },
    },
    cmd: {
      type: 'object',
      required: ['command'],
      additionalProperties: false,
      properties: {
        command: { type: 'array', minItems: 1, maxItems: 4096, items: { type: 'string', maxLength: 131072 } },
      },
    },
    wait_until_done: { type: 'boolean' },
    cwd: { type: 'string', maxLength: 4096 },
    env_vars: {
      type: ['object', 'null'],
      maxProperties: 1000,
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 256 },
      additionalProperties: { type: 'string', maxLength: 65536 },
    },
    pty_size: ptySize,
    idle_timeout_sec: { type: 'integer', minimum: 0, maximum: 86400 },
    ttl_sec: { type: 'integer', minimum: 0, maximum: 86400 },
  },
} as const

interface CreateBody {
  type?: 'repl' | 'cmd'
  repl?: { alias?: string; input?: string }
  cmd?: { command: string[] }
  wait_until_done?: boolean
  cwd?: string
  env_vars?: Record<string, string> | null
  pty_size?: { rows: number; cols: number }
  idle_timeout_sec?: number
  ttl_sec?: number
}

type CtxParams = { id: string; ctx_id: string }

export function registerContextRoutes(app: FastifyInstance, svc: SandboxService): void {
  const ctxOf = async (request: Parameters<typeof requireAuth>[0], p: CtxParams): Promise<Context> => {
    const { teamId } = requireAuth(request)
    await svc.get(teamId, p.id)
    return svc.contexts.get(p.id, p.ctx_id)
  }

  app.get<{ Params: { id: string } }>(
    '/api/v1/sandboxes/:id/contexts',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await svc.get(teamId, request.params.id)
      return ok({ contexts: svc.contexts.list(request.params.id).map((c) => c.json(false)) })
    },
  )

  app.post<{ Params: { id: string }; Body: CreateBody }>(
    '/api/v1/sandboxes/:id/contexts',
    { schema: { params: idParams, body: createBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = request.body
      const type = b.type ?? (b.cmd ? 'cmd' : 'repl')
      if (type === 'repl' && b.cmd) throw new S0Error('invalid_request', 'a repl context takes no cmd')
      if (type === 'cmd' && b.repl) throw new S0Error('invalid_request', 'a cmd context takes no repl')
      if (type === 'cmd' && !b.cmd) throw new S0Error('invalid_request', 'a cmd context needs cmd.command')
      const sandbox = await svc.running(teamId, request.params.id)
      const alias = b.repl?.alias?.trim() || 'python'
      // A template's warm REPL, started before the claim, serves the first plain request for
      // its language (same environment: nothing asked beyond the template's).
      const plain =
        b.cwd === undefined &&
        b.env_vars === undefined &&
        !b.ttl_sec &&
        !b.idle_timeout_sec &&
        !b.pty_size &&
        Object.keys(sandbox.config.env_vars ?? {}).length === 0
      const warm = type === 'repl' && plain ? svc.contexts.takeWarm(sandbox.id, alias) : undefined
      const ctx =
        warm ??
        (await svc.contexts.create(sandbox.id, {
          type,
          ...(b.repl?.alias ? { alias } : {}),
          ...(b.cmd ? { command: b.cmd.command } : {}),
          ...(b.cwd !== undefined ? { cwd: b.cwd } : {}),
          env: { ...sandbox.config.env_vars, ...b.env_vars },
          ...(b.pty_size ? { ptySize: b.pty_size } : {}),
          ...(b.ttl_sec ? { ttlSec: b.ttl_sec } : {}),
          ...(b.idle_timeout_sec ? { idleTimeoutSec: b.idle_timeout_sec } : {}),
        }))
      if (type === 'repl' && b.repl?.input) await ctx.exec(b.repl.input, svc.execTimeoutMs)
      // wait_until_done blocks with no timeout (the context's ttl_sec bounds it).
      if (type === 'cmd' && b.wait_until_done) await ctx.waitExit()
      return reply.code(201).send(ok(ctx.json(type === 'cmd' && b.wait_until_done === true)))
    },
  )

  app.get<{ Params: CtxParams }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id',
    { schema: { params: ctxParams } },
    async (request) => ok((await ctxOf(request, request.params)).json(true)),
  )

  app.delete<{ Params: CtxParams }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id',
    { schema: { params: ctxParams } },
    async (request) => {
      await ctxOf(request, request.params)
      await svc.contexts.delete(request.params.id, request.params.ctx_id)
      return ok({ deleted: true })
    },
  )

  app.post<{ Params: CtxParams }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id/restart',
    { schema: { params: ctxParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await svc.running(teamId, request.params.id)
      const ctx = svc.contexts.get(request.params.id, request.params.ctx_id)
      await ctx.restart()
      return ok(ctx.json(false))
    },
  )

  app.post<{ Params: CtxParams; Body: { data: string } }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id/exec',
    { schema: { params: ctxParams, body: inputBody } },
    async (request) => {
      const ctx = await ctxOf(request, request.params)
      return ok(await ctx.exec(request.body.data, svc.execTimeoutMs))
    },
  )

  app.post<{ Params: CtxParams; Body: { data: string } }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id/input',
    { schema: { params: ctxParams, body: inputBody } },
    async (request) => {
      const ctx = await ctxOf(request, request.params)
      ctx.input(request.body.data)
      return ok({ written: true })
    },
  )

  app.post<{ Params: CtxParams; Body: { signal: string } }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id/signal',
    {
      schema: {
        params: ctxParams,
        body: {
          type: 'object',
          required: ['signal'],
          additionalProperties: false,
          properties: { signal: { type: 'string', maxLength: 16 } },
        },
      },
    },
    async (request) => {
      const ctx = await ctxOf(request, request.params)
      await ctx.signal(parseSignal(request.body.signal))
      return ok({ signaled: true })
    },
  )

  app.post<{ Params: CtxParams; Body: { rows: number; cols: number } }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id/resize',
    { schema: { params: ctxParams, body: ptySize } },
    async (request) => {
      const ctx = await ctxOf(request, request.params)
      ctx.ptySize = { rows: request.body.rows, cols: request.body.cols }
      return ok({ resized: true })
    },
  )
}

function parseSignal(name: string): NodeJS.Signals {
  const sig = SIGNALS[name.toUpperCase().replace(/^SIG/, '')]
  if (!sig)
    throw new S0Error(
      'invalid_request',
      `unknown signal ${JSON.stringify(name)}: use ${Object.keys(SIGNALS).join(', ')}`,
    )
  return sig
}

function send(ws: WebSocket, frame: Frame | Record<string, unknown>): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame))
}

/** `/contexts/{ctx_id}/ws`: output frames out; input, resize and signal frames in. */
export function registerContextWsRoute(app: FastifyInstance, svc: SandboxService): void {
  app.get<{ Params: CtxParams }>(
    '/api/v1/sandboxes/:id/contexts/:ctx_id/ws',
    { websocket: true },
    (socket, request) => {
      const ws = socket as unknown as WebSocket
      let detach = (): void => undefined
      const fail = (err: unknown): void => {
        send(ws, {
          type: 'error',
          error: isS0Error(err) ? `${err.code}: ${err.message}` : 'context stream failed',
        })
        ws.close(1011)
      }
      ws.on('close', () => detach())
      // Frames that arrive while the context is being looked up wait here (bounded).
      let early: Buffer[] | undefined = []
      let ctx: Context | undefined
      ws.on('message', (raw: Buffer) => {
        if (ctx) return onMessage(ws, ctx, raw)
        if (early && early.length < contextLimits.pendingInputsMax) early.push(raw)
      })
      void (async () => {
        const { teamId } = requireAuth(request)
        await svc.get(teamId, request.params.id)
        ctx = svc.contexts.get(request.params.id, request.params.ctx_id)
        for (const raw of early ?? []) onMessage(ws, ctx, raw)
        early = undefined
        detach = ctx.attach((f) => {
          send(ws, f)
          if (f.type === 'done' && 'state' in f) ws.close(1000)
        })
      })().catch(fail)
    },
  )
}

function onMessage(ws: WebSocket, ctx: Context, raw: Buffer): void {
  let msg: {
    type?: unknown
    data?: unknown
    requestId?: unknown
    request_id?: unknown
    rows?: unknown
    cols?: unknown
    signal?: unknown
  }
  try {
    if (raw.length > limits.webSocketMessageBytesMax) throw new Error('message too large')
    msg = JSON.parse(raw.toString('utf8')) as typeof msg
  } catch {
    return send(ws, { type: 'error', error: 'messages must be JSON objects' })
  }
  try {
    if (msg.type === 'input' && typeof msg.data === 'string') {
      const rid =
        typeof msg.requestId === 'string'
          ? msg.requestId
          : typeof msg.request_id === 'string'
            ? msg.request_id
            : undefined
      ctx.input(msg.data, rid)
    } else if (
      msg.type === 'resize' &&
      typeof msg.rows === 'number' &&
      typeof msg.cols === 'number' &&
      msg.rows > 0 &&
      msg.cols > 0
    ) {
      ctx.ptySize = { rows: msg.rows, cols: msg.cols }
    } else if (msg.type === 'signal' && typeof msg.signal === 'string') {
      void ctx.signal(parseSignal(msg.signal)).catch(() => undefined)
    }
    // Anything else is ignored, as upstream does.
  } catch (err) {
    send(ws, { type: 'error', error: isS0Error(err) ? `${err.code}: ${err.message}` : 'input failed' })
  }
}
