// /api/v1/sandboxes: claim, list, get, update, delete, status, refresh, pause, resume, in the
// SDK's wire shapes. Team-scoped: another team's sandbox is a 404. Rootfs snapshots, fork and
// restore are sandbox-snapshots.ts.
import type { FastifyPluginAsync } from 'fastify'
import type { ClaimRequest, SandboxConfig, SandboxService, SandboxStatus } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import { claimBody, listQuery, pauseQuery, refreshBody, updateBody } from '../schemas/sandboxes.js'
import type { PluginOptions } from '../services.js'
import { claimJson, refreshJson, sandboxJson, statusJson, summaryJson } from '../wire/sandboxes.js'

interface ListQuery {
  status?: SandboxStatus
  template_id?: string
  paused?: 'true' | 'false'
  limit?: number
  offset?: number
}

export const sandboxRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.post<{ Body: ClaimRequest }>('/sandboxes', { schema: { body: claimBody } }, async (request, reply) => {
    const { teamId } = requireAuth(request)
    const s = await svc.claim(teamId, request.body)
    return reply.code(201).send(ok(claimJson(s, svc.mountStatus(s.id))))
  })

  app.get<{ Querystring: ListQuery }>(
    '/sandboxes',
    { schema: { querystring: listQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const q = request.query
      const offset = q.offset ?? 0
      const { rows, count } = await svc.list(teamId, {
        ...(q.status !== undefined ? { status: q.status } : {}),
        ...(q.template_id !== undefined ? { templateId: q.template_id } : {}),
        ...(q.paused !== undefined ? { paused: q.paused === 'true' } : {}),
        ...(q.limit !== undefined ? { limit: q.limit } : {}),
        offset,
      })
      return ok({ sandboxes: rows.map(summaryJson), count, has_more: offset + rows.length < count })
    },
  )

  app.get<{ Params: IdParams }>('/sandboxes/:id', { schema: { params: idParams } }, async (request) => {
    const { teamId } = requireAuth(request)
    return ok(sandboxJson(await svc.get(teamId, request.params.id), svc.sshEndpoint))
  })

  app.put<{ Params: IdParams; Body: { config?: SandboxConfig } }>(
    '/sandboxes/:id',
    { schema: { params: idParams, body: updateBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(
        sandboxJson(await svc.update(teamId, request.params.id, request.body.config ?? {}), svc.sshEndpoint),
      )
    },
  )

  app.delete<{ Params: IdParams }>('/sandboxes/:id', { schema: { params: idParams } }, async (request) => {
    const { teamId } = requireAuth(request)
    await svc.delete(teamId, request.params.id)
    return ok({ message: `sandbox ${request.params.id} deleted` })
  })

  app.get<{ Params: IdParams }>(
    '/sandboxes/:id/status',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(statusJson(await svc.get(teamId, request.params.id)))
    },
  )

  app.post<{ Params: IdParams; Body: { duration?: number } | undefined }>(
    '/sandboxes/:id/refresh',
    { schema: { params: idParams, body: refreshBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(refreshJson(await svc.refresh(teamId, request.params.id, request.body?.duration)))
    },
  )

  // Pause answers once the checkpoint is committed (paused: true), or after a bounded wait with
  // paused: false while it goes on (GET reports `running` until it is in). `keep_memory=true`
  // (s0 extension, runsc) saves the processes too.
  app.post<{ Params: IdParams; Querystring: { keep_memory?: string } }>(
    '/sandboxes/:id/pause',
    { schema: { params: idParams, querystring: pauseQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const { row, paused } = await svc.pause(teamId, request.params.id, {
        keepMemory: request.query.keep_memory === 'true',
      })
      return ok({ sandbox_id: row.id, paused, status: row.status })
    },
  )

  app.post<{ Params: IdParams }>(
    '/sandboxes/:id/resume',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const row = await svc.resume(teamId, request.params.id)
      return ok({ sandbox_id: row.id, resumed: row.status === 'running' })
    },
  )
}
