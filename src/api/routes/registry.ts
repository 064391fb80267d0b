// /api/v1/registry/credentials: a team's credentials for private registries its templates pull
// from (s0 extension of the SDK's path; see schemas/registry.ts). Stored sealed, never returned:
// POST stores or replaces one ({registry, username, password}), GET lists what is stored
// (registry, username, times), DELETE /registry/credentials/{registry} forgets one.
import type { FastifyPluginAsync } from 'fastify'
import { S0Error } from '../../core/errors.js'
import type { SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { registryCredentialsBody, registryParams } from '../schemas/registry.js'
import type { PluginOptions } from '../services.js'
import { registryCredentialJson } from '../wire/templates.js'

type Body = { targetImage?: string; registry?: string; username?: string; password?: string }

export const registryRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const store = (services.sandboxes as SandboxService).registryCredentials
  const need = (): NonNullable<typeof store> => {
    if (!store)
      throw new S0Error('not_supported', 'this server stores no registry credentials (no secret key)')
    return store
  }

  app.post<{ Body: Body }>(
    '/registry/credentials',
    { schema: { body: registryCredentialsBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const b = request.body
      if (b.registry === undefined || b.username === undefined || b.password === undefined) {
        if (b.targetImage !== undefined)
          throw new S0Error(
            'not_supported',
            's0 runs no registry of its own to push to; store the credentials of your private registry with {registry, username, password} and name its images in mainContainer.image',
          )
        throw new S0Error('invalid_request', 'registry, username and password are required')
      }
      const info = await need().put(teamId, b.registry, b.username, b.password)
      return reply.code(201).send(ok(registryCredentialJson(info)))
    },
  )

  app.get('/registry/credentials', async (request) => {
    const { teamId } = requireAuth(request)
    const credentials = (await need().list(teamId)).map(registryCredentialJson)
    return ok({ credentials, count: credentials.length })
  })

  app.delete<{ Params: { registry: string } }>(
    '/registry/credentials/:registry',
    { schema: { params: registryParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await need().delete(teamId, request.params.registry)
      return ok({ message: `registry credential for ${request.params.registry} deleted` })
    },
  )
}
