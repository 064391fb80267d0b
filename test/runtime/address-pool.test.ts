// The sandbox address pool: CIDR checks, /30 slot arithmetic, next-fit allocation, exhaustion.
import { describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import {
  AddressPool,
  cidrsOverlap,
  formatIpv4,
  parseCidr,
  parseIpv4,
} from '../../src/runtime/address-pool.js'

function code(f: () => unknown): string | undefined {
  try {
    f()
  } catch (err) {
    return isS0Error(err) ? err.code : 'not an S0Error'
  }
  return undefined
}

describe('address pool', () => {
  it('parses and formats IPv4 addresses and CIDRs', () => {
    expect(parseIpv4('10.231.0.1')).toBe(0x0ae70001)
    expect(formatIpv4(0x0ae70001)).toBe('10.231.0.1')
    for (const bad of ['10.231.0', '256.1.1.1', '01.2.3.4', '1.2.3.4.5', 'a.b.c.d', '']) {
      expect(parseIpv4(bad)).toBeUndefined()
    }
    expect(parseCidr(' 10.231.0.0/16 ').text).toBe('10.231.0.0/16')
    expect(code(() => parseCidr('10.231.0.1/16'))).toBe('config_invalid') // host bits
    expect(code(() => parseCidr('10.231.0.0'))).toBe('config_invalid')
    expect(code(() => parseCidr('10.231.0.0/33'))).toBe('config_invalid')
    expect(cidrsOverlap(parseCidr('10.0.0.0/8'), parseCidr('10.231.7.0/24'))).toBe(true)
    expect(cidrsOverlap(parseCidr('10.231.0.0/16'), parseCidr('10.232.0.0/16'))).toBe(false)
  })

  it('takes only private ranges from /12 to /24', () => {
    for (const ok of ['10.231.0.0/16', '172.16.0.0/12', '192.168.4.0/24', '100.64.0.0/16']) {
      expect(new AddressPool(parseCidr(ok)).slots).toBeGreaterThan(0)
    }
    for (const bad of ['8.8.0.0/16', '198.18.0.0/16', '10.0.0.0/8', '10.1.2.0/25', '172.0.0.0/12']) {
      expect(
        code(() => new AddressPool(parseCidr(bad))),
        bad,
      ).toBe('config_invalid')
    }
  })

  it('cuts the pool into /30s: gateway .1, sandbox .2 of each', () => {
    const pool = new AddressPool(parseCidr('10.231.0.0/16'))
    expect(pool.slots).toBe(16_384)
    expect(pool.slot(0)).toEqual({ index: 0, gateway: '10.231.0.1', address: '10.231.0.2' })
    expect(pool.slot(16_383)).toEqual({ index: 16_383, gateway: '10.231.255.253', address: '10.231.255.254' })
    expect(pool.slotOf('10.231.0.6')).toBe(1)
    expect(pool.slotOf('10.231.0.5')).toBe(1)
    expect(pool.slotOf('10.232.0.6')).toBeUndefined()
    expect(pool.contains('10.231.255.255')).toBe(true)
    expect(pool.contains('127.0.0.1')).toBe(false)
  })

  it('allocates next-fit, so a released address is reused last, and says when none is left', () => {
    const pool = new AddressPool(parseCidr('192.168.7.0/24')) // 64 slots
    pool.claim(5) // found on the host at open: allocation goes on after it
    expect(pool.allocate().index).toBe(6)
    expect(pool.allocate().index).toBe(7)
    pool.release(6)
    expect(pool.allocate().index).toBe(8)
    const rest: number[] = []
    for (let i = 0; i < 61; i++) rest.push(pool.allocate().index)
    expect(rest).not.toContain(5)
    expect(rest.at(-1)).toBe(6) // 9..63, 0..4, then the released one
    expect(pool.inUse).toBe(64)
    expect(code(() => pool.allocate())).toBe('sandbox_addresses_exhausted')
  })
})
