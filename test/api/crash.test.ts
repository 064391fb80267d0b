// kill -9 of a running `s0 server` while clients write and fsync files through the API: after a
// restart every acknowledged write reads back intact and fsck finds no damage.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fsck } from '../../src/blockstore/fsck.js'
import { serverProcesses, type ServerProcesses } from '../support/server.js'
import { prng, reopenStore } from '../support/store.js'
import path from 'node:path'

let servers: ServerProcesses

beforeAll(async () => {
  servers = await serverProcesses({ prefix: 's0-crash-api-' })
})
afterAll(async () => {
  await servers?.close()
})

describe('server crash safety', () => {
  it('keeps every acknowledged API write across kill -9', async () => {
    await servers.start()
    const api = servers.api
    const created = (await (
      await api('/api/v1/sandboxvolumes', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      })
    ).json()) as {
      data: { id: string }
    }
    const vol = created.data.id
    const content = (i: number): Buffer => prng(i % 5 === 0 ? 1_500_000 : 3000 + i, 700 + i)

    const acked: number[] = []
    const refused: string[] = []
    let lanesDone = 0
    const writer = async (lane: number): Promise<void> => {
      try {
        for (let i = lane; ; i += 4) {
          const res = await api(`/api/v1/sandboxvolumes/${vol}/files?path=/lane${lane}/f${i}`, {
            method: 'POST',
            headers: { 'content-type': 'application/octet-stream' },
            body: content(i),
          }).catch(() => undefined)
          if (!res) return // the server died
          if (!res.ok) {
            refused.push(`${res.status} ${await res.text()}`)
            return
          }
          acked.push(i)
        }
      } finally {
        lanesDone++
      }
    }
    const lanes = [0, 1, 2, 3].map((l) => writer(l))
    while (acked.length < 40 && lanesDone < 4) await new Promise((r) => setTimeout(r, 20))
    expect(refused).toEqual([])
    await servers.kill('SIGKILL')
    await Promise.all(lanes)

    await servers.start()
    try {
      for (const i of acked) {
        const res = await api(`/api/v1/sandboxvolumes/${vol}/files?path=/lane${i % 4}/f${i}`)
        expect(res.status, `file ${i}`).toBe(200)
        expect(Buffer.from(await res.arrayBuffer()).equals(content(i)), `file ${i} content`).toBe(true)
      }
      // The volume is writable again right away: the restarted server holds its old lease.
      const again = await api(`/api/v1/sandboxvolumes/${vol}/files?path=/after`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: 'ok',
      })
      expect(again.status).toBe(200)
    } finally {
      await servers.kill('SIGTERM')
    }
    const store = await reopenStore({
      db: servers.tdb.db,
      objectsDir: path.join(servers.stateDir, 'objects'),
    })
    const report = await fsck(store)
    expect(report.problems.filter((p) => p.kind !== 'orphan_object')).toEqual([])
    expect(report.chunksChecked).toBeGreaterThan(0)
    await store.close()
  })
})
