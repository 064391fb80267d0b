// Port ranges per transport, as a policy's PortSpec lists them: `{port, endPort?, protocol?}` with
// protocol `tcp` (the default, as upstream Sandbox0) or `udp`, endPort inclusive.
import type { PortSpec } from './types.js'

export type Transport = 'tcp' | 'udp'
export const TRANSPORTS: readonly Transport[] = ['tcp', 'udp']

/** The transport a checked PortSpec names. */
export function portTransport(spec: PortSpec): Transport {
  return spec.protocol === undefined || spec.protocol.toLowerCase() === 'tcp' ? 'tcp' : 'udp'
}

export class PortSet {
  // Flat [lo, hi, lo, hi, ...] per transport: a handful of ranges, scanned in order.
  private readonly tcp: number[] = []
  private readonly udp: number[] = []
  /** Whether every port of both transports is in the set. */
  readonly coversAll: boolean

  constructor(specs: readonly PortSpec[]) {
    for (const s of specs) {
      const list = portTransport(s) === 'tcp' ? this.tcp : this.udp
      list.push(s.port, s.endPort ?? s.port)
    }
    this.coversAll = covers(this.tcp) && covers(this.udp)
  }

  has(transport: Transport, port: number): boolean {
    const list = transport === 'tcp' ? this.tcp : this.udp
    for (let i = 0; i < list.length; i += 2) {
      if (port >= (list[i] as number) && port <= (list[i + 1] as number)) return true
    }
    return false
  }
}

function covers(flat: readonly number[]): boolean {
  const ranges: Array<[number, number]> = []
  for (let i = 0; i < flat.length; i += 2) ranges.push([flat[i] as number, flat[i + 1] as number])
  ranges.sort((a, b) => a[0] - b[0])
  let next = 1
  for (const [lo, hi] of ranges) {
    if (lo > next) return false
    next = Math.max(next, hi + 1)
  }
  return next > 65_535
}
