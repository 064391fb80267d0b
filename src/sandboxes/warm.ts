// Warm sandboxes: the pool's host side (starting a template's warm sandboxes with their warm
// processes ready) and the claim side (taking one for a claim, SKIP LOCKED, and giving it the
// claim's config). The pool itself (what to start when) is pool.ts.
import { S0Error } from '../core/errors.js'
import { newSandboxId, type SandboxId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { DriverName } from '../runtime/driver.js'
import { claimConfig } from './claim.js'
import type { SandboxHost } from './host.js'
import { poolKey, poolSpec, poolTarget, WarmPool, type PoolHost } from './pool.js'
import { toRow, type Row, type SandboxConfig, type SandboxRow, type StoredConfig } from './rows.js'
import type { SandboxStore } from './store.js'
import type { ResolvedTemplate, TemplateCatalog, TemplateRow, WarmProcessSpec } from './templates.js'

export interface WarmSandboxesOptions {
  host: SandboxHost
  store: SandboxStore
  catalog: TemplateCatalog
  hostId: string
  /** The driver for a template's sandboxes (its own or the server's default), made ready. */
  driverFor(name: DriverName | null): Promise<DriverName>
  /** Removes a sandbox and everything it has. */
  remove(id: SandboxId): Promise<void>
  log: Logger
  /** In a cluster: pools are shared by the live nodes (pool.ts). */
  nodeDeadAfterS?: number
}

export class WarmSandboxes implements PoolHost {
  readonly pool: WarmPool
  private readonly log: Logger

  constructor(private readonly o: WarmSandboxesOptions) {
    this.log = o.log
    this.pool = new WarmPool({
      db: o.store.db,
      hostId: o.hostId,
      log: o.log,
      host: this,
      ...(o.nodeDeadAfterS !== undefined ? { nodeDeadAfterS: o.nodeDeadAfterS } : {}),
    })
  }

  remove(id: SandboxId): Promise<void> {
    return this.o.remove(id)
  }

  /** PoolHost: starts one warm sandbox of the template, idle once its warm processes are ready. */
  async startWarm(t: TemplateRow, key: string, spec: string): Promise<void> {
    const tpl = await this.o.catalog.resolveRow(t)
    const driver = await this.o.driverFor(t.driver)
    const id = newSandboxId()
    await this.o.store.db.query(
      `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host, pool_key, pool_spec)
       VALUES ($1, $2, $3, 'starting', $4, $5, $6, $7, $8)`,
      [id, t.teamId, t.id, JSON.stringify(claimConfig(tpl, {}, [])), driver, this.o.hostId, key, spec],
    )
    try {
      await this.o.host.startRuntime(await this.o.store.rowOf(id))
      await this.startWarmProcesses(id, tpl.warmProcesses, tpl.env)
    } catch (err) {
      // The start's own failure is what the pool logs; a failed cleanup is finished by reconcile.
      await this.o.remove(id).catch(() => undefined)
      throw err
    }
    const { rowCount } = await this.o.store.db.query(
      `UPDATE sandboxes SET status = 'idle', updated_at = now() WHERE id = $1 AND status = 'starting'`,
      [id],
    )
    if (rowCount === 0) await this.o.remove(id) // removed meanwhile (template changed, shutdown)
  }

  /** Starts the template's warm processes and waits until each is ready. */
  private async startWarmProcesses(
    id: SandboxId,
    specs: readonly WarmProcessSpec[],
    env: Record<string, string>,
  ): Promise<void> {
    for (const w of specs) {
      const ctx = await this.o.host.contexts.create(id, {
        type: w.type,
        warm: true,
        env,
        ...(w.type === 'repl' ? { alias: w.alias } : { command: w.command }),
      })
      if (w.type !== 'cmd') continue // a REPL is ready when create returns (its first sentinel)
      const r = w.readiness ?? { type: 'process' }
      const timeoutMs = r.timeoutMs ?? limits.warmProcessReadyTimeoutMsDefault
      let ready: Promise<boolean>
      if (r.type === 'output') ready = ctx.waitForOutput(r.output ?? '')
      else if (r.type === 'delay')
        ready = new Promise((res) => setTimeout(() => res(ctx.running), r.delayMs ?? 0))
      else ready = Promise.resolve(ctx.running)
      let timer: NodeJS.Timeout | undefined
      const ok = await Promise.race([
        ready,
        new Promise<boolean>((res) => (timer = setTimeout(() => res(false), timeoutMs))),
      ])
      clearTimeout(timer)
      if (!ok || !ctx.running)
        throw new S0Error('runtime_failed', `warm process ${JSON.stringify(w.command)} did not become ready`)
    }
  }

  /**
   * A warm sandbox of the template for this claim, or undefined (none idle). SKIP LOCKED: two
   * claimers never get the same one and never wait for each other.
   */
  async take(
    teamId: TeamId,
    tpl: ResolvedTemplate,
    config: StoredConfig,
    cfg: SandboxConfig,
  ): Promise<SandboxRow | undefined> {
    if (poolTarget(tpl.row) === 0) return undefined
    // A warm sandbox's root is an image of the template's size: a claim asking for another starts cold.
    if (config.disk_bytes !== tpl.diskBytes) return undefined
    for (let attempt = 0; attempt < 3; attempt++) {
      const { rows } = await this.o.store.db.query<Row>(
        `UPDATE sandboxes SET team_id = $4, status = 'running', config = $5, pool_key = NULL,
                claimed_at = now(), created_at = now(), updated_at = now(),
                expires_at = CASE WHEN $6::int > 0 THEN now() + make_interval(secs => $6::int) END,
                hard_expires_at = CASE WHEN $7::int > 0 THEN now() + make_interval(secs => $7::int) END
          WHERE id = (SELECT id FROM sandboxes WHERE status = 'idle' AND pool_key = $1 AND pool_spec = $2 AND host = $3
                       ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING *`,
        [
          poolKey(tpl.row),
          poolSpec(tpl.row),
          this.o.hostId,
          teamId,
          JSON.stringify(config),
          cfg.ttl ?? 0,
          cfg.hard_ttl ?? 0,
        ],
      )
      void this.pool.tick() // refill behind the claim
      const raw = rows[0]
      if (!raw) return undefined
      const row = toRow(raw)
      this.o.store.written(row.id)
      try {
        const rt = this.o.host.runtimeOf(row.id)
        if (!(await rt.alive(row.id))) throw new S0Error('sandbox_not_running', 'warm sandbox died')
        if (config.memory_bytes !== tpl.memoryBytes || config.cpu_millis !== tpl.cpuMillis)
          await rt.setResources(row.id, { memoryBytes: config.memory_bytes, cpuMillis: config.cpu_millis })
        if (cfg.env_vars && Object.keys(cfg.env_vars).length > 0)
          await rt.setEnv(row.id, { ...this.o.host.egressEnv(), ...tpl.env, ...cfg.env_vars })
        this.o.host.claimed(row)
        return row
      } catch (err) {
        this.log.warn('warm sandbox unusable, trying another', { id: row.id, err })
        await this.o
          .remove(row.id)
          .catch((e: unknown) => this.log.warn('unusable warm sandbox not removed', { id: row.id, err: e }))
      }
    }
    return undefined
  }
}
