// kill -9 of a running `s0 server` while clients write and fsync files through the API: after a
// restart every acknowledged write reads back intact and fsck finds no damage.
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ChunkStore } from '../../src/blockstore/chunk-store.js'
import { fsck } from '../../src/blockstore/fsck.js'
import { LocalObjectStore } from '../../src/blockstore/local-object-store.js'
import { ResilientObjectStore } from '../../src/blockstore/resilient-object-store.js'
import { silentLogger } from '../../src/core/log.js'
import { freshDb, type TestDb } from '../support/db.js'
import { spawnServer } from '../support/server.js'
import { prng } from '../support/store.js'
import { freePort } from '../../tools/free-port.js'

let tdb: TestDb
let stateDir: string
let port: number

function startServer(): Promise<ChildProcess> {
  return spawnServer({ stateDir, port, databaseUrl: tdb.url })
}

beforeAll(async () => {
  tdb = await freshDb()
  stateDir = await mkdtemp(path.join(os.tmpdir(), 's0-crash-api-'))
  port = await freePort()
})
afterAll(async () => {
  await tdb.drop()
  await rm(stateDir, { recursive: true, force: true })
})

describe('server crash safety', () => {
  it('keeps every acknowledged API write across kill -9', async () => {
    let server = await startServer()
    const token = (await readFile(path.join(stateDir, 'token'), 'utf8')).trim()
    const api = (p: string, init: RequestInit = {}): Promise<Response> =>
      fetch(`http://127.0.0.1:${port}${p}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
      })
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
    // Listen for the exit before killing: waiting afterwards could miss the event.
    const exited = new Promise((r) => server.once('exit', r))
    server.kill('SIGKILL')
    await Promise.all(lanes)
    await exited

    server = await startServer()
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
      const exited2 = new Promise((r) => server.once('exit', r))
      server.kill('SIGTERM')
      await exited2
    }
    const store = await ChunkStore.open({
      db: tdb.db,
      objects: new ResilientObjectStore(await LocalObjectStore.open(path.join(stateDir, 'objects'))),
      log: silentLogger,
      diskCacheBytes: 0,
    })
    const report = await fsck(store)
    expect(report.problems.filter((p) => p.kind !== 'orphan_object')).toEqual([])
    expect(report.chunksChecked).toBeGreaterThan(0)
  })
})
