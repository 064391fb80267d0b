// The sandbox network of one server: an address pool, one veth pair per attached sandbox, and
// the server's nftables table that sends every sandbox TCP connection to the egress proxy and
// every DNS datagram to the resolver, and drops everything else (nftables.ts). The proxy and
// resolver live in src/egress; this module only points sandboxes at the ports it is given and
// says which sandbox an address belongs to.
import { assert } from '../core/assert.js'
import { DEFAULT_SANDBOX_CIDR } from '../core/config.js'
import { S0Error } from '../core/errors.js'
import { isSandboxId } from '../core/ids.js'
import { silentLogger, type Logger } from '../core/log.js'
import { limits } from '../core/limits.js'
import {
  AddressPool,
  SLOT_PREFIX,
  cidrsOverlap,
  formatIpv4,
  parseCidr,
  parseIpv4,
  type Cidr,
} from './address-pool.js'
import { applySandboxTable, deleteSandboxTable, listSandboxTable, type SandboxTableSpec } from './nftables.js'
import { IFACE_NAME_BYTES_MAX, createVeth, deleteVeth, hostRoutes, listVeths } from './veth.js'

export interface SandboxNetworkOptions {
  /**
   * This server's name on the host ([a-z0-9]{1,6}): its veths are `s0<tag>-<slot>` and its
   * table `inet s0net_<tag>`. Two servers on one host need two tags and two pools.
   */
  tag: string
  /** The address pool (default S0_SANDBOX_CIDR's): private, /12 to /24, clear of every host route. */
  cidr?: string
  /** Every sandbox TCP connection is redirected to this port (the egress proxy, listening on 0.0.0.0). */
  proxyPort: number
  /** Every sandbox UDP datagram to port 53 is redirected to this port (the resolver, on 0.0.0.0). */
  dnsPort: number
  /** Every other UDP datagram is redirected to this port (the UDP relay); none: dropped. */
  udpPort?: number
  /** How often the table is checked and put back if gone (0: never). */
  tableCheckIntervalMs?: number
  log?: Logger
}

/** Where one sandbox is on the network. */
export interface SandboxAttachment {
  sandboxId: string
  /** eth0 inside the sandbox: the source address the proxy and resolver see. */
  address: string
  /** The host end of the veth: the sandbox's default route, and where its proxy and resolver are. */
  gateway: string
  /** Of both addresses (30: a /30 per sandbox). */
  prefix: number
  /** The host end's name. */
  hostIface: string
}

const TAG = /^[a-z0-9]{1,6}$/

export class SandboxNetwork {
  readonly tag: string
  readonly cidr: string
  readonly proxyPort: number
  readonly dnsPort: number
  readonly udpPort: number | undefined
  /** The nft table (family inet). */
  readonly table: string
  /** Every host-side veth of this server starts with it. */
  readonly ifacePrefix: string
  private readonly pool: AddressPool
  private readonly log: Logger
  private readonly byId = new Map<string, SandboxAttachment>()
  private readonly byAddress = new Map<string, SandboxAttachment>()
  private closed = false
  private checkTimer: NodeJS.Timeout | undefined
  private checking: Promise<void> | undefined

  private constructor(o: {
    tag: string
    cidr: Cidr
    proxyPort: number
    dnsPort: number
    udpPort: number | undefined
    log: Logger
  }) {
    this.tag = o.tag
    this.cidr = o.cidr.text
    this.proxyPort = o.proxyPort
    this.dnsPort = o.dnsPort
    this.udpPort = o.udpPort
    this.table = `s0net_${o.tag}`
    this.ifacePrefix = `s0${o.tag}-`
    this.pool = new AddressPool(o.cidr)
    this.log = o.log
    assert(
      this.ifaceName(this.pool.slots - 1).length <= IFACE_NAME_BYTES_MAX,
      'interface names must fit in 15 bytes',
    )
  }

  /**
   * Checks the pool against the host's routes, installs (or replaces) this server's table, and
   * takes back the veths a previous run of this server left (their sandboxes may still run).
   */
  /**
   * Removes what a server with this tag left on the host: every veth of its prefix and its
   * table (uninstall; tests after a server they killed). Idempotent.
   */
  static async remove(tag: string): Promise<void> {
    for (const v of await listVeths(`s0${tag}-`)) await deleteVeth(v.name)
    await deleteSandboxTable(`s0net_${tag}`)
  }

  static async open(opts: SandboxNetworkOptions): Promise<SandboxNetwork> {
    if (!TAG.test(opts.tag))
      throw new S0Error('invalid_request', `network tag must match ${TAG}, got ${opts.tag}`)
    for (const p of [opts.proxyPort, opts.dnsPort, opts.udpPort ?? 1]) {
      if (!Number.isInteger(p) || p < 1 || p > 65535) throw new S0Error('invalid_request', `bad port ${p}`)
    }
    const net = new SandboxNetwork({
      tag: opts.tag,
      cidr: parseCidr(opts.cidr ?? DEFAULT_SANDBOX_CIDR),
      proxyPort: opts.proxyPort,
      dnsPort: opts.dnsPort,
      udpPort: opts.udpPort,
      log: (opts.log ?? silentLogger).child({ component: 'sandbox-network', tag: opts.tag }),
    })
    await net.checkRoutes()
    await applySandboxTable(net.tableSpec())
    await net.recover()
    const every = opts.tableCheckIntervalMs ?? limits.sandboxNetworkCheckIntervalMs
    if (every > 0) {
      net.checkTimer = setInterval(() => net.periodicCheck(), every)
      net.checkTimer.unref()
    }
    net.log.info('sandbox network open', { cidr: net.cidr, attached: net.byId.size })
    return net
  }

  /** Gives the sandbox an address and a veth into its network namespace (`ip netns` name). */
  async attach(sandboxId: string, netnsName: string): Promise<SandboxAttachment> {
    assert(!this.closed, 'sandbox network closed')
    if (!isSandboxId(sandboxId)) throw new S0Error('invalid_request', `invalid sandbox id ${sandboxId}`)
    if (this.byId.has(sandboxId)) throw new S0Error('conflict', `sandbox ${sandboxId} is already attached`)
    const slot = this.pool.allocate()
    const att: SandboxAttachment = {
      sandboxId,
      address: slot.address,
      gateway: slot.gateway,
      prefix: SLOT_PREFIX,
      hostIface: this.ifaceName(slot.index),
    }
    this.register(att)
    try {
      await createVeth({ ...att, netns: netnsName })
    } catch (err) {
      await deleteVeth(att.hostIface).catch((e: unknown) =>
        this.log.warn('veth left after a failed attach', { sandboxId, iface: att.hostIface, err: e }),
      )
      this.unregister(att)
      throw err
    }
    return att
  }

  /** Removes the sandbox's veth (both ends) and frees its address. Idempotent. */
  async detach(sandboxId: string): Promise<void> {
    const att = this.byId.get(sandboxId)
    if (!att) return
    await deleteVeth(att.hostIface)
    this.unregister(att)
  }

  /** Removes every veth of this server whose sandbox is not in `keepIds`; returns their ids. */
  async reconcile(keepIds: Iterable<string>): Promise<string[]> {
    const keep = new Set(keepIds)
    const removed: string[] = []
    for (const v of await listVeths(this.ifacePrefix)) {
      if (v.sandboxId !== undefined && keep.has(v.sandboxId)) continue
      await deleteVeth(v.name)
      const att = v.sandboxId === undefined ? undefined : this.byId.get(v.sandboxId)
      if (att?.hostIface === v.name) this.unregister(att)
      removed.push(v.sandboxId ?? v.name)
    }
    // Attachments whose veth is gone (its namespace was deleted under it).
    const present = new Set((await listVeths(this.ifacePrefix)).map((v) => v.name))
    for (const att of [...this.byId.values()]) {
      if (!present.has(att.hostIface)) this.unregister(att)
    }
    if (removed.length > 0) this.log.info('sandbox network reconciled', { removed })
    return removed
  }

  /**
   * Re-installs the table if it is gone (a host firewall reload that flushed the ruleset:
   * Debian's nftables.conf starts with `flush ruleset`); true when it was there. Runs every
   * `tableCheckIntervalMs` (default limits.sandboxNetworkCheckIntervalMs) while open.
   */
  async ensureTable(): Promise<boolean> {
    if ((await listSandboxTable(this.table)) !== undefined) return true
    this.log.error('sandbox nft table was missing: re-installed', { table: this.table })
    await applySandboxTable(this.tableSpec())
    return false
  }

  /**
   * Stops using the network. By default the table and the veths stay while this server has a
   * veth: sandboxes outlive a restart of the server and stay fenced meanwhile. With no veth
   * left, the table goes too: it would fence nothing, and its "no open proxy" drops name the
   * proxy's and resolver's ports, which another program may bind once we are gone. `removeAll`
   * deletes every veth of this server and the table (tests, uninstall).
   */
  async close(opts: { removeAll?: boolean } = {}): Promise<void> {
    this.closed = true
    clearInterval(this.checkTimer)
    await this.checking // a check in flight must not put the table back after us
    const veths = await listVeths(this.ifacePrefix)
    if (!opts.removeAll && veths.length > 0) return
    for (const v of veths) await deleteVeth(v.name)
    for (const att of [...this.byId.values()]) this.unregister(att)
    await deleteSandboxTable(this.table)
  }

  /**
   * The sandbox whose address this is (the proxy's and the resolver's source lookup); a socket
   * on `::` reports IPv4 peers as `::ffff:a.b.c.d`, which is accepted too.
   */
  sandboxOf(sourceIp: string): string | undefined {
    return this.byAddress.get(unmapIpv4(sourceIp))?.sandboxId
  }

  attachmentOf(sandboxId: string): SandboxAttachment | undefined {
    return this.byId.get(sandboxId)
  }

  attachments(): SandboxAttachment[] {
    return [...this.byId.values()]
  }

  /**
   * Whether the address is in the pool (a sandbox or a gateway). The proxy must never dial
   * one: the host can reach every sandbox, so that would join two sandboxes.
   */
  contains(address: string): boolean {
    return this.pool.contains(unmapIpv4(address))
  }

  private periodicCheck(): void {
    if (this.checking || this.closed) return
    this.checking = this.ensureTable()
      .then(() => undefined)
      .catch((err: unknown) => this.log.error('sandbox nft table check failed', { err }))
      .finally(() => {
        this.checking = undefined
      })
  }

  private ifaceName(slot: number): string {
    return `${this.ifacePrefix}${slot.toString(16)}`
  }

  private slotOfIface(name: string): number | undefined {
    const rest = name.slice(this.ifacePrefix.length)
    if (!/^[0-9a-f]{1,5}$/.test(rest)) return undefined
    const n = parseInt(rest, 16)
    return n < this.pool.slots && this.ifaceName(n) === name ? n : undefined
  }

  private tableSpec(): SandboxTableSpec {
    return {
      table: this.table,
      ifacePrefix: this.ifacePrefix,
      cidr: this.cidr,
      proxyPort: this.proxyPort,
      dnsPort: this.dnsPort,
      ...(this.udpPort !== undefined ? { udpPort: this.udpPort } : {}),
      icmpMeterSize: this.pool.slots,
    }
  }

  /** The pool must not overlap any host route but those of our own veths. */
  private async checkRoutes(): Promise<void> {
    const cidr = parseCidr(this.cidr)
    for (const r of await hostRoutes()) {
      if (r.dst === 'default' || r.dev?.startsWith(this.ifacePrefix)) continue
      const dst = r.dst.includes('/') ? r.dst : `${r.dst}/32`
      const [addr, len] = dst.split('/') as [string, string]
      if (parseIpv4(addr) === undefined) continue
      if (cidrsOverlap(cidr, parseCidr(normaliseCidr(addr, Number(len))))) {
        throw new S0Error(
          'config_invalid',
          `S0_SANDBOX_CIDR ${this.cidr} overlaps the host route ${r.dst}` +
            `${r.dev ? ` dev ${r.dev}` : ''}${r.table ? ` (table ${r.table})` : ''}: choose another private range`,
        )
      }
    }
  }

  /** Takes back this server's veths; ones that do not fit the pool (another CIDR) are removed. */
  private async recover(): Promise<void> {
    for (const v of await listVeths(this.ifacePrefix)) {
      const slot = this.slotOfIface(v.name)
      const s = slot === undefined ? undefined : this.pool.slot(slot)
      if (
        s === undefined ||
        v.sandboxId === undefined ||
        !isSandboxId(v.sandboxId) ||
        this.byId.has(v.sandboxId) ||
        !v.addresses.includes(s.gateway)
      ) {
        this.log.warn('removing a veth that is not a sandbox of this pool', {
          iface: v.name,
          alias: v.sandboxId,
        })
        await deleteVeth(v.name)
        continue
      }
      this.pool.claim(s.index)
      this.register({
        sandboxId: v.sandboxId,
        address: s.address,
        gateway: s.gateway,
        prefix: SLOT_PREFIX,
        hostIface: v.name,
      })
    }
  }

  private register(att: SandboxAttachment): void {
    this.byId.set(att.sandboxId, att)
    this.byAddress.set(att.address, att)
  }

  private unregister(att: SandboxAttachment): void {
    this.byId.delete(att.sandboxId)
    this.byAddress.delete(att.address)
    const slot = this.pool.slotOf(att.address)
    if (slot !== undefined) this.pool.release(slot)
  }
}

function unmapIpv4(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** A route's prefix with its host bits cleared (routes like 10.1.2.3/8 exist). */
function normaliseCidr(addr: string, len: number): string {
  const n = parseIpv4(addr) as number
  const size = 2 ** (32 - len)
  return `${formatIpv4(n - (n % size))}/${len}`
}
