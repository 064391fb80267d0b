// The hosts file of S0_EGRESS_HOSTS: parsed, re-read when it changes, and never seen empty by
// lookups that arrive while its first read is in flight.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HostsFile } from '../../src/egress/dns/hosts.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-hosts-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('HostsFile', () => {
  it('answers every lookup that arrives during the first read', async () => {
    const f = path.join(dir, 'hosts')
    await writeFile(f, '198.18.0.2 api.bench.test\n')
    const h = new HostsFile(f)
    const got = await Promise.all([
      h.lookup('api.bench.test'),
      h.lookup('api.bench.test'),
      h.lookup('api.bench.test'),
    ])
    for (const e of got) expect(e?.v4.length).toBe(1)
  })

  it('reads the file again when it changes (after the check interval)', async () => {
    const f = path.join(dir, 'hosts2')
    await writeFile(f, '198.18.0.2 a.test\n')
    const h = new HostsFile(f, { checkIntervalMs: 0 })
    expect(await h.lookup('b.test')).toBeUndefined()
    await writeFile(f, '198.18.0.2 a.test\n198.18.0.3 b.test\n')
    expect((await h.lookup('b.test'))?.v4.length).toBe(1)
  })
})
