// /api/v1/sandboxes/{id}/files: read, write, mkdir, delete, list, stat and move of paths inside a
// running sandbox, seen as its processes see them (sandboxes/files). Bodies stream both ways.
import type { Readable } from 'node:stream'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { sandboxFiles, SandboxTree, type SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import {
  idParams,
  moveBody,
  pathQuery,
  type IdParams,
  type MoveBody,
  type PathQuery,
} from '../schemas/common.js'
import type { PluginOptions } from '../services.js'
import { fileInfoJson } from '../wire/files.js'

export const sandboxFileRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload))

  const treeOf = async (request: FastifyRequest<{ Params: IdParams }>): Promise<SandboxTree> => {
    const { teamId } = requireAuth(request)
    return SandboxTree.open(await svc.view(teamId, request.params.id))
  }
  const schema = { params: idParams, querystring: pathQuery }
  // A change made through the API, as a `file` event of the sandbox (after it succeeded).
  const changed = (
    request: FastifyRequest<{ Params: IdParams }>,
    action: string,
    file: string,
    attributes: Record<string, unknown> = {},
  ): void =>
    void svc.audit.record(requireAuth(request).teamId, request.params.id, {
      eventType: 'file',
      source: 'procd',
      action,
      phase: 'effect',
      outcome: 'succeeded',
      resource: { type: 'file', id: file },
      attributes,
    })

  app.get<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxes/:id/files',
    { schema },
    async (request, reply) => {
      const { size, stream } = await sandboxFiles.readFile(await treeOf(request), request.query.path)
      void reply.type('application/octet-stream').header('content-length', size)
      return reply.send(stream)
    },
  )

  app.post<{ Params: IdParams; Querystring: PathQuery; Body: Readable | undefined }>(
    '/sandboxes/:id/files',
    { schema },
    async (request, reply) => {
      const tree = await treeOf(request)
      if (request.query.mkdir === 'true') {
        request.body?.resume() // a mkdir carries no content
        await sandboxFiles.makeDirectory(tree, request.query.path, request.query.recursive === 'true')
        changed(request, 'file.mkdir', request.query.path)
        return reply.code(201).send(ok({ created: true }))
      }
      const declared = Number(request.headers['content-length'] ?? 0)
      try {
        await sandboxFiles.writeFile(tree, request.query.path, request.body, declared)
      } finally {
        // What a refused upload did not read is drained, so the client finishes and reads the reply.
        if (request.body && !request.body.readableEnded) request.body.resume()
      }
      changed(request, 'file.write', request.query.path, { declared_bytes: declared })
      return ok({ written: true })
    },
  )

  app.delete<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxes/:id/files',
    { schema },
    async (request) => {
      await sandboxFiles.remove(await treeOf(request), request.query.path)
      changed(request, 'file.delete', request.query.path)
      return ok({ deleted: true })
    },
  )

  app.get<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxes/:id/files/stat',
    { schema },
    async (request) => ok(fileInfoJson(await sandboxFiles.stat(await treeOf(request), request.query.path))),
  )

  app.get<{ Params: IdParams; Querystring: PathQuery }>(
    '/sandboxes/:id/files/list',
    { schema },
    async (request) => {
      const entries = await sandboxFiles.list(await treeOf(request), request.query.path)
      return ok({ entries: entries.map(fileInfoJson) })
    },
  )

  app.post<{ Params: IdParams; Body: MoveBody }>(
    '/sandboxes/:id/files/move',
    { schema: { params: idParams, body: moveBody } },
    async (request) => {
      await sandboxFiles.move(await treeOf(request), request.body.source, request.body.destination)
      changed(request, 'file.move', request.body.source, { destination: request.body.destination })
      return ok({ moved: true })
    },
  )
}
