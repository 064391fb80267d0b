// Webhook delivery: the events of a sandbox (sandbox_events, the source of truth) POSTed in
// order to its webhook, at least once. The outbox is a cursor per sandbox (sandbox_webhooks):
// the last event delivered or given up on, and the head event's attempts and next retry time.
// A failing event holds back that sandbox's later events (order), never another sandbox's; it
// is retried with exponential backoff until acknowledged (2xx) or it has failed attemptsMax
// times or is older than ageMsMax, then dropped (counted, logged) so one dead endpoint cannot
// block forever. Everything is in Postgres: a killed server resends from the cursor (an event
// POSTed but not yet recorded goes again: receivers dedupe by event_id). Why a cursor and not
// outbox rows per event: docs/WEBHOOKS.md.
import type { Db } from '../../core/db.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { WebhookConfig } from './config.js'
import { SIGNATURE_HEADER, sign, webhookBody, type EventRow } from './payload.js'

export interface WebhookDelivererOptions {
  db: Db
  /** This server: it delivers for the sandboxes it hosts, whose events its own event log writes. */
  hostId: string
  attemptsMax: number
  ageMsMax: number
  pollMs?: number
  /** Retry backoff (tests shorten it). */
  backoffFirstMs?: number
  backoffMaxMs?: number
  log: Logger
}

interface WebhookRow {
  sandbox_id: string
  team_id: string
  url: string
  secret: string
  watch_dir: string | null
  cursor_seq: string
  attempts: number
}

/** Events another writer (another server) made this recently may still have lower seqs in flight. */
const SETTLE_MS = 2_000

export class WebhookDeliverer {
  private timer: NodeJS.Timeout | undefined
  private stopped = true
  private readonly inFlight = new Map<string, Promise<void>>()
  private round: Promise<void> | undefined
  private lastSync = 0
  /** Since start: events acknowledged, failed attempts, events given up on (metrics). */
  readonly stats = { delivered: 0, failedAttempts: 0, dropped: 0 }

  constructor(private readonly o: WebhookDelivererOptions) {}

  /** Records the webhook of a sandbox just claimed (a crash before this is caught by sync()). */
  async subscribe(sandboxId: string, teamId: string, w: WebhookConfig): Promise<void> {
    await this.o.db.query(
      `INSERT INTO sandbox_webhooks (sandbox_id, team_id, host, url, secret, watch_dir)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sandbox_id) DO NOTHING`,
      [sandboxId, teamId, this.o.hostId, w.url, w.secret, w.watch_dir ?? null],
    )
    this.kick()
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.schedule(0)
  }

  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.round
    await Promise.all(this.inFlight.values())
  }

  /** Look for due deliveries now (an event was just appended, a webhook subscribed). */
  kick(): void {
    if (this.stopped || this.round) return
    clearTimeout(this.timer)
    this.schedule(0)
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.round = this.runRound()
        .catch((err: unknown) => this.o.log.warn('webhook delivery round failed', { err }))
        .finally(() => {
          this.round = undefined
          this.schedule(this.o.pollMs ?? limits.webhookPollMsDefault)
        })
    }, ms)
    this.timer.unref()
  }

  /**
   * Webhooks of claims this server has no row for yet (a crash between claim and subscribe, a
   * fork that copied its parent's config), and the rows of sandboxes gone for good.
   */
  async sync(): Promise<void> {
    await this.o.db.query(
      `INSERT INTO sandbox_webhooks (sandbox_id, team_id, host, url, secret, watch_dir)
       SELECT id, team_id, host, config->'webhook'->>'url', coalesce(config->'webhook'->>'secret', ''),
              NULLIF(config->'webhook'->>'watch_dir', '')
       FROM sandboxes
       WHERE host = $1 AND config ? 'webhook' AND status <> 'idle' AND coalesce(config->'webhook'->>'url', '') <> ''
       ON CONFLICT (sandbox_id) DO NOTHING`,
      [this.o.hostId],
    )
    await this.o.db.query(
      `UPDATE sandbox_webhooks w SET sandbox_gone_at = now()
       WHERE host = $1 AND sandbox_gone_at IS NULL AND NOT EXISTS (SELECT 1 FROM sandboxes s WHERE s.id = w.sandbox_id)`,
      [this.o.hostId],
    )
    await this.o.db.query(
      `DELETE FROM sandbox_webhooks w
       WHERE host = $1 AND sandbox_gone_at < now() - make_interval(secs => $2::float8)
         AND NOT EXISTS (SELECT 1 FROM sandbox_events e
                         WHERE e.team_id = w.team_id AND e.sandbox_id = w.sandbox_id AND e.seq > w.cursor_seq)`,
      [this.o.hostId, limits.webhookGoneGraceMs / 1000],
    )
  }

  /** One round: every sandbox with due events gets a delivery task (one per sandbox at a time). */
  async runRound(): Promise<void> {
    if (Date.now() - this.lastSync >= 10 * (this.o.pollMs ?? limits.webhookPollMsDefault)) {
      this.lastSync = Date.now()
      await this.sync()
    }
    const room = limits.webhookConcurrency - this.inFlight.size
    if (room <= 0) return
    const { rows } = await this.o.db.query<WebhookRow>(
      `SELECT w.sandbox_id, w.team_id, w.url, w.secret, w.watch_dir, w.cursor_seq, w.attempts
       FROM sandbox_webhooks w
       WHERE w.host = $1 AND w.next_attempt_at <= now()
         AND EXISTS (SELECT 1 FROM sandbox_events e
                     WHERE e.team_id = w.team_id AND e.sandbox_id = w.sandbox_id AND e.seq > w.cursor_seq)
       ORDER BY w.next_attempt_at LIMIT $2`,
      [this.o.hostId, limits.webhookConcurrency * 2],
    )
    let started = 0
    for (const w of rows) {
      if (started >= room) break
      if (this.inFlight.has(w.sandbox_id)) continue
      started++
      const task = this.deliverSandbox(w)
        .catch((err: unknown) => this.o.log.warn('webhook delivery failed', { sandbox: w.sandbox_id, err }))
        .finally(() => this.inFlight.delete(w.sandbox_id))
      this.inFlight.set(w.sandbox_id, task)
    }
  }

  /** Waits until every delivery task started so far has ended (tests). */
  async idle(): Promise<void> {
    await this.round
    await Promise.all(this.inFlight.values())
  }

  private deliverable(w: WebhookRow, e: EventRow): boolean {
    if (e.event_type === 'lifecycle') return true
    if (e.event_type !== 'file' || !w.watch_dir) return false
    const p = e.attributes?.['path']
    const dir = w.watch_dir.replace(/\/+$/, '')
    return typeof p === 'string' && (dir === '' || p === dir || p.startsWith(dir + '/'))
  }

  /** This sandbox's events after its cursor, in order, until one fails or none is left. */
  private async deliverSandbox(w: WebhookRow): Promise<void> {
    const { rows } = await this.o.db.query<EventRow>(
      `SELECT seq, event_id, team_id, sandbox_id, occurred_at, ingested_at, event_type, phase, outcome,
              actor, action, resource, operation_id, producer, attributes
       FROM sandbox_events WHERE team_id = $1 AND sandbox_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`,
      [w.team_id, w.sandbox_id, w.cursor_seq, limits.webhookBatchEvents],
    )
    let skippedTo: string | undefined
    let attempts = w.attempts
    for (const e of rows) {
      if (this.stopped) break
      if (!this.deliverable(w, e)) {
        // Our own writer commits in seq order; another server's recent event may be passing one
        // of ours still in flight (a lower seq), so the cursor waits until it settles.
        const ours = e.producer?.instance === this.o.hostId
        if (!ours && Date.now() - e.ingested_at.getTime() < SETTLE_MS) break
        skippedTo = e.seq
        continue
      }
      const error = await this.post(w, e, attempts + 1)
      if (error === undefined) {
        this.stats.delivered++
        await this.advance(w.sandbox_id, e.seq, { delivered: 1 })
        skippedTo = undefined
        attempts = 0
        continue
      }
      this.stats.failedAttempts++
      attempts++
      const age = Date.now() - e.occurred_at.getTime()
      if (attempts >= this.o.attemptsMax || age >= this.o.ageMsMax) {
        this.stats.dropped++
        this.o.log.warn('webhook event dropped after its last attempt', {
          sandbox: w.sandbox_id,
          event: e.event_id,
          attempts,
          error,
        })
        await this.advance(w.sandbox_id, e.seq, { dropped: 1, error })
        skippedTo = undefined
        attempts = 0
        continue
      }
      if (skippedTo !== undefined) await this.advance(w.sandbox_id, skippedTo, {})
      const first = this.o.backoffFirstMs ?? limits.webhookBackoffFirstMs
      const max = this.o.backoffMaxMs ?? limits.webhookBackoffMaxMs
      const delayMs = Math.min(max, first * 2 ** (attempts - 1))
      await this.o.db.query(
        `UPDATE sandbox_webhooks SET attempts = $2, last_error = $3,
           next_attempt_at = now() + make_interval(secs => $4::float8)
         WHERE sandbox_id = $1`,
        [w.sandbox_id, attempts, error.slice(0, limits.webhookErrorCharsMax), delayMs / 1000],
      )
      return
    }
    if (skippedTo !== undefined) await this.advance(w.sandbox_id, skippedTo, {})
  }

  private async advance(
    sandboxId: string,
    seq: string,
    o: { delivered?: number; dropped?: number; error?: string },
  ): Promise<void> {
    await this.o.db.query(
      `UPDATE sandbox_webhooks SET cursor_seq = GREATEST(cursor_seq, $2::bigint), attempts = 0,
         next_attempt_at = now(), delivered = delivered + $3, dropped = dropped + $4,
         last_error = COALESCE($5, CASE WHEN $3 > 0 THEN NULL ELSE last_error END)
       WHERE sandbox_id = $1`,
      [
        sandboxId,
        seq,
        o.delivered ?? 0,
        o.dropped ?? 0,
        o.error?.slice(0, limits.webhookErrorCharsMax) ?? null,
      ],
    )
  }

  /** One POST; undefined when acknowledged (2xx), else why not. Redirects are not followed. */
  private async post(w: WebhookRow, e: EventRow, attempt: number): Promise<string | undefined> {
    const body = webhookBody(e)
    try {
      const res = await fetch(w.url, {
        method: 'POST',
        redirect: 'manual',
        signal: AbortSignal.timeout(limits.webhookTimeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': 's0-webhook',
          'x-sandbox0-event-id': e.event_id,
          'x-sandbox0-event-type': e.action,
          'x-sandbox0-delivery-attempt': String(attempt),
          ...(w.secret ? { [SIGNATURE_HEADER]: sign(w.secret, body) } : {}),
        },
        body,
      })
      // The answer's body is not wanted: drain it so the connection is released.
      await res.arrayBuffer().catch(() => undefined)
      return res.status >= 200 && res.status < 300 ? undefined : `HTTP ${res.status}`
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code
      return `${(err as Error).name}: ${(err as Error).message}${cause ? ` (${cause})` : ''}`
    }
  }
}
