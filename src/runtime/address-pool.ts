// The sandbox address pool: an IPv4 CIDR cut into /30 slots, one per attached sandbox (slot n:
// network base + 4n, gateway (host side) + 1, sandbox + 2). Free slots are handed out next-fit,
// so an address just given back is the last to be reused (the proxy's per-address state and
// conntrack entries of a deleted sandbox age out first). Pure: no I/O.
import { assert } from '../core/assert.js'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'

/** Each sandbox gets one /30: network, gateway, sandbox, broadcast. */
export const SLOT_PREFIX = 30
const SLOT_ADDRESSES = 4

export interface Cidr {
  /** First address, as an unsigned 32-bit number. */
  base: number
  prefix: number
  /** `a.b.c.d/n`, normalised. */
  text: string
}

/** Private ranges a pool may come from: RFC 1918 and the shared (carrier-grade NAT) space. */
const PRIVATE_RANGES = ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10'].map((c) =>
  parseCidr(c),
)

export function parseIpv4(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
  if (!m) return undefined
  let n = 0
  for (const part of m.slice(1)) {
    const v = Number(part)
    if (v > 255 || (part.length > 1 && part.startsWith('0'))) return undefined
    n = n * 256 + v
  }
  return n
}

export function formatIpv4(n: number): string {
  assert(Number.isInteger(n) && n >= 0 && n <= 0xffffffff, `not an IPv4 number: ${n}`)
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

/** `a.b.c.d/n` with the host bits zero; throws config_invalid otherwise. */
export function parseCidr(text: string): Cidr {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text.trim())
  const addr = m ? parseIpv4(m[1] as string) : undefined
  const prefix = m ? Number(m[2]) : NaN
  if (addr === undefined || !(prefix >= 0 && prefix <= 32)) {
    throw new S0Error('config_invalid', `not an IPv4 CIDR: ${JSON.stringify(text)}`)
  }
  const size = 2 ** (32 - prefix)
  if (addr % size !== 0) {
    throw new S0Error(
      'config_invalid',
      `${text}: host bits set (did you mean ${formatIpv4(addr - (addr % size))}/${prefix}?)`,
    )
  }
  return { base: addr, prefix, text: `${formatIpv4(addr)}/${prefix}` }
}

export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefix)
}

export function cidrContains(c: Cidr, addr: number): boolean {
  return addr >= c.base && addr < c.base + cidrSize(c)
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.base < b.base + cidrSize(b) && b.base < a.base + cidrSize(a)
}

/** A pool must be private and between limits.sandboxCidrPrefixMin and Max long. */
export function checkPoolCidr(c: Cidr): void {
  if (c.prefix < limits.sandboxCidrPrefixMin || c.prefix > limits.sandboxCidrPrefixMax) {
    throw new S0Error(
      'config_invalid',
      `sandbox CIDR ${c.text}: the prefix must be /${limits.sandboxCidrPrefixMin} to /${limits.sandboxCidrPrefixMax}`,
    )
  }
  if (!PRIVATE_RANGES.some((p) => cidrContains(p, c.base) && cidrContains(p, c.base + cidrSize(c) - 1))) {
    throw new S0Error(
      'config_invalid',
      `sandbox CIDR ${c.text} is not private (inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10)`,
    )
  }
}

export interface Slot {
  index: number
  /** The host side of the veth: the sandbox's default route, resolver and proxy. */
  gateway: string
  /** eth0 inside the sandbox. */
  address: string
}

export class AddressPool {
  readonly slots: number
  private readonly used = new Set<number>()
  /** Next-fit: the search for a free slot starts after the last one given out. */
  private cursor = 0

  constructor(readonly cidr: Cidr) {
    checkPoolCidr(cidr)
    this.slots = cidrSize(cidr) / SLOT_ADDRESSES
  }

  slot(index: number): Slot {
    assert(Number.isInteger(index) && index >= 0 && index < this.slots, `slot ${index} outside the pool`)
    const net = this.cidr.base + index * SLOT_ADDRESSES
    return { index, gateway: formatIpv4(net + 1), address: formatIpv4(net + 2) }
  }

  /** The slot whose sandbox (or gateway) address this is; undefined outside the pool. */
  slotOf(address: string): number | undefined {
    const n = parseIpv4(address)
    if (n === undefined || !cidrContains(this.cidr, n)) return undefined
    return Math.floor((n - this.cidr.base) / SLOT_ADDRESSES)
  }

  contains(address: string): boolean {
    return this.slotOf(address) !== undefined
  }

  /** A slot found in use on the host (recovery at open); the next allocation starts after it. */
  claim(index: number): void {
    assert(!this.used.has(index), `slot ${index} claimed twice`)
    this.slot(index) // bounds
    this.used.add(index)
    this.cursor = Math.max(this.cursor, (index + 1) % this.slots)
  }

  allocate(): Slot {
    for (let i = 0; i < this.slots; i++) {
      const index = (this.cursor + i) % this.slots
      if (this.used.has(index)) continue
      this.used.add(index)
      this.cursor = (index + 1) % this.slots
      return this.slot(index)
    }
    throw new S0Error(
      'sandbox_addresses_exhausted',
      `all ${this.slots} sandbox addresses of ${this.cidr.text} are in use (S0_SANDBOX_CIDR)`,
    )
  }

  release(index: number): void {
    this.used.delete(index)
  }

  get inUse(): number {
    return this.used.size
  }
}
