// /api/v1/quotas: the team's quota on every dimension (limit, what is used, what is left), and
// the s0 extension `PUT /api/v1/quotas/{dimension}` that sets or clears one: admin keys only,
// for a team their team made or, for a root team (no parent), their own.
import type { FastifyPluginAsync } from 'fastify'
import { getQuota, listQuotas, setQuota, visibleTeam, type ApiRequestMeter } from '../../accounts/index.js'
import { S0Error } from '../../core/errors.js'
import type { QuotaDimension } from '../../core/quota-dimensions.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { requireAdmin } from '../roles.js'
import { dimensionParams, setQuotaBody, teamIdQuery, type SetQuotaBody } from '../schemas/accounts.js'
import type { PluginOptions } from '../services.js'
import { quotaJson } from '../wire/accounts.js'

export const quotaRoutes: FastifyPluginAsync<PluginOptions & { meter: ApiRequestMeter }> = async (
  app,
  { services, meter },
) => {
  const { db } = services

  app.get<{ Querystring: { team_id?: string } }>(
    '/quotas',
    { schema: { querystring: teamIdQuery } },
    async (request) => {
      const auth = requireAuth(request)
      const team = request.query.team_id
        ? (await visibleTeam(db, auth.teamId, request.query.team_id)).id
        : auth.teamId
      return ok((await listQuotas(db, team, meter)).map(quotaJson))
    },
  )

  app.get<{ Params: { dimension: QuotaDimension }; Querystring: { team_id?: string } }>(
    '/quotas/:dimension',
    { schema: { params: dimensionParams, querystring: teamIdQuery } },
    async (request) => {
      const auth = requireAuth(request)
      const team = request.query.team_id
        ? (await visibleTeam(db, auth.teamId, request.query.team_id)).id
        : auth.teamId
      return ok(quotaJson(await getQuota(db, team, request.params.dimension, meter)))
    },
  )

  app.put<{ Params: { dimension: QuotaDimension }; Body: SetQuotaBody }>(
    '/quotas/:dimension',
    { schema: { params: dimensionParams, body: setQuotaBody } },
    async (request) => {
      const auth = requireAdmin(request, 'setting quotas')
      const target = await visibleTeam(db, auth.teamId, request.body.team_id ?? auth.teamId)
      // A team's limits are its parent's to set: a team made through the API cannot lift its own.
      if (target.id === auth.teamId && target.parentTeamId !== null)
        throw new S0Error(
          'forbidden',
          `team ${target.id} was made by team ${target.parentTeamId}: its quotas are set by an admin key of that team`,
        )
      const b = request.body
      const info = await setQuota(
        db,
        target.id,
        request.params.dimension,
        {
          limit: b.limit_value,
          ...(b.interval_ms !== undefined ? { intervalMs: b.interval_ms } : {}),
          ...(b.burst_value !== undefined ? { burst: b.burst_value } : {}),
        },
        meter,
      )
      return ok(quotaJson(info))
    },
  )
}
