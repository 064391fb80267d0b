// Unauthenticated operator routes: /healthz (the process answers), /readyz (Postgres answers
// within readyTimeoutMs), Prometheus /metrics.
import type { FastifyPluginAsync } from 'fastify'
import type { Db } from '../../core/db.js'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { renderMetrics, type RequestMetrics } from '../metrics.js'
import type { PluginOptions } from '../services.js'

export interface HealthOptions extends PluginOptions {
  requests: RequestMetrics
}

export const healthRoutes: FastifyPluginAsync<HealthOptions> = async (app, { services, requests }) => {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async () => {
    await pingPostgres(services.db)
    return { status: 'ok' }
  })
  app.get('/metrics', async (_request, reply) => {
    void reply.type('text/plain; version=0.0.4; charset=utf-8')
    return renderMetrics(services, requests)
  })
}

async function pingPostgres(db: Db): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${limits.readyTimeoutMs} ms`)),
      limits.readyTimeoutMs,
    )
  })
  try {
    await Promise.race([db.query('SELECT 1'), timeout])
  } catch (err) {
    throw new S0Error('unavailable', `postgres is not ready: ${(err as Error).message}`, { cause: err })
  } finally {
    clearTimeout(timer)
  }
}
