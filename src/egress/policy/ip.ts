// IP addresses and CIDRs as numbers: IPv4 as an unsigned 32-bit number, IPv6 as a bigint. Strict
// textual forms only (no octal or short IPv4, no zone ids), so what the policy says is what the
// kernel means. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it carries.

export type Ip = { readonly v: 4; readonly n: number } | { readonly v: 6; readonly n: bigint }

/** An inclusive numeric range of one family. */
export type IpRange = { readonly v: 4; lo: number; hi: number } | { readonly v: 6; lo: bigint; hi: bigint }

const LOW32 = 0xffff_ffffn
const ALL128 = (1n << 128n) - 1n

export function parseIpv4(s: string): number | undefined {
  let n = 0
  let parts = 0
  let i = 0
  while (i <= s.length) {
    let j = i
    let octet = 0
    while (j < s.length && j - i < 4) {
      const c = s.charCodeAt(j)
      if (c < 48 || c > 57) break
      octet = octet * 10 + (c - 48)
      j++
    }
    const len = j - i
    // 1 to 3 digits, at most 255, and no leading zero (010 is octal to some parsers, 10 to others).
    if (len === 0 || len > 3 || octet > 255 || (len > 1 && s.charCodeAt(i) === 48)) return undefined
    n = n * 256 + octet
    parts++
    if (j === s.length) break
    if (s.charCodeAt(j) !== 46 || parts === 4) return undefined
    i = j + 1
  }
  return parts === 4 ? n : undefined
}

export function parseIpv6(s: string): bigint | undefined {
  if (s.length < 2 || s.length > 45) return undefined
  const double = s.indexOf('::')
  if (double !== -1 && s.indexOf('::', double + 1) !== -1) return undefined
  const head = double === -1 ? s : s.slice(0, double)
  const tail = double === -1 ? '' : s.slice(double + 2)
  const headGroups = groups(head)
  const tailGroups = groups(tail)
  if (headGroups === undefined || tailGroups === undefined) return undefined
  // An embedded IPv4 address may only end the address.
  if (double !== -1 && headGroups.v4) return undefined
  const count = headGroups.list.length + tailGroups.list.length
  if (double === -1 ? count !== 8 : count > 7) return undefined
  let n = 0n
  for (const g of headGroups.list) n = (n << 16n) | BigInt(g)
  n <<= BigInt(16 * (8 - headGroups.list.length))
  let t = 0n
  for (const g of tailGroups.list) t = (t << 16n) | BigInt(g)
  return n | t
}

function groups(s: string): { list: number[]; v4: boolean } | undefined {
  if (s === '') return { list: [], v4: false }
  const parts = s.split(':')
  const list: number[] = []
  for (let k = 0; k < parts.length; k++) {
    const p = parts[k] as string
    if (k === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p)
      if (v4 === undefined) return undefined
      list.push(v4 >>> 16, v4 & 0xffff)
      return { list, v4: true }
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined
    list.push(parseInt(p, 16))
  }
  return { list, v4: false }
}

/** A textual address (IPv4-mapped IPv6 becomes IPv4), or undefined when it is not one. */
export function parseIp(s: string): Ip | undefined {
  if (s.includes(':')) {
    const n = parseIpv6(s)
    if (n === undefined) return undefined
    if (n >> 32n === 0xffffn) return { v: 4, n: Number(n & LOW32) }
    return { v: 6, n }
  }
  const n = parseIpv4(s)
  return n === undefined ? undefined : { v: 4, n }
}

export function isIpLiteral(s: string): boolean {
  return parseIp(s) !== undefined
}

/**
 * `addr/len` as a range (host bits may be set: they are masked, as Go's net.ParseCIDR does). A
 * range inside ::ffff:0:0/96 is the IPv4 range it maps, as flows to mapped addresses are IPv4.
 */
export function parseCidr(s: string): IpRange | undefined {
  const slash = s.indexOf('/')
  if (slash === -1) return undefined
  const addr = s.slice(0, slash)
  const lenText = s.slice(slash + 1)
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return undefined
  const len = Number(lenText)
  if (addr.includes(':')) {
    const n = parseIpv6(addr)
    if (n === undefined || len > 128) return undefined
    const hostBits = BigInt(128 - len)
    const lo = (n >> hostBits) << hostBits
    const hi = lo | ((1n << hostBits) - 1n)
    if (len >= 96 && lo >> 32n === 0xffffn) return { v: 4, lo: Number(lo & LOW32), hi: Number(hi & LOW32) }
    return { v: 6, lo, hi: hi & ALL128 }
  }
  const n = parseIpv4(addr)
  if (n === undefined || len > 32) return undefined
  const size = 2 ** (32 - len)
  const lo = n - (n % size)
  return { v: 4, lo, hi: lo + size - 1 }
}

/** Ranges of one family sorted and merged, for a binary search. */
export class IpRangeSet {
  private readonly v4lo: number[] = []
  private readonly v4hi: number[] = []
  private readonly v6: Array<{ lo: bigint; hi: bigint }> = []

  constructor(ranges: readonly IpRange[]) {
    const v4 = ranges.filter((r) => r.v === 4).sort((a, b) => a.lo - b.lo)
    for (const r of v4) {
      const last = this.v4hi.length - 1
      if (last >= 0 && r.lo <= (this.v4hi[last] as number) + 1) {
        this.v4hi[last] = Math.max(this.v4hi[last] as number, r.hi)
      } else {
        this.v4lo.push(r.lo)
        this.v4hi.push(r.hi)
      }
    }
    const v6 = ranges
      .filter((r): r is Extract<IpRange, { v: 6 }> => r.v === 6)
      .sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0))
    for (const r of v6) {
      const last = this.v6[this.v6.length - 1]
      if (last !== undefined && r.lo <= last.hi + 1n) last.hi = last.hi > r.hi ? last.hi : r.hi
      else this.v6.push({ lo: r.lo, hi: r.hi })
    }
  }

  get size(): number {
    return this.v4lo.length + this.v6.length
  }

  has(ip: Ip): boolean {
    if (ip.v === 4) {
      // The last range starting at or below ip.n.
      let lo = 0
      let hi = this.v4lo.length - 1
      while (lo <= hi) {
        const mid = (lo + hi) >> 1
        if ((this.v4lo[mid] as number) <= ip.n) lo = mid + 1
        else hi = mid - 1
      }
      return hi >= 0 && ip.n <= (this.v4hi[hi] as number)
    }
    for (const r of this.v6) if (ip.n >= r.lo && ip.n <= r.hi) return true
    return false
  }
}

/** Text form: dotted IPv4, or RFC 5952 IPv6 (lowercase, the longest run of zero groups as ::). */
export function formatIp(ip: Ip): string {
  if (ip.v === 4) return [ip.n >>> 24, (ip.n >>> 16) & 255, (ip.n >>> 8) & 255, ip.n & 255].join('.')
  const groups: number[] = []
  for (let k = 7; k >= 0; k--) groups.push(Number((ip.n >> BigInt(16 * k)) & 0xffffn))
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j === i ? i + 1 : j
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':')
  if (best === -1) return hex(groups)
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`
}

/** Network-order bytes: 4 for IPv4, 16 for IPv6. */
export function ipBytes(ip: Ip): Buffer {
  if (ip.v === 4) {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(ip.n >>> 0, 0)
    return b
  }
  const b = Buffer.alloc(16)
  b.writeBigUInt64BE(ip.n >> 64n, 0)
  b.writeBigUInt64BE(ip.n & 0xffff_ffff_ffff_ffffn, 8)
  return b
}
