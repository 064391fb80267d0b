// The contexts of every sandbox on this server: created, found, handed out warm, and ended with
// their sandbox. Bounded per sandbox.
import { S0Error } from '../../core/errors.js'
import type { SandboxId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import { Context } from './context.js'
import { REPLS } from './repls.js'
import type { ContextObserver, CreateContextOptions, Spawner } from './types.js'

/** The contexts of every sandbox on this server. */
export class ContextManager {
  private readonly bySandbox = new Map<SandboxId, Map<string, Context>>()

  constructor(
    private readonly spawn: Spawner,
    private readonly observer?: ContextObserver,
  ) {}

  async create(sandboxId: SandboxId, opts: CreateContextOptions): Promise<Context> {
    let map = this.bySandbox.get(sandboxId)
    if (!map) this.bySandbox.set(sandboxId, (map = new Map()))
    if (map.size >= limits.contextsPerSandboxMax)
      throw new S0Error(
        'quota_exceeded',
        `a sandbox may have at most ${limits.contextsPerSandboxMax} contexts`,
      )
    const ctx = new Context(sandboxId, opts, this.spawn, this.observer)
    map.set(ctx.id, ctx)
    try {
      await ctx.start()
    } catch (err) {
      map.delete(ctx.id)
      throw err
    }
    return ctx
  }

  /**
   * A warm REPL of this kind that no `create` has been given yet (a template's warm process):
   * handed out once, so the caller's first run does not wait for the interpreter to start.
   */
  takeWarm(sandboxId: SandboxId, alias: string, teamId: string): Context | undefined {
    const want = REPLS[alias]?.argv[0]
    for (const c of this.bySandbox.get(sandboxId)?.values() ?? []) {
      if (c.opts.warm && !c.handedOut && c.running && want !== undefined && c.replName === want) {
        c.handedOut = true
        c.teamId = teamId
        return c
      }
    }
    return undefined
  }

  list(sandboxId: SandboxId): Context[] {
    return [...(this.bySandbox.get(sandboxId)?.values() ?? [])]
  }

  get(sandboxId: SandboxId, ctxId: string): Context {
    const ctx = this.bySandbox.get(sandboxId)?.get(ctxId)
    if (!ctx) throw new S0Error('context_not_found', `no context ${ctxId} in sandbox ${sandboxId}`)
    return ctx
  }

  async delete(sandboxId: SandboxId, ctxId: string): Promise<void> {
    const ctx = this.get(sandboxId, ctxId)
    this.bySandbox.get(sandboxId)?.delete(ctxId)
    await ctx.kill()
  }

  /** Kills every context of a sandbox (it is being stopped or deleted). */
  async closeSandbox(sandboxId: SandboxId): Promise<void> {
    const map = this.bySandbox.get(sandboxId)
    this.bySandbox.delete(sandboxId)
    await Promise.all([...(map?.values() ?? [])].map((c) => c.kill()))
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.bySandbox.keys()].map((id) => this.closeSandbox(id)))
  }
}
