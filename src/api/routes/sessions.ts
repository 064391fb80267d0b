// /api/v1/sandboxes/{id}/sessions: execution sessions (api-contract §12) — CRUD, desired state,
// attempts, inputs, signals, terminal size, the journal paged by cursor, as SSE (`id:` is the
// seq, so Last-Event-ID resumes) and over a WebSocket (events out; input, resize, signal in).
// Another team's sandbox is 404 like everywhere.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import { crashOnBug } from '../../core/assert.js'
import { isS0Error, S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import {
  checkSessionCursor,
  type SandboxService,
  type SessionEvent,
  type SessionInputRequest,
  type SessionSpecInput,
} from '../../sandboxes/index.js'
import { requireAuth } from '../auth-hook.js'
import { ok } from '../reply.js'
import { idParams, type IdParams } from '../schemas/common.js'
import {
  attemptBody,
  createSessionHeaders,
  desiredStateBody,
  eventsQuery,
  inputBody,
  sessionParams,
  sessionSpec,
  signalBody,
  streamQuery,
  terminalBody,
  type SessionParams,
} from '../schemas/sessions.js'
import type { PluginOptions } from '../services.js'
import { cursorJson, sessionEventJson, sessionJson } from '../wire/sessions.js'
import { openStream } from '../stream-write.js'

/**
 * Follows a session's journal from `after`: what is stored, then each batch this server commits
 * (and a poll each heartbeat for other writers). Ends when `closed()` or the session is gone.
 */
async function follow(
  svc: SandboxService,
  sandboxId: string,
  sessionId: string,
  after: number,
  o: {
    emit: (e: SessionEvent) => Promise<void>
    heartbeat: () => Promise<void>
    closed: () => boolean
    onClose: (fn: () => void) => void
  },
): Promise<void> {
  let wake: (() => void) | undefined
  const rouse = (): void => {
    const w = wake
    wake = undefined
    w?.()
  }
  const unsubscribe = svc.sessions.journal.onWritten(sessionId, rouse)
  o.onClose(rouse)
  let cursor = after
  try {
    while (!o.closed()) {
      const page = await svc.sessions.journal.list(sessionId, cursor, limits.sessionEventPageMax)
      for (const e of page) {
        if (o.closed()) return
        await o.emit(e)
        cursor = e.seq
      }
      if (page.length === limits.sessionEventPageMax) continue
      const woke = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), limits.sessionStreamHeartbeatMs)
        t.unref()
        wake = () => {
          clearTimeout(t)
          resolve(true)
        }
      })
      if (!woke && !o.closed()) {
        await o.heartbeat()
        await svc.sessions.get(sandboxId, sessionId) // deleted: not_found ends the stream
      }
    }
  } finally {
    unsubscribe()
  }
}

function parseLastEventId(h: string | string[] | undefined): number | undefined {
  const v = Array.isArray(h) ? h[0] : h
  if (v === undefined || v.trim() === '') return undefined
  if (!/^\d{1,15}$/.test(v.trim()))
    throw new S0Error(
      'invalid_request',
      `Last-Event-ID must be an event seq (a non-negative integer), not ${JSON.stringify(v)}`,
    )
  return Number(v.trim())
}

async function serveSse(
  svc: SandboxService,
  request: FastifyRequest,
  reply: FastifyReply,
  sandboxId: string,
  sessionId: string,
  after: number,
): Promise<void> {
  const stream = openStream(request, reply, 'text/event-stream; charset=utf-8')
  const write = (text: string): Promise<void> => stream.write(text)
  await write(': session events\n\n')
  try {
    await follow(svc, sandboxId, sessionId, after, {
      emit: (e) => write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(sessionEventJson(e))}\n\n`),
      heartbeat: () => write(': heartbeat\n\n'),
      closed: () => stream.closed,
      onClose: (f) => stream.onClose(f),
    })
  } catch (err) {
    // The session was deleted (not_found) or the database failed: the stream ends; a client
    // reconnects with Last-Event-ID.
    crashOnBug(err)
  } finally {
    stream.end()
  }
}

export const sessionRoutes: FastifyPluginAsync<PluginOptions> = async (app, { services }) => {
  const svc = services.sandboxes as SandboxService
  const sessions = (): SandboxService['sessions'] => svc.sessions

  app.get<{ Params: IdParams }>(
    '/sandboxes/:id/sessions',
    { schema: { params: idParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      return ok({ sessions: (await sessions().list(sb.id)).map(sessionJson) })
    },
  )

  app.post<{ Params: IdParams; Body: SessionSpecInput; Headers: { 'idempotency-key'?: string } }>(
    '/sandboxes/:id/sessions',
    { schema: { params: idParams, body: sessionSpec, headers: createSessionHeaders } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id, { wake: true })
      const { session, created } = await sessions().create(
        sb,
        request.body,
        request.headers['idempotency-key'],
      )
      return reply.code(created ? 201 : 200).send(ok(sessionJson(session)))
    },
  )

  app.get<{ Params: SessionParams }>(
    '/sandboxes/:id/sessions/:session_id',
    { schema: { params: sessionParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      return ok(sessionJson(await sessions().get(sb.id, request.params.session_id)))
    },
  )

  app.put<{ Params: SessionParams; Body: SessionSpecInput }>(
    '/sandboxes/:id/sessions/:session_id',
    { schema: { params: sessionParams, body: sessionSpec } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      return ok(sessionJson(await sessions().update(sb, request.params.session_id, request.body)))
    },
  )

  app.delete<{ Params: SessionParams }>(
    '/sandboxes/:id/sessions/:session_id',
    { schema: { params: sessionParams } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      await sessions().delete(sb, request.params.session_id)
      return ok({ deleted: true })
    },
  )

  app.put<{ Params: SessionParams; Body: { state: 'running' | 'stopped' } }>(
    '/sandboxes/:id/sessions/:session_id/desired-state',
    { schema: { params: sessionParams, body: desiredStateBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      return ok(sessionJson(await sessions().setDesired(sb, request.params.session_id, request.body.state)))
    },
  )

  app.post<{ Params: SessionParams; Body: { replace_current?: boolean } | null }>(
    '/sandboxes/:id/sessions/:session_id/attempts',
    { schema: { params: sessionParams, body: attemptBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id, { wake: true })
      const s = await sessions().newAttempt(
        sb,
        request.params.session_id,
        request.body?.replace_current ?? false,
      )
      return reply.code(201).send(ok(sessionJson(s)))
    },
  )

  app.post<{ Params: SessionParams; Body: SessionInputRequest }>(
    '/sandboxes/:id/sessions/:session_id/inputs',
    { schema: { params: sessionParams, body: inputBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id, { wake: true })
      return reply.code(202).send(ok(await sessions().input(sb, request.params.session_id, request.body)))
    },
  )

  app.post<{ Params: SessionParams; Body: { signal: string; expected_attempt_id?: string } }>(
    '/sandboxes/:id/sessions/:session_id/signals',
    { schema: { params: sessionParams, body: signalBody } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id, { wake: true })
      await sessions().signal(sb, request.params.session_id, request.body)
      return reply.code(202).send(ok({ accepted: true }))
    },
  )

  app.put<{ Params: SessionParams; Body: { rows: number; cols: number; expected_attempt_id?: string } }>(
    '/sandboxes/:id/sessions/:session_id/terminal',
    { schema: { params: sessionParams, body: terminalBody } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      await sessions().resize(sb, request.params.session_id, request.body)
      return ok({ resized: true })
    },
  )

  app.get<{ Params: SessionParams; Querystring: { after?: number; limit?: number } }>(
    '/sandboxes/:id/sessions/:session_id/events',
    { schema: { params: sessionParams, querystring: eventsQuery } },
    async (request) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      const q = request.query
      const page = await sessions().events(
        sb.id,
        request.params.session_id,
        q.after,
        q.limit ?? limits.sessionEventPageDefault,
      )
      return ok({ events: page.events.map(sessionEventJson), cursor: cursorJson(page.cursor) })
    },
  )

  app.get<{ Params: SessionParams; Querystring: { after?: number } }>(
    '/sandboxes/:id/sessions/:session_id/events/stream',
    { schema: { params: sessionParams, querystring: streamQuery } },
    async (request, reply) => {
      const { teamId } = requireAuth(request)
      const sb = await svc.sessionSandbox(teamId, request.params.id)
      const sessionId = request.params.session_id
      // Last-Event-ID (an EventSource reconnecting) wins over ?after=.
      const after = parseLastEventId(request.headers['last-event-id']) ?? request.query.after
      const row = await sessions().get(sb.id, sessionId)
      const cursor = { earliest: row.earliestSeq, latest: row.lastSeq }
      checkSessionCursor(sessionId, after, cursor)
      return serveSse(svc, request, reply, sb.id, sessionId, after ?? cursor.earliest - 1)
    },
  )

  app.get<{ Params: SessionParams; Querystring: { after?: number } }>(
    '/sandboxes/:id/sessions/:session_id/ws',
    { websocket: true, schema: { params: sessionParams, querystring: streamQuery } },
    (socket, request) => {
      const ws = socket as unknown as WebSocket
      const send = (frame: Record<string, unknown>): void => {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame))
      }
      let closed = false
      const closers: Array<() => void> = []
      ws.on('close', () => {
        closed = true
        for (const f of closers) f()
      })
      const fail = (err: unknown): void => {
        crashOnBug(err)
        send({
          type: 'error',
          error: isS0Error(err) ? `${err.code}: ${err.message}` : 'session stream failed',
        })
        ws.close(isS0Error(err) ? 1008 : 1011)
      }
      // Frames that arrive while the session is looked up wait here (bounded), in order.
      let early: Buffer[] | undefined = []
      let handle: ((raw: Buffer) => void) | undefined
      ws.on('message', (raw: Buffer) => {
        if (handle) handle(raw)
        else if (early && early.length < limits.contextPendingInputsMax) early.push(raw)
      })
      void (async () => {
        const { teamId } = requireAuth(request)
        const sessionId = request.params.session_id
        const sb = await svc.sessionSandbox(teamId, request.params.id)
        const row = await sessions().get(sb.id, sessionId)
        const cursor = { earliest: row.earliestSeq, latest: row.lastSeq }
        const after = request.query.after
        checkSessionCursor(sessionId, after, cursor)
        // Client frames are applied in order, one at a time.
        let chain = Promise.resolve()
        handle = (raw: Buffer): void => {
          chain = chain.then(() => onMessage(raw)).catch((err: unknown) => crashOnBug(err))
        }
        const onMessage = async (raw: Buffer): Promise<void> => {
          let msg: Record<string, unknown>
          try {
            msg = JSON.parse(raw.toString('utf8')) as Record<string, unknown>
            if (!msg || typeof msg !== 'object') throw new Error('not an object')
          } catch {
            return send({ type: 'error', error: 'messages must be JSON objects' })
          }
          const rid = typeof msg.request_id === 'string' ? msg.request_id : undefined
          const str = (k: string): string | undefined =>
            typeof msg[k] === 'string' ? (msg[k] as string) : undefined
          const expected = str('expected_attempt_id')
          try {
            const live = await svc.sessionSandbox(teamId, sb.id)
            if (msg.type === 'input') {
              const inputId = str('input_id')
              if (!inputId) throw new S0Error('invalid_request', 'an input frame needs input_id')
              const data = str('data_base64')
              await sessions().input(live, sessionId, {
                input_id: inputId,
                ...(expected !== undefined ? { expected_attempt_id: expected } : {}),
                ...(data !== undefined ? { data_base64: data } : {}),
                ...(msg.eof === true ? { eof: true } : {}),
              })
            } else if (msg.type === 'resize') {
              const rows = msg.rows
              const cols = msg.cols
              if (
                !Number.isInteger(rows) ||
                !Number.isInteger(cols) ||
                (rows as number) < 1 ||
                (cols as number) < 1
              )
                throw new S0Error('invalid_request', 'a resize frame needs integer rows and cols >= 1')
              await sessions().resize(live, sessionId, {
                rows: Math.min(rows as number, 65535),
                cols: Math.min(cols as number, 65535),
                ...(expected !== undefined ? { expected_attempt_id: expected } : {}),
              })
            } else if (msg.type === 'signal') {
              const signal = str('signal')
              if (!signal) throw new S0Error('invalid_request', 'a signal frame needs signal')
              await sessions().signal(live, sessionId, {
                signal,
                ...(expected !== undefined ? { expected_attempt_id: expected } : {}),
              })
            } else throw new S0Error('invalid_request', 'frame type must be input, resize or signal')
            send({ type: 'ack', ...(rid !== undefined ? { request_id: rid } : {}) })
          } catch (err) {
            crashOnBug(err)
            send({
              type: 'error',
              ...(rid !== undefined ? { request_id: rid } : {}),
              error: isS0Error(err) ? `${err.code}: ${err.message}` : 'request failed',
            })
          }
        }
        for (const raw of early ?? []) handle(raw)
        early = undefined
        await follow(svc, sb.id, sessionId, after ?? cursor.earliest - 1, {
          emit: async (e) => send({ type: 'event', event: sessionEventJson(e) }),
          heartbeat: async () => {
            if (ws.readyState === ws.OPEN) ws.ping()
          },
          closed: () => closed,
          onClose: (f) => closers.push(f),
        })
        if (!closed) ws.close(1000)
      })().catch(fail)
    },
  )
}
