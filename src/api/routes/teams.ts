// `/teams` (the SDK's account surface: no /api/v1 prefix). A key sees its own team and the teams
// its team made; admins create (the new team's parent is their team), rename and delete them.
// Members are the team's API keys (s0 has no user accounts): listing works, adding by e-mail or
// changing owners answers 501 with what to do instead.
import type { FastifyPluginAsync } from 'fastify'
import {
  createTeam,
  deleteTeam,
  listApiKeys,
  listVisibleTeams,
  updateTeam,
  visibleTeam,
} from '../../accounts/index.js'
import { S0Error } from '../../core/errors.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { requireAdmin } from '../roles.js'
import { createTeamBody, membersQuery, updateTeamBody, type CreateTeamBody } from '../schemas/accounts.js'
import type { PluginOptions } from '../services.js'
import { memberJson, teamJson } from '../wire/accounts.js'

const NO_USERS =
  's0 has no user accounts: a team is used through its API keys (POST /api-keys with team_id, or `s0 apikey create --team`)'

export const teamRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const region = services.config.regionId
  const { db } = services

  app.get('/teams', async (request) => {
    const { teamId } = requireAuth(request)
    return ok({ teams: (await listVisibleTeams(db, teamId)).map((t) => teamJson(t, region)) })
  })

  app.post<{ Body: CreateTeamBody }>(
    '/teams',
    { schema: { body: createTeamBody } },
    async (request, reply) => {
      const auth = requireAdmin(request, 'creating teams')
      const { name, slug, home_region_id: wanted } = request.body
      if (wanted != null && wanted !== region)
        throw new S0Error('invalid_request', `home_region_id must be "${region}" (this server's only region)`)
      const team = await createTeam(db, {
        name,
        ...(slug !== undefined ? { slug } : {}),
        parentTeamId: auth.teamId,
      })
      return reply.code(201).send(ok(teamJson(team, region)))
    },
  )

  app.get<{ Params: { id: string } }>('/teams/:id', async (request) => {
    const { teamId } = requireAuth(request)
    return ok(teamJson(await visibleTeam(db, teamId, request.params.id), region))
  })

  app.put<{ Params: { id: string }; Body: { name?: string; slug?: string } }>(
    '/teams/:id',
    { schema: { body: updateTeamBody } },
    async (request) => {
      const auth = requireAdmin(request, 'changing teams')
      return ok(teamJson(await updateTeam(db, auth.teamId, request.params.id, request.body), region))
    },
  )

  app.delete<{ Params: { id: string } }>('/teams/:id', async (request) => {
    const auth = requireAdmin(request, 'deleting teams')
    await deleteTeam(db, auth.teamId, request.params.id)
    return ok({ message: `team ${request.params.id} deleted` })
  })

  app.get<{ Params: { id: string }; Querystring: { query?: string } }>(
    '/teams/:id/members',
    { schema: { querystring: membersQuery } },
    async (request) => {
      const auth = requireAdmin(request, 'listing team members')
      const team = await visibleTeam(db, auth.teamId, request.params.id)
      const q = request.query.query?.toLowerCase()
      const keys = (await listApiKeys(db, team.id)).filter(
        (k) => k.revokedAt === null && (!q || k.name.toLowerCase().includes(q) || k.id.includes(q)),
      )
      return ok({ members: keys.map(memberJson) })
    },
  )

  const noUsers = async (): Promise<never> => {
    throw new S0Error('not_supported', NO_USERS)
  }
  app.post('/teams/:id/members', noUsers)
  app.put('/teams/:id/members/:userId', noUsers)
  app.delete('/teams/:id/members/:userId', noUsers)
  app.put('/teams/:id/owner', noUsers)
}
