// /api/v1/credential-sources: list, get, create, update, delete a team's credential sources.
// Admin keys write; every key of the team reads the metadata. Secrets are write-only.
import type { FastifyPluginAsync } from 'fastify'
import type { CredentialSourceService } from '../../egress/credentials/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { credentialSourceNameParams, credentialSourceWriteBody } from '../schemas/credentials.js'
import type { PluginOptions } from '../services.js'
import { credentialSourceJson } from '../wire/credentials.js'

interface NameParams {
  name: string
}

export const credentialSourceRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const credentials = services.credentials as CredentialSourceService

  app.get('/credential-sources', async (request) => {
    const { teamId } = requireAuth(request)
    return ok((await credentials.list(teamId)).map(credentialSourceJson))
  })

  app.get<{ Params: NameParams }>(
    '/credential-sources/:name',
    { schema: { params: credentialSourceNameParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      return ok(credentialSourceJson(await credentials.get(teamId, request.params.name)))
    },
  )

  app.post<{ Body: unknown }>(
    '/credential-sources',
    { schema: { body: credentialSourceWriteBody } },
    async (request, reply) => {
      const auth = requireAuth(request)
      const info = await credentials.create(auth.teamId, request.body, auth)
      return reply.code(201).send(ok(credentialSourceJson(info)))
    },
  )

  app.put<{ Params: NameParams; Body: unknown }>(
    '/credential-sources/:name',
    { schema: { params: credentialSourceNameParams, body: credentialSourceWriteBody } },
    async (request) => {
      const auth = requireAuth(request)
      const info = await credentials.update(auth.teamId, request.params.name, request.body, auth)
      return ok(credentialSourceJson(info))
    },
  )

  app.delete<{ Params: NameParams }>(
    '/credential-sources/:name',
    { schema: { params: credentialSourceNameParams } },
    async (request) => {
      const auth = requireAuth(request)
      await credentials.delete(auth.teamId, request.params.name, auth)
      return ok({ message: `credential source ${request.params.name} deleted` })
    },
  )
}
