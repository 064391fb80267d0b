// Who a connection or a DNS query comes from: the sandboxes with a network on this host, found by
// the address the runtime gave them, each with its compiled policy, its CA (for interception) and the
// names its own DNS answers mapped to each IP (how a connection to a raw IP gets its names).
import { limits } from '../../core/limits.js'
import type { TeamId } from '../../core/ids.js'
import type { CompiledPolicy } from '../policy/compile.js'
import type { LeafCache } from '../tls/leaf-cache.js'

/** What the proxy and the resolver know of one sandbox. */
export interface EgressSandbox {
  sandboxId: string
  teamId: TeamId
  policy: CompiledPolicy
  /** The sandbox's CA: leaves for intercepted TLS are issued from it. */
  ca: LeafCache | undefined
  names: NameMap
}

/** IP → the names a sandbox's DNS answers gave it, each until its TTL ends; bounded. */
export class NameMap {
  private readonly byIp = new Map<string, Map<string, number>>()

  constructor(private readonly now: () => number = () => Date.now()) {}

  /** Records an answer: `name` resolved to `ips` for `ttlS` seconds (at least a floor, at most a cap). */
  add(name: string, ips: readonly string[], ttlS: number): void {
    const ttlMs = Math.min(Math.max(ttlS, limits.egressNameTtlSMin), limits.egressNameTtlSMax) * 1000
    const until = this.now() + ttlMs
    for (const ip of ips) {
      let names = this.byIp.get(ip)
      if (!names) {
        if (this.byIp.size >= limits.egressNamesPerSandboxMax) this.evictOne()
        this.byIp.set(ip, (names = new Map()))
      }
      names.delete(name) // re-inserted: most recent last
      names.set(name, until)
      while (names.size > limits.egressNamesPerIpMax) names.delete(names.keys().next().value as string)
    }
  }

  /** The live names of `ip`. */
  namesOf(ip: string): string[] {
    const names = this.byIp.get(ip)
    if (!names) return []
    const now = this.now()
    const out: string[] = []
    for (const [name, until] of names) {
      if (until > now) out.push(name)
      else names.delete(name)
    }
    if (names.size === 0) this.byIp.delete(ip)
    return out
  }

  private evictOne(): void {
    const oldest = this.byIp.keys().next().value
    if (oldest !== undefined) this.byIp.delete(oldest)
  }
}

/**
 * The sandboxes of this host with a network, by id; a source address is mapped to its sandbox by
 * whoever hands out addresses (the runtime's SandboxNetwork), so an address given back and handed
 * out again names its new owner at once. An entry is set before the sandbox starts: its first
 * packet already finds its policy.
 */
export class EgressDirectory {
  private readonly byId = new Map<string, EgressSandbox>()
  private readonly listeners = new Set<(e: EgressSandbox) => void>()

  constructor(private readonly sandboxOf: (sourceIp: string) => string | undefined) {}

  set(entry: Omit<EgressSandbox, 'names'>): EgressSandbox {
    const full: EgressSandbox = { ...entry, names: this.byId.get(entry.sandboxId)?.names ?? new NameMap() }
    this.byId.set(entry.sandboxId, full)
    return full
  }

  /** A live policy change: new connections and queries follow it at once; listeners re-check open ones. */
  setPolicy(sandboxId: string, policy: CompiledPolicy): void {
    const e = this.byId.get(sandboxId)
    if (!e) return
    e.policy = policy
    for (const l of this.listeners) l(e)
  }

  onPolicyChange(listener: (e: EgressSandbox) => void): void {
    this.listeners.add(listener)
  }

  remove(sandboxId: string): void {
    this.byId.delete(sandboxId)
  }

  lookup(sourceIp: string): EgressSandbox | undefined {
    const id = this.sandboxOf(normalizeSource(sourceIp))
    return id === undefined ? undefined : this.byId.get(id)
  }

  get(sandboxId: string): EgressSandbox | undefined {
    return this.byId.get(sandboxId)
  }
}

/** `::ffff:10.0.0.2` (a dual-stack socket's view of an IPv4 peer) is `10.0.0.2`. */
export function normalizeSource(ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}
