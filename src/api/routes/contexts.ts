// /api/v1/sandboxes/{id}/contexts: REPL and cmd contexts, exec, input, signal, resize, restart.
// `/resize` is accepted and recorded only: contexts run on pipes, not on a pty.
import type { FastifyPluginAsync } from 'fastify'
import type { SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import {
  createContextBody,
  ctxParams,
  inputBody,
  parseSignal,
  ptySize,
  signalBody,
  type CreateContextBody,
  type CtxParams,
} from '../schemas/contexts.js'
import type { PluginOptions } from '../services.js'
import { contextJson, execJson } from '../wire/contexts.js'

export const contextRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.get<{ Params: IdParams }>(
    '/sandboxes/:id/contexts',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const contexts = await svc.listContexts(teamId, request.params.id)
      return ok({ contexts: contexts.map((c) => contextJson(c, false)) })
    },
  )

  app.post<{ Params: IdParams; Body: CreateContextBody }>(
    '/sandboxes/:id/contexts',
    { schema: { params: idParams, body: createContextBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = request.body
      const ctx = await svc.createContext(teamId, request.params.id, {
        ...(b.type !== undefined ? { type: b.type } : {}),
        ...(b.repl !== undefined ? { repl: b.repl } : {}),
        ...(b.cmd !== undefined ? { cmd: b.cmd } : {}),
        ...(b.wait_until_done !== undefined ? { waitUntilDone: b.wait_until_done } : {}),
        ...(b.cwd !== undefined ? { cwd: b.cwd } : {}),
        ...(b.env_vars !== undefined ? { env: b.env_vars } : {}),
        ...(b.pty_size !== undefined ? { ptySize: b.pty_size } : {}),
        ...(b.ttl_sec !== undefined ? { ttlSec: b.ttl_sec } : {}),
        ...(b.idle_timeout_sec !== undefined ? { idleTimeoutSec: b.idle_timeout_sec } : {}),
      })
      const withOutput = ctx.opts.type === 'cmd' && b.wait_until_done === true
      return reply.code(201).send(ok(contextJson(ctx, withOutput)))
    },
  )

  app.get<{ Params: CtxParams }>(
    '/sandboxes/:id/contexts/:ctx_id',
    { schema: { params: ctxParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(contextJson(await svc.context(teamId, request.params.id, request.params.ctx_id), true))
    },
  )

  app.delete<{ Params: CtxParams }>(
    '/sandboxes/:id/contexts/:ctx_id',
    { schema: { params: ctxParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await svc.deleteContext(teamId, request.params.id, request.params.ctx_id)
      return ok({ deleted: true })
    },
  )

  app.post<{ Params: CtxParams }>(
    '/sandboxes/:id/contexts/:ctx_id/restart',
    { schema: { params: ctxParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(
        contextJson(await svc.restartContext(teamId, request.params.id, request.params.ctx_id), false),
      )
    },
  )

  app.post<{ Params: CtxParams; Body: { data: string } }>(
    '/sandboxes/:id/contexts/:ctx_id/exec',
    { schema: { params: ctxParams, body: inputBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const ctx = await svc.context(teamId, request.params.id, request.params.ctx_id)
      return ok(execJson(await ctx.exec(request.body.data, svc.execTimeoutMs)))
    },
  )

  app.post<{ Params: CtxParams; Body: { data: string } }>(
    '/sandboxes/:id/contexts/:ctx_id/input',
    { schema: { params: ctxParams, body: inputBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const ctx = await svc.context(teamId, request.params.id, request.params.ctx_id)
      ctx.input(request.body.data)
      return ok({ written: true })
    },
  )

  app.post<{ Params: CtxParams; Body: { signal: string } }>(
    '/sandboxes/:id/contexts/:ctx_id/signal',
    { schema: { params: ctxParams, body: signalBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const ctx = await svc.context(teamId, request.params.id, request.params.ctx_id)
      await ctx.signal(parseSignal(request.body.signal))
      return ok({ signaled: true })
    },
  )

  app.post<{ Params: CtxParams; Body: { rows: number; cols: number } }>(
    '/sandboxes/:id/contexts/:ctx_id/resize',
    { schema: { params: ctxParams, body: ptySize } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const ctx = await svc.context(teamId, request.params.id, request.params.ctx_id)
      ctx.ptySize = { rows: request.body.rows, cols: request.body.cols }
      return ok({ resized: true })
    },
  )
}
