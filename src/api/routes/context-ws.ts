// `/api/v1/sandboxes/{id}/contexts/{ctx_id}/ws`: a context's output frames out; input, resize and
// signal frames in, in the SDK's frame format (client `requestId` camelCase, server snake_case).
import type { FastifyPluginAsync } from 'fastify'
import type { WebSocket } from 'ws'
import { crashOnBug } from '../../core/assert.js'
import { isS0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { Context, Frame, SandboxService } from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { parseSignal, type CtxParams } from '../schemas/contexts.js'
import type { PluginOptions } from '../services.js'

function send(ws: WebSocket, frame: Frame | Record<string, unknown>): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame))
}

function errorText(err: unknown, fallback: string): string {
  return isS0Error(err) ? `${err.code}: ${err.message}` : fallback
}

export const contextWsRoute: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService

  app.get<{ Params: CtxParams }>(
    '/sandboxes/:id/contexts/:ctx_id/ws',
    { websocket: true },
    (socket, request) => {
      const ws = socket as unknown as WebSocket
      let detach = (): void => undefined
      const fail = (err: unknown): void => {
        crashOnBug(err)
        send(ws, { type: 'error', error: errorText(err, 'context stream failed') })
        ws.close(1011)
      }
      ws.on('close', () => detach())
      // Frames that arrive while the context is being looked up wait here (bounded).
      let early: Buffer[] | undefined = []
      let ctx: Context | undefined
      ws.on('message', (raw: Buffer) => {
        if (ctx) return onMessage(ws, ctx, raw)
        if (early && early.length < limits.contextPendingInputsMax) early.push(raw)
      })
      void (async () => {
        const { teamId } = requireAuth(request)
        ctx = await svc.context(teamId, request.params.id, request.params.ctx_id)
        for (const raw of early ?? []) onMessage(ws, ctx, raw)
        early = undefined
        detach = ctx.attach((f) => {
          send(ws, f)
          if (f.type === 'done' && 'state' in f) ws.close(1000)
        })
      })().catch(fail)
    },
  )
}

function onMessage(ws: WebSocket, ctx: Context, raw: Buffer): void {
  let msg: {
    type?: unknown
    data?: unknown
    requestId?: unknown
    request_id?: unknown
    rows?: unknown
    cols?: unknown
    signal?: unknown
  }
  try {
    if (raw.length > limits.webSocketMessageBytesMax) throw new Error('message too large')
    msg = JSON.parse(raw.toString('utf8')) as typeof msg
  } catch {
    return send(ws, { type: 'error', error: 'messages must be JSON objects' })
  }
  try {
    if (msg.type === 'input' && typeof msg.data === 'string') {
      const rid =
        typeof msg.requestId === 'string'
          ? msg.requestId
          : typeof msg.request_id === 'string'
            ? msg.request_id
            : undefined
      ctx.input(msg.data, rid)
    } else if (
      msg.type === 'resize' &&
      typeof msg.rows === 'number' &&
      typeof msg.cols === 'number' &&
      msg.rows > 0 &&
      msg.cols > 0
    ) {
      ctx.ptySize = { rows: msg.rows, cols: msg.cols }
    } else if (msg.type === 'signal' && typeof msg.signal === 'string') {
      ctx.signal(parseSignal(msg.signal)).catch((err: unknown) => {
        crashOnBug(err)
        send(ws, { type: 'error', error: errorText(err, 'signal failed') })
      })
    }
    // Anything else is ignored, as upstream does.
  } catch (err) {
    crashOnBug(err)
    send(ws, { type: 'error', error: errorText(err, 'input failed') })
  }
}
