// The driver contract against real runc and runsc containers driven through our own containerd
// (src/runtime/containerd/): runc under containerd's runc v2 shim, runsc under the same shim as
// its BinaryName. And how S0_RUNTIMES names a runtime driven through containerd.
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/core/config.js'
import { driverContract } from './driver.contract.js'

describe('S0_RUNTIMES with containerd', () => {
  it('`containerd:<runtime>` keeps the runtime in the preference and marks it as driven through containerd', () => {
    const c = loadConfig({ S0_RUNTIMES: 'containerd:runsc,runc' })
    expect(c.runtimes).toEqual(['runsc', 'runc'])
    expect(c.containerdRuntimes).toEqual(['runsc'])
    expect(loadConfig({}).containerdRuntimes).toEqual([]) // the CLIs stay the default
  })

  it('refuses crun through containerd and a runtime named twice', () => {
    for (const bad of ['containerd:crun', 'containerd:runc,runc']) {
      expect(() => loadConfig({ S0_RUNTIMES: bad }), bad).toThrow(/S0_RUNTIMES/)
    }
  })
})

driverContract('runc', { via: 'containerd' })
driverContract('runsc', { via: 'containerd' })
