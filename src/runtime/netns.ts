// Network namespaces per sandbox, named `<prefix><id>` and bind-mounted under /run/netns by
// `ip netns add`, so they outlive our process and reconcile can find strays after a restart.
// A new one has only loopback (up): no route anywhere. Egress (later) adds a veth to it.
import { readdir } from 'node:fs/promises'
import { runCli, runCliOk } from './cli.js'

export const NETNS_DIR = '/run/netns'

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`
}

export async function createNetns(name: string): Promise<string> {
  await runCliOk('ip', ['netns', 'add', name])
  try {
    await runCliOk('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  } catch (err) {
    await deleteNetns(name)
    throw err
  }
  return netnsPath(name)
}

/** Idempotent: a missing namespace is not an error. */
export async function deleteNetns(name: string): Promise<void> {
  const r = await runCli('ip', ['netns', 'delete', name])
  if (r.code !== 0 && !/No such file|Cannot remove namespace file/.test(r.stderr)) {
    await runCliOk('ip', ['netns', 'delete', name]) // throws with the stderr
  }
}

export async function listNetns(prefix: string): Promise<string[]> {
  // No /run/netns yet: `ip netns add` was never run on this host.
  const names = await readdir(NETNS_DIR).catch(() => [] as string[])
  return names.filter((n) => n.startsWith(prefix))
}
