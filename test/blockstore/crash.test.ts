// kill -9 of a writer in the middle of its stream: every acknowledged write reads back intact,
// no index row points at a missing or partial pack, and writing again succeeds.
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fsck } from '../../src/blockstore/fsck.js'
import { asTeamId } from '../../src/core/ids.js'
import { freshDb, type TestDb } from '../support/db.js'
import { prng, readAll, reopenStore } from '../support/store.js'
import { collectGarbage } from '../../src/blockstore/gc.js'

const CHILD = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'support', 'writer-child.ts')
const team = asTeamId('team-crash')
let tdb: TestDb
let dir: string

beforeAll(async () => {
  tdb = await freshDb()
  dir = await mkdtemp(path.join(os.tmpdir(), 's0-crash-'))
})
afterAll(async () => {
  await tdb.drop()
  await rm(dir, { recursive: true, force: true })
})

interface Acked {
  i: number
  refs: Array<{ hash: Buffer; size: number }>
}

async function runAndKill(objectsDir: string, killAfterAcks: number): Promise<Acked[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, tdb.url, objectsDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const acked: Acked[] = []
  let buf = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        const m = /^acked (\d+) (.*)$/.exec(line)
        if (!m) continue
        const refs = (JSON.parse(m[2] as string) as Array<[string, number]>).map(([h, size]) => ({
          hash: Buffer.from(h, 'hex'),
          size,
        }))
        acked.push({ i: Number(m[1]), refs })
        // Kill while the next write is in flight (its chunks are being packed or uploaded).
        if (acked.length === killAfterAcks) setTimeout(() => child.kill('SIGKILL'), 15 + killAfterAcks * 7)
      }
    })
    child.once('exit', (code, signal) =>
      signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited ${code}`)),
    )
  })
  return acked
}

describe('crash safety', () => {
  it('survives kill -9 of a writer mid-stream, several times', async () => {
    const objectsDir = path.join(dir, 'objects')
    const all: Acked[] = []
    for (const killAfter of [3, 5, 9]) all.push(...(await runAndKill(objectsDir, killAfter)))
    expect(all.length).toBeGreaterThanOrEqual(17)

    // A fresh store (as after a restart) over the crashed writer's database and objects.
    const store = await reopenStore({ db: tdb.db, objectsDir })
    try {
      const report = await fsck(store)
      expect(report.problems.filter((p) => p.kind !== 'orphan_object')).toEqual([])
      for (const a of all) {
        const size = a.i % 4 === 0 ? 6 * 1024 * 1024 + a.i : 64 * 1024 + a.i
        expect((await readAll(store, team, a.refs)).equals(prng(size, 9000 + a.i))).toBe(true)
      }
      // Writing the interrupted data again succeeds, and GC cleans what the crashes left.
      const next = Math.max(...all.map((a) => a.i)) + 1
      const data = prng(next % 4 === 0 ? 6 * 1024 * 1024 + next : 64 * 1024 + next, 9000 + next)
      const refs = await store.put(team, data)
      expect((await readAll(store, team, refs)).equals(data)).toBe(true)
      await store.createRoot(team, {
        kind: 'test',
        hashes: [...all.flatMap((a) => a.refs.map((r) => r.hash)), ...refs.map((r) => r.hash)],
      })
      await collectGarbage(store, { gracePeriodMs: 0, orphanMinAgeMs: 0 })
      expect((await fsck(store)).problems).toEqual([])
    } finally {
      await store.close()
    }
  })
})
