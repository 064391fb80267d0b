// Serves an OpenAPI 3.1 document built from the routes' own JSON schemas, so the document cannot
// drift from what the server validates. Routes are collected as they are added.
import type { FastifyInstance, RouteOptions } from 'fastify'

interface Collected {
  method: string
  url: string
  schema: Record<string, unknown> | undefined
  websocket: boolean
}

export function collectRoutes(app: FastifyInstance): Collected[] {
  const routes: Collected[] = []
  app.addHook('onRoute', (r: RouteOptions & { websocket?: boolean }) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method]
    for (const m of methods) {
      if (m === 'HEAD') continue
      routes.push({
        method: m.toLowerCase(),
        url: r.url,
        schema: r.schema as Record<string, unknown> | undefined,
        websocket: r.websocket === true,
      })
    }
  })
  return routes
}

function parameters(schema: Record<string, unknown> | undefined, where: 'path' | 'query'): unknown[] {
  const s = schema?.[where === 'path' ? 'params' : 'querystring'] as
    { properties?: Record<string, unknown>; required?: string[] } | undefined
  if (!s?.properties) return []
  return Object.entries(s.properties).map(([name, sch]) => ({
    name,
    in: where,
    required: where === 'path' || (s.required ?? []).includes(name),
    schema: sch,
  }))
}

export function openApiDocument(routes: Collected[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const r of routes) {
    if (!r.url.startsWith('/api/v1/')) continue
    const path = r.url.replace(/:([A-Za-z_]+)/g, '{$1}')
    const body = r.schema?.['body']
    paths[path] ??= {}
    ;(paths[path] as Record<string, unknown>)[r.method] = {
      ...(r.websocket ? { description: 'WebSocket upgrade (Sandbox0 watch protocol)' } : {}),
      security: [{ bearerAuth: [] }],
      parameters: [...parameters(r.schema, 'path'), ...parameters(r.schema, 'query')],
      ...(body ? { requestBody: { content: { 'application/json': { schema: body } } } } : {}),
      responses: {
        '200': { description: 'Success envelope `{"success":true,"data":...}`' },
        default: {
          description:
            'Error envelope `{"success":false,"error":{"code","message"}}`; codes in docs/ERRORS.md',
        },
      },
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: 's0 (Sandbox0-compatible API)', version },
    components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer' } } },
    paths,
  }
}
