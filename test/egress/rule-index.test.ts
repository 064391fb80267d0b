// The rule index: interval lookups against a scan, and a policy too nested for the index (its
// rules are then scanned) deciding as the reference does.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { limits } from '../../src/core/limits.js'
import { compilePolicy } from '../../src/egress/policy/compile.js'
import { decide, type Flow } from '../../src/egress/policy/match.js'
import { IntervalIndex } from '../../src/egress/policy/rule-index.js'
import type { SandboxNetworkPolicy } from '../../src/egress/policy/types.js'
import { pbt } from './pbt.js'
import { referenceDecide } from './reference.js'

describe('IntervalIndex', () => {
  it('lists, ascending, exactly the rules whose ranges hold a point', () => {
    const range = fc
      .tuple(fc.integer({ min: 0, max: 200 }), fc.nat(60), fc.nat(30))
      .map(([lo, span, rule]) => ({ lo, hi: lo + span, rule }))
    fc.assert(
      fc.property(fc.array(range, { maxLength: 25 }), (ranges) => {
        const ix = IntervalIndex.build(ranges, 1_000_000)
        expect(ix).toBeDefined()
        for (let x = -1; x <= 262; x++) {
          const want = [...new Set(ranges.filter((r) => x >= r.lo && x <= r.hi).map((r) => r.rule))].sort(
            (a, b) => a - b,
          )
          expect(ix?.get(x), `x=${x}`).toEqual(want)
        }
      }),
      pbt(300),
    )
  })

  it('gives up past its entry bound', () => {
    const nested = Array.from({ length: 100 }, (_, i) => ({ lo: i, hi: 1_000, rule: i }))
    expect(IntervalIndex.build(nested, 1_000)).toBeUndefined()
    expect(IntervalIndex.build(nested, 10_000)).toBeDefined()
  })
})

describe('a policy too nested to index', () => {
  it('still decides as the reference does', () => {
    // Rule i opens ports i..65535: every rule covers every interval after its own start.
    const n = Math.ceil(Math.sqrt(2 * limits.egressRuleIndexEntriesMax)) + 10
    const p: SandboxNetworkPolicy = {
      mode: 'block-all',
      egress: {
        trafficRules: Array.from({ length: n }, (_, i) => ({
          action: i % 3 === 0 ? ('deny' as const) : ('allow' as const),
          ports: [{ port: i + 1, endPort: 65_535 }],
        })),
      },
    }
    const c = compilePolicy(p)
    expect(c.index.tcpPorts).toBeUndefined()
    expect(c.index.always.length).toBe(n)
    for (const port of [1, 2, 3, 50, n, n + 1, 65_535]) {
      const f: Flow = { transport: 'tcp', ip: '8.8.8.8', port, names: [] }
      expect(decide(c, f)).toEqual(referenceDecide(c.policy, f))
    }
  })
})
