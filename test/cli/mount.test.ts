// `s0 mount` as a real process: files written through it survive its exit; a mount left stale by
// a killed process (daemon and its auto_unmount helper both killed) is recovered by the next
// mount at the same place; SIGINT unmounts cleanly.
import { execFile } from 'node:child_process'
import * as fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { asTeamId } from '../../src/core/ids.js'
import { PgVolumeCatalog } from '../../src/snapshots/volume-catalog.js'
import { freshDb, type TestDb } from '../support/db.js'
import { spawnS0, type S0Process } from '../support/s0-process.js'

const run = promisify(execFile)
let tdb: TestDb
let stateDir: string
let dir: string
let volumeId: string

function mountProcess(): Promise<S0Process> {
  return spawnS0(['mount', volumeId, dir], {
    env: { S0_STATE_DIR: stateDir, DATABASE_URL: tdb.url, S0_LOG_LEVEL: 'warn' },
    readyOn: 'mounted',
  })
}

async function mountState(): Promise<'mounted' | 'stale' | 'none'> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8')
  if (!info.split('\n').some((l) => l.split(' ')[4] === dir)) return 'none'
  return fs.stat(dir).then(
    () => 'mounted',
    () => 'stale',
  )
}

beforeAll(async () => {
  tdb = await freshDb()
  stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 's0-cli-mount-'))
  await fs.chmod(stateDir, 0o755)
  dir = path.join(stateDir, 'mnt')
  const team = asTeamId('team-cli-mount')
  await tdb.db.query(`INSERT INTO teams (id, name) VALUES ($1, 'cli') ON CONFLICT DO NOTHING`, [team])
  volumeId = (await new PgVolumeCatalog(tdb.db).create(team)).id
})

afterAll(async () => {
  await run('fusermount', ['-uz', dir]).catch(() => undefined)
  await tdb?.drop()
  if (stateDir) await fs.rm(stateDir, { recursive: true, force: true })
})

describe('s0 mount', () => {
  it('serves a volume, recovers a stale mount point, and unmounts on SIGINT', async () => {
    let s0 = await mountProcess()
    await fs.mkdir(path.join(dir, 'a'))
    await fs.writeFile(path.join(dir, 'a', 'hello.txt'), 'hello from s0 mount\n')

    // Kill the daemon and its auto-unmount helper at once (fuse-native: fusermount; lowlevel:
    // a watchdog sh): the mount stays, dead.
    const helpers: string[] = []
    for (const name of ['fusermount', 'sh']) {
      const out = await run('pgrep', ['-x', '-P', String(s0.child.pid), name]).catch(() => ({ stdout: '' }))
      helpers.push(...out.stdout.split('\n').filter(Boolean))
    }
    for (const pid of helpers) process.kill(Number(pid), 'SIGKILL')
    s0.child.kill('SIGKILL')
    await s0.exited
    expect(await mountState()).toBe('stale')

    // The next mount clears it and serves the same files (close made them durable).
    s0 = await mountProcess()
    expect(await mountState()).toBe('mounted')
    expect(await fs.readFile(path.join(dir, 'a', 'hello.txt'), 'utf8')).toBe('hello from s0 mount\n')

    s0.child.kill('SIGINT')
    expect((await s0.exited).code).toBe(0)
    expect(await mountState()).toBe('none')
  }, 120_000)
})
