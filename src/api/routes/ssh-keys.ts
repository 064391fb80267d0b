// `/users/me/ssh-keys` (the SDK's account surface: no /api/v1 prefix): list, add and remove the
// team's SSH public keys, which log in to the team's sandboxes through the SSH endpoint.
import type { FastifyPluginAsync } from 'fastify'
import { addSshKey, deleteSshKey, listSshKeys } from '../../accounts/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { sshKeyCreateBody, sshKeyIdParams } from '../schemas/ssh-keys.js'
import type { PluginOptions } from '../services.js'
import { sshKeyJson } from '../wire/ssh-keys.js'

export const sshKeyRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const { db } = services

  app.get('/users/me/ssh-keys', async (request) => {
    const { teamId } = requireAuth(request)
    return ok({ ssh_keys: (await listSshKeys(db, teamId)).map(sshKeyJson) })
  })

  app.post<{ Body: { name: string; public_key: string } }>(
    '/users/me/ssh-keys',
    { schema: { body: sshKeyCreateBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const key = await addSshKey(db, teamId, { name: request.body.name, publicKey: request.body.public_key })
      return reply.code(201).send(ok(sshKeyJson(key)))
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/users/me/ssh-keys/:id',
    { schema: { params: sshKeyIdParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      await deleteSshKey(db, teamId, request.params.id)
      return ok({ message: `SSH key ${request.params.id} deleted` })
    },
  )
}
