// Waiting in tests for what another process reports in its own time (a server's event line, a
// webhook, a metrics sample): poll, bounded, and fail naming what never came.

/** Polls `probe` every `intervalMs` until it is truthy; throws after `ms`. */
export async function eventually<T>(
  probe: () => T | undefined | Promise<T | undefined>,
  what: string,
  ms = 30_000,
  intervalMs = 100,
): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}
