// Execution sessions end to end with the official SDK (npm sandbox0@0.9.5), unchanged, against
// real runc sandboxes: create (idempotent replay, key reuse with another spec 409), output read
// from the journal, inputs applied once per input_id, a crash restarted by policy until the
// restart budget is spent, signals, stop via desired state, SSE replay from Last-Event-ID, 410
// for a cursor retention passed, the WebSocket, pause/resume with runtime_recovery restart and
// stop (journal kept), another team's sandbox 404, bad specs 400.
// Run against one server (sessions-sdk.test.ts) and through a cluster's replica (cluster.test.ts).
import { randomBytes } from 'node:crypto'
import { Client, type Sandbox } from 'sandbox0'
import { beforeAll, describe, expect, it } from 'vitest'
import { createApiKey } from '../../src/accounts/index.js'
import type { Db } from '../../src/core/db.js'
import { asTeamId } from '../../src/core/ids.js'
import { sdkError } from '../support/sdk.js'
import { apiCall } from './sandbox-fixture.js'

/** Where the cases run: a server's (or replica's) URL, a key of one team, and its database. */
export type SessionCaseTarget = () => { url: string; token: string; db: Db } | undefined

let server: { url: string; token: string }
let client: Client
let strangerToken: string
let sandbox: Sandbox
let skip = false
// The SDK's models, as its methods return them.
type ExecutionSession = Awaited<ReturnType<Sandbox['getSession']>>
type ExecutionSessionEvent = Awaited<ReturnType<Sandbox['listSessionEvents']>>['events'][number]

const b64 = (s: string): string => Buffer.from(s).toString('base64')
const text = (events: ExecutionSessionEvent[]): string =>
  events
    .filter((e) => e.type === 'output')
    .map((e) => Buffer.from(e.dataBase64 ?? '', 'base64').toString('utf8'))
    .join('')

/** Polls `fn` until `ok` (bounded); returns the last value. */
async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (ok(v)) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const allEvents = async (sb: Sandbox, id: string): Promise<ExecutionSessionEvent[]> =>
  (await sb.listSessionEvents(id, { limit: 5000 })).events

export function sessionsSdkCases(target: SessionCaseTarget): void {
  describe('sandbox0 SDK 0.9.5: execution sessions', () => {
    beforeAll(async () => {
      const t = target()
      if (!t) {
        skip = true
        return
      }
      server = { url: t.url, token: t.token }
      client = new Client({ token: t.token, baseUrl: t.url + '/' })
      const other = asTeamId(`team-sessions-stranger-${randomBytes(4).toString('hex')}`)
      await t.db.query(`INSERT INTO teams (id, name) VALUES ($1, 'sessions-stranger')`, [other])
      strangerToken = (await createApiKey(t.db, { teamId: other, name: 'x', role: 'admin' })).key
      sandbox = await client.sandboxes.claim('default')
    }, 120_000)
    it('creates idempotently, journals output and applies an input once per input_id', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const spec = { command: ['sh', '-c', 'echo hello-session; cat'], name: 'echoer' }
      const s = await sandbox.createSession(spec, { idempotencyKey: 'create-1' })
      expect(s.id).toMatch(/^ses_/)
      expect(s.spec.lifecycle?.desiredState).toBe('running')
      expect(s.spec.io?.mode).toBe('pipes')
      const again = await sandbox.createSession(spec, { idempotencyKey: 'create-1' })
      expect(again.id).toBe(s.id)
      const raw = await apiCall(server, 'GET', `/sandboxes/${sandbox.id}/sessions`)
      expect(raw.json.data.sessions.filter((x: { id: string }) => x.id === s.id)).toHaveLength(1)
      // The same key with another spec is refused.
      const mismatch = await sdkError(
        sandbox.createSession({ command: ['true'] }, { idempotencyKey: 'create-1' }),
      )
      expect(mismatch.statusCode).toBe(409)
      expect(mismatch.code).toBe('session_idempotency_mismatch')
      // A replay over the raw API answers 200 (the first create was 201).
      const replay = await fetch(`${server.url}/api/v1/sandboxes/${sandbox.id}/sessions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${server.token}`,
          'content-type': 'application/json',
          'idempotency-key': 'create-1',
        },
        body: JSON.stringify(spec),
      })
      expect(replay.status).toBe(200)

      await until(
        () => allEvents(sandbox, s.id),
        (ev) => text(ev).includes('hello-session'),
        'output',
      )
      const running = await until(
        () => sandbox.getSession(s.id),
        (x) => x.phase === 'running',
        'running',
      )
      const attemptId = running.attempt?.id
      expect(attemptId).toBeTruthy()

      const first = await sandbox.writeSessionInput(s.id, { inputId: 'in-1', dataBase64: b64('ping-once\n') })
      expect(first).toMatchObject({ inputId: 'in-1', attemptId, accepted: true, duplicate: false })
      const dup = await sandbox.writeSessionInput(s.id, { inputId: 'in-1', dataBase64: b64('ping-once\n') })
      expect(dup).toMatchObject({ inputId: 'in-1', accepted: true, duplicate: true })
      const wrong = await sdkError(
        sandbox.writeSessionInput(s.id, {
          inputId: 'in-2',
          expectedAttemptId: 'att_nope',
          dataBase64: b64('x'),
        }),
      )
      expect(wrong.statusCode).toBe(409)
      await sandbox.writeSessionInput(s.id, { inputId: 'in-3', eof: true })
      const done = await until(
        () => sandbox.getSession(s.id),
        (x) => x.phase === 'exited',
        'exit after eof',
      )
      expect(done.attempt?.exitCode).toBe(0)
      const events = await allEvents(sandbox, s.id)
      expect(text(events).split('ping-once').length - 1).toBe(1)
      expect(events.filter((e) => e.type === 'input')).toHaveLength(2)
      const types = events.map((e) => e.type)
      expect(types).toEqual(
        expect.arrayContaining(['created', 'starting', 'started', 'ready', 'output', 'exited']),
      )
      const seqs = events.map((e) => e.seq)
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i)) // dense, in order
    }, 60_000)

    it('restarts a crashing process by policy with backoff until the budget is spent', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const s = await sandbox.createSession({
        command: ['sh', '-c', 'echo crash-run; exit 3'],
        lifecycle: {
          restart: {
            policy: 'on_failure',
            maxRestarts: 2,
            windowSeconds: 60,
            initialBackoffMs: 50,
            maxBackoffMs: 200,
          },
        },
      })
      const failed = await until(
        () => sandbox.getSession(s.id),
        (x) => x.phase === 'failed',
        'failed',
        60_000,
      )
      expect(failed.restartCount).toBe(2)
      expect(failed.attempt?.number).toBe(3)
      expect(failed.attempt?.exitCode).toBe(3)
      const events = await allEvents(sandbox, s.id)
      expect(events.filter((e) => e.type === 'backoff').map((e) => e.reason)).toEqual([
        'restarting in 50 ms (exit code 3)',
        'restarting in 100 ms (exit code 3)',
      ])
      expect(events.filter((e) => e.type === 'exited')).toHaveLength(3)
      expect(new Set(events.filter((e) => e.type === 'exited').map((e) => e.attemptId)).size).toBe(3)
      expect(events.at(-1)?.type).toBe('failed')
      // A new attempt on demand.
      const again = await sandbox.createSessionAttempt(s.id)
      expect(again.attempt?.number).toBe(4)
    }, 90_000)

    it('delivers signals and stops via desired state (SIGTERM, then SIGKILL after the grace)', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const s = await sandbox.createSession({
        command: [
          'sh',
          '-c',
          'trap "echo got-term; exit 7" TERM; echo armed; while true; do sleep 0.1; done',
        ],
        readiness: { type: 'output', output: 'armed', timeoutMs: 20_000 },
      })
      await until(
        () => sandbox.getSession(s.id),
        (x) => x.phase === 'running',
        'ready by output',
      )
      expect((await sandbox.sendSessionSignal(s.id, { signal: 'TERM' })).data?.accepted).toBe(true)
      const exited = await until(
        () => sandbox.getSession(s.id),
        (x) => x.phase === 'exited',
        'exit on TERM',
      )
      expect(exited.attempt?.exitCode).toBe(7)
      expect(text(await allEvents(sandbox, s.id))).toContain('got-term')

      // A process that ignores SIGTERM is killed after stop_grace_period_seconds.
      const stubborn = await sandbox.createSession({
        command: ['sh', '-c', 'trap "" TERM; echo up; while true; do sleep 0.1; done'],
        lifecycle: { stopGracePeriodSeconds: 1 },
      })
      await until(
        () => allEvents(sandbox, stubborn.id),
        (ev) => text(ev).includes('up'),
        'started',
      )
      const stopping = await sandbox.setSessionDesiredState(stubborn.id, 'stopped')
      expect(stopping.spec.lifecycle?.desiredState).toBe('stopped')
      const stopped = await until(
        () => sandbox.getSession(stubborn.id),
        (x) => x.phase === 'stopped',
        'stopped',
      )
      expect(stopped.attempt?.reason).toBe('desired_state')
      const types = (await allEvents(sandbox, stubborn.id)).map((e) => e.type)
      expect(types.slice(-3)).toEqual(['stopping', 'exited', 'stopped'])
      await sandbox.deleteSession(stubborn.id)
      expect((await sdkError(sandbox.getSession(stubborn.id))).statusCode).toBe(404)
    }, 60_000)

    it('replays events over SSE from Last-Event-ID and over the WebSocket', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const s = await sandbox.createSession({
        command: ['sh', '-c', 'for i in 1 2 3; do echo line-$i; done; cat'],
      })
      await until(
        () => allEvents(sandbox, s.id),
        (ev) => text(ev).includes('line-3'),
        'output',
      )
      const events = await allEvents(sandbox, s.id)
      const from = events[1]!.seq
      const stream = await sandbox.watchSessionEvents(s.id, { lastEventId: String(from) })
      const seen: ExecutionSessionEvent[] = []
      for await (const e of stream) {
        seen.push(e)
        if (seen.length >= events.length - 2) break
      }
      await stream.close()
      expect(seen[0]?.seq).toBe(from + 1)
      expect(seen.map((e) => e.seq)).toEqual(events.slice(2, 2 + seen.length).map((e) => e.seq))

      // The Client's raw SSE response: text/event-stream, `id:` lines carry the cursor.
      const controller = new AbortController()
      const raw = await client.openSandboxSessionEventStream(sandbox.id, s.id, {
        after: from,
        signal: controller.signal,
      })
      expect(raw.headers.get('content-type')).toMatch(/^text\/event-stream/)
      const reader = (raw.body as ReadableStream<Uint8Array>).getReader()
      let sse = ''
      while (!sse.includes(`id: ${from + 1}`)) {
        const { value, done } = await reader.read()
        if (done) break
        sse += new TextDecoder().decode(value)
      }
      controller.abort()
      expect(sse).toContain(`id: ${from + 1}`)

      const conn = await sandbox.connectSession(s.id, { after: events.at(-1)!.seq })
      const messages = conn.messages()
      conn.send({ type: 'input', inputId: 'ws-1', dataBase64: b64('over-ws\n'), requestId: 'r1' } as never)
      let acked = false
      let echoed = ''
      const deadline = Date.now() + 20_000
      while (Date.now() < deadline && !(acked && echoed.includes('over-ws'))) {
        const { value, done } = await messages.next()
        if (done) break
        if (value.type === 'ack' && value.requestId === 'r1') acked = true
        if (value.type === 'event' && value.event?.type === 'output')
          echoed += Buffer.from(value.event.dataBase64 ?? '', 'base64').toString('utf8')
        expect(value.event?.seq ?? Infinity).toBeGreaterThan(events.at(-1)!.seq)
      }
      conn.close()
      expect(acked).toBe(true)
      expect(echoed).toContain('over-ws')
    }, 60_000)

    it('drops the oldest events beyond event_retention and answers 410 for a cursor before them', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const s = await sandbox.createSession({
        command: [
          'sh',
          '-c',
          'i=0; while [ $i -lt 300 ]; do echo 0123456789012345678901234567890123456789-$i; i=$((i+1)); done',
        ],
        eventRetention: { maxBytes: 4096 },
      })
      const page = await until(
        () => sandbox.listSessionEvents(s.id),
        (p) => p.events.some((e) => e.type === 'exited') && p.cursor.earliest > 1,
        'retention',
      )
      expect(page.events[0]?.seq).toBe(page.cursor.earliest)
      expect(text(page.events)).toContain('-299')
      const gone = await sdkError(sandbox.listSessionEvents(s.id, { after: 0 }))
      expect(gone.statusCode).toBe(410)
      expect(gone.code).toBe('session_cursor_expired')
      const sse = await sdkError(sandbox.watchSessionEvents(s.id, { after: 0 }))
      expect(sse.statusCode).toBe(410)
    }, 60_000)

    it('answers 404 for another team and 400 for bad specs', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const stranger = { url: server.url, token: strangerToken }
      const list = await apiCall(stranger, 'GET', `/sandboxes/${sandbox.id}/sessions`)
      expect(list.status).toBe(404)
      const create = await apiCall(stranger, 'POST', `/sandboxes/${sandbox.id}/sessions`, {
        command: ['true'],
      })
      expect(create.status).toBe(404)
      const bad: unknown[] = [
        {},
        { command: [] },
        { command: [''] },
        { command: ['true'], bogus: 1 },
        { command: ['true'], lifecycle: { restart: { policy: 'sometimes' } } },
        { command: ['true'], lifecycle: { restart: { initial_backoff_ms: 500, max_backoff_ms: 100 } } },
        { command: ['true'], readiness: { type: 'output' } },
        { command: ['true'], io: { mode: 'pipes', terminal: { rows: 10 } } },
        { command: ['true'], event_retention: { max_bytes: 1 } },
      ]
      for (const body of bad) {
        const r = await apiCall(server, 'POST', `/sandboxes/${sandbox.id}/sessions`, body)
        expect(r.status, JSON.stringify(body)).toBe(400)
        expect(r.json.error.message.length).toBeGreaterThan(0)
      }
      const input = await apiCall(server, 'POST', `/sandboxes/${sandbox.id}/sessions/ses_none/inputs`, {})
      expect(input.status).toBe(400)
      const missing = await apiCall(server, 'GET', `/sandboxes/${sandbox.id}/sessions/ses_none`)
      expect(missing.status).toBe(404)
    })

    it('suspends sessions at pause and recovers them at resume by runtime_recovery', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const sb = await client.sandboxes.claim('default')
      const keep = await sb.createSession({
        command: ['sh', '-c', 'echo gen-start; cat'],
        lifecycle: { runtimeRecovery: 'restart' },
      })
      const drop = await sb.createSession({
        command: ['sh', '-c', 'cat'],
        lifecycle: { runtimeRecovery: 'stop' },
      })
      await until(
        () => allEvents(sb, keep.id),
        (ev) => text(ev).includes('gen-start'),
        'first attempt',
      )
      const before = await sb.getSession(keep.id)
      const firstAttempt = before.attempt!
      await client.sandboxes.pauseAndWait(sb.id, { pollIntervalMs: 100 })
      expect((await sb.getSession(keep.id)).phase).toBe('suspended')
      expect((await sb.getSession(drop.id)).phase).toBe('suspended')
      await client.sandboxes.resume(sb.id)
      const after = await until(
        () => sb.getSession(keep.id),
        (x: ExecutionSession) => x.phase === 'running' && x.attempt?.id !== firstAttempt.id,
        'recovered attempt',
      )
      expect(after.runtimeGeneration).toBe(before.runtimeGeneration + 1)
      expect(after.attempt?.runtimeGeneration).toBe(before.runtimeGeneration + 1)
      expect(after.attempt?.number).toBe(firstAttempt.number + 1)
      // The new attempt's output is journaled in batches: it may follow its `running` phase.
      const events = await until(
        () => allEvents(sb, keep.id),
        (ev) => text(ev).split('gen-start').length - 1 >= 2,
        "the recovered attempt's output",
      )
      expect(events[0]?.type).toBe('created') // the journal is kept across the pause
      expect(events.map((e) => e.type)).toContain('suspended')
      expect(text(events).split('gen-start').length - 1).toBe(2)
      const stopped = await until(
        () => sb.getSession(drop.id),
        (x) => x.phase === 'stopped',
        'stop policy',
      )
      expect(stopped.attempt?.number).toBe(1)
      await client.sandboxes.delete(sb.id)
    }, 120_000)
  })
}
