// One at a time per key in this process. For work that then waits on a Postgres advisory lock:
// the others wait here instead, where they hold no pooled connection (a burst of claims once took
// the whole pool, waiting on the lock, and starved every other query past its connect timeout).
const turns = new WeakMap<object, Map<string, Promise<void>>>()

/** Runs `fn` after every earlier call with the same scope and key has settled. */
export async function inTurn<T>(scope: object, key: string, fn: () => Promise<T>): Promise<T> {
  let byKey = turns.get(scope)
  if (!byKey) turns.set(scope, (byKey = new Map()))
  const before = byKey.get(key) ?? Promise.resolve()
  const mine = before.then(fn, fn)
  const tail = mine.then(
    () => undefined,
    () => undefined,
  )
  byKey.set(key, tail)
  try {
    return await mine
  } finally {
    if (byKey.get(key) === tail) byKey.delete(key)
  }
}
