// `s0 sync` as a user runs it: real processes of the CLI against a real server. One pass with
// --json figures; live in the foreground until SIGINT; --daemon with list, status and stop;
// conflicts and resolve; clear errors for bad invocations.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnS0 } from '../support/s0-process.js'
import { syncFixture, until, volumeTree, volumeWrite, type SyncFixture } from './support.js'

let fx: SyncFixture
let env: NodeJS.ProcessEnv
let stateHome: string

beforeAll(async () => {
  fx = await syncFixture()
  stateHome = await mkdtemp(path.join(os.tmpdir(), 's0-sync-home-'))
  env = { S0_API_URL: fx.server.url, S0_TOKEN: fx.server.token, XDG_STATE_HOME: stateHome }
}, 60_000)

afterAll(async () => {
  await fx?.close()
  if (stateHome) await rm(stateHome, { recursive: true, force: true })
})

async function s0(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = await spawnS0(['sync', ...args], { env })
  const { code } = await p.exited
  return { code, stdout: p.stdout(), stderr: p.stderr() }
}

describe('s0 sync (CLI)', () => {
  it('--once --json reports what one pass did; usage errors are clear', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    await writeFile(path.join(dir, 'a.txt'), 'A'.repeat(100_000))
    await writeFile(path.join(dir, 'b.txt'), 'b')
    const r = await s0([dir, id, '--once', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const j = JSON.parse(r.stdout) as Record<string, number>
    expect(j).toMatchObject({ pushed_files: 2, pulled_files: 0, conflicts: 0 })
    expect(j['bytes_sent']).toBeGreaterThan(0)
    expect(await volumeTree(vfs)).toEqual({ 'a.txt': `file:${'A'.repeat(100_000)}`, 'b.txt': 'file:b' })
    // Nothing to do the second time: nothing sent but the question and the listing.
    const again = JSON.parse((await s0([dir, id, '--once', '--json'])).stdout) as Record<string, number>
    expect(again).toMatchObject({ pushed_files: 0, pulled_files: 0 })

    expect((await s0([dir, id, '--mode', 'sideways'])).stderr).toContain('--mode must be')
    expect((await s0([dir, id, '--mode', 'two-way-resolved'])).stderr).toContain('needs --winner')
    expect((await s0([dir, 'vol-does-not-exist', '--once'])).code).toBe(1)
    const other = await fx.tempDir()
    await writeFile(path.join(other, 'x'), 'x')
    const mismatch = await s0([dir, `${id}:/elsewhere`, '--once'])
    expect(mismatch.stderr).toMatch(/is synced with .*remove \.s0sync\/ to start over/)
    const ambiguous = await s0([other, id, '--once'])
    expect(ambiguous.code).toBe(1)
    expect(ambiguous.stderr).toContain('--init-from local|remote')
  }, 120_000)

  it('live in the foreground until SIGINT, then as a daemon with list, status and stop', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    const p = await spawnS0(['sync', dir, id], { env })
    await until(
      async () => p.stderr(),
      (s) => s.includes('s0 sync: live'),
      30_000,
    )
    await writeFile(path.join(dir, 'live.txt'), 'typed in the editor')
    await until(
      () => volumeTree(vfs),
      (t) => t['live.txt'] === 'file:typed in the editor',
    )
    await volumeWrite(vfs, '/agent.txt', 'written by the agent')
    await until(
      () => readFile(path.join(dir, 'agent.txt'), 'utf8').catch(() => ''),
      (s) => s === 'written by the agent',
    )
    p.child.kill('SIGINT')
    expect((await p.exited).code).toBe(0)
    expect(p.stderr()).toContain('s0 sync: stopped')

    const d = await s0([dir, id, '--daemon'])
    expect(d.code, d.stderr).toBe(0)
    expect(d.stdout).toMatch(/running in the background \(pid \d+\)/)
    await until(
      async () => readFile(path.join(dir, '.s0sync', 'log'), 'utf8').catch(() => ''),
      (s) => s.includes('s0 sync: live'),
      30_000,
    )
    expect((await s0(['list'])).stdout).toMatch(new RegExp(`${dir}\\t${id}:/\\tpid \\d+\\trunning`))
    expect((await s0(['status', dir])).stdout).toContain(`${dir} ⇄ ${id}:/`)
    await volumeWrite(vfs, '/while-daemon.txt', 'x')
    await until(
      () => readdir(dir),
      (names) => names.includes('while-daemon.txt'),
    )
    const stopped = await s0(['stop', dir])
    expect(stopped.stdout).toContain('stopped')
    expect((await s0(['list'])).stdout).toBe('no sync sessions\n')
  }, 120_000)

  it('lists conflicts and resolves them by keeping local, remote or both', async () => {
    const { id, vfs } = await fx.newVolume()
    const dir = await fx.tempDir()
    for (const f of ['k1', 'k2', 'k3']) await writeFile(path.join(dir, f), 'base')
    expect((await s0([dir, id, '--once'])).code).toBe(0)
    for (const f of ['k1', 'k2', 'k3']) {
      await writeFile(path.join(dir, f), 'mine')
      await volumeWrite(vfs, `/${f}`, 'theirs')
    }
    expect((await s0([dir, id, '--once'])).code).toBe(0)
    const listed = (await s0(['conflicts', dir])).stdout
    expect(listed.split('\n').filter(Boolean)).toHaveLength(3)
    expect(listed).toContain('changed on both sides')
    const copyOf = (f: string): string =>
      (listed.match(new RegExp(`^${f}\\t.*other version: (\\S+)`, 'm')) as RegExpMatchArray)[1] as string
    const c2 = copyOf('k2')
    expect((await s0(['resolve', path.join(dir, 'k1'), '--keep', 'local'])).code).toBe(0)
    expect((await s0(['resolve', path.join(dir, 'k2'), '--keep', 'remote'])).code).toBe(0)
    expect((await s0(['resolve', path.join(dir, 'k3'), '--keep', 'both'])).code).toBe(0)
    expect((await s0(['conflicts', dir])).stdout).toBe('no conflicts\n')
    expect(await readFile(path.join(dir, 'k1'), 'utf8')).toBe('mine')
    expect(await readFile(path.join(dir, 'k2'), 'utf8')).toBe('theirs')
    expect((await readdir(dir)).filter((n) => n.startsWith('k3.conflict-remote-'))).toHaveLength(1)
    expect(await readdir(dir)).not.toContain(c2)
    // The choices reach the volume like any edit.
    expect((await s0([dir, id, '--once'])).code).toBe(0)
    const t = await volumeTree(vfs)
    expect(t['k1']).toBe('file:mine')
    expect(t['k2']).toBe('file:theirs')
    expect(Object.keys(t).filter((n) => n.startsWith('k1.conflict') || n.startsWith('k2.conflict'))).toEqual(
      [],
    )
    expect((await s0(['resolve', path.join(dir, 'k1'), '--keep', 'local'])).stderr).toContain(
      'no conflict listed',
    )
  }, 120_000)
})
