// Who caused what the code is doing now: the API enters a context for each authenticated request
// (its actor and request id) and every event recorded underneath names that actor, without the
// domain's signatures carrying it. Work nobody asked for (ttl sweeps, warm pools) runs with no
// context and is recorded as the service itself.
import { AsyncLocalStorage } from 'node:async_hooks'
import type { EventActor } from './events.js'

export interface RequestContext {
  actor: EventActor
  requestId?: string
}

const storage = new AsyncLocalStorage<RequestContext>()
const SERVICE_ACTOR: EventActor = { kind: 'service', id: 's0' }

/** Runs `fn` (and everything it starts) as `ctx`. */
export function runAs<T>(ctx: RequestContext, fn: () => T): T {
  return storage.run(ctx, fn)
}

/** The actor of the current request, or the service itself. */
export function currentActor(): EventActor {
  return storage.getStore()?.actor ?? SERVICE_ACTOR
}
