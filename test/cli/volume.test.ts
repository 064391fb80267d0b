// `s0 volume` in-process against a listening s0 server (real Postgres, real chunk store): volume,
// snapshot and file commands over HTTP, streamed 3 MiB copies both ways, and the exit statuses.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { run } from '../../src/cli/volume-command.js'
import { runCommand, type CommandResult } from '../support/cli.js'
import { startTestServer, type TestServer } from '../support/server.js'
import { prng } from '../support/store.js'

let server: TestServer
let baseUrl: string
let token: string
let stateDir: string
let tmp: string

beforeAll(async () => {
  server = await startTestServer()
  ;({ url: baseUrl, token, stateDir } = server)
  tmp = await mkdtemp(path.join(os.tmpdir(), 's0-cli-files-'))
  // The command reads its connection from the environment, like the real CLI.
  vi.stubEnv('S0_API_URL', baseUrl)
  vi.stubEnv('S0_TOKEN', token)
})

afterAll(async () => {
  vi.unstubAllEnvs()
  await server?.close()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

/** Runs `s0 volume <args>` and captures what it writes (stdout as bytes: cat is binary). */
function volume(...args: string[]): Promise<CommandResult> {
  return runCommand(run, args)
}

/** Runs a command that must succeed and returns its stdout. */
async function ok(...args: string[]): Promise<string> {
  const r = await volume(...args)
  expect(r.err, `s0 volume ${args.join(' ')}`).toBe('')
  expect(r.code, `s0 volume ${args.join(' ')}`).toBe(0)
  return r.out
}

describe('s0 volume', () => {
  it('creates, lists, snapshots, restores, forks and deletes volumes', async () => {
    const id = (await ok('create', '--uid', '1000', '--gid', '1000')).trim()
    expect(id).toMatch(/^[0-9a-f-]{36}$/)
    const listed = await ok('ls')
    expect(listed).toMatch(/^ID\s+CREATED\s+USED_BYTES\s+SOURCE$/m)
    expect(listed).toMatch(new RegExp(`^${id}\\s+\\d{4}-\\d\\d-\\d\\dT\\S+Z\\s+\\d+\\s+-$`, 'm'))
    const asJson = JSON.parse(await ok('ls', '--json')) as Array<{ id: string; default_posix_uid: number }>
    expect(asJson.find((v) => v.id === id)?.default_posix_uid).toBe(1000)

    await writeFile(path.join(tmp, 'state.txt'), 'v1')
    await ok('cp', path.join(tmp, 'state.txt'), `${id}:/state.txt`)
    const snap = (await ok('snapshot', id, '--name', 'before', '--description', 'first')).trim()
    expect(snap).toMatch(/^\S+$/)
    const snaps = await ok('snapshots', id)
    expect(snaps).toMatch(/^ID\s+NAME\s+CREATED\s+SIZE_BYTES\s+DESCRIPTION$/m)
    expect(snaps).toMatch(new RegExp(`^${snap}\\s+before\\s+\\S+\\s+\\d+\\s+first$`, 'm'))

    await writeFile(path.join(tmp, 'state.txt'), 'v2')
    await ok('cp', path.join(tmp, 'state.txt'), `${id}:state.txt`)
    const fork = (await ok('fork', id)).trim()
    expect(fork).toMatch(/^[0-9a-f-]{36}$/)
    expect(await ok('ls')).toMatch(new RegExp(`^${fork}\\s+\\S+\\s+\\d+\\s+${id}$`, 'm'))
    expect(await ok('restore', id, snap)).toBe('')
    expect(await ok('cat', `${id}:/state.txt`)).toBe('v1')
    expect(await ok('cat', `${fork}:/state.txt`)).toBe('v2')

    const fromSnap = (await ok('create', '--from-snapshot', snap)).trim()
    expect(await ok('cat', `${fromSnap}:/state.txt`)).toBe('v1')

    for (const v of [id, fork, fromSnap]) await ok('rm', v)
    const left = await ok('ls')
    for (const v of [id, fork, fromSnap]) expect(left).not.toContain(v)
  })

  it('copies a 3 MiB file up and down, byte for byte, and manages files', async () => {
    const id = (await ok('create')).trim()
    const big = prng(3 * 1024 * 1024 + 7, 42)
    const local = path.join(tmp, 'big.bin')
    await writeFile(local, big)
    await ok('cp', local, `${id}:/data/big.bin`)
    // A trailing slash copies under the local file's name.
    await ok('cp', local, `${id}:/data/`)

    const back = path.join(tmp, 'back.bin')
    await ok('cp', `${id}:/data/big.bin`, back)
    expect((await readFile(back)).equals(big)).toBe(true)
    const toStdout = await volume('cp', `${id}:/data/big.bin`, '-')
    expect(toStdout.code).toBe(0)
    expect(toStdout.bytes.equals(big)).toBe(true)
    expect((await volume('cat', `${id}:/data/big.bin`)).bytes.equals(big)).toBe(true)

    await ok('mkdir', `${id}:/a/b/c`, '-p')
    await writeFile(path.join(tmp, 'hello.txt'), 'hello world')
    await ok('cp', path.join(tmp, 'hello.txt'), `${id}:/a/hello.txt`)
    await ok('mv', `${id}:/a/hello.txt`, `${id}:/a/b/hi.txt`)
    expect(await ok('cat', `${id}:/a/b/hi.txt`)).toBe('hello world')

    const root = await ok('ls', `${id}:/`)
    expect(root).toMatch(/^MODE\s+SIZE\s+MTIME\s+NAME$/m)
    expect(root).toMatch(/^drwxr-xr-x\s+\d+\s+\d{4}-\d\d-\d\dT\S+Z\s+a$/m)
    expect(root).toMatch(/^drwxr-xr-x\s+\d+\s+\S+\s+data$/m)
    const data = await ok('ls', `${id}:/data`)
    expect(data).toMatch(new RegExp(`^-rw-r--r--\\s+${big.length}\\s+\\S+\\s+big\\.bin$`, 'm'))
    const sub = JSON.parse(await ok('ls', `${id}:/a/b`, '--json')) as Array<{ name: string; type: string }>
    expect(sub.map((f) => `${f.name}:${f.type}`).sort()).toEqual(['c:dir', 'hi.txt:file'])
    // A file path lists that one file, like ls(1).
    expect(await ok('ls', `${id}:/a/b/hi.txt`)).toMatch(/^-rw-r--r--\s+11\s+\S+\s+hi\.txt$/m)

    await ok('rm', `${id}:/a/b/hi.txt`)
    const gone = await volume('cat', `${id}:/a/b/hi.txt`)
    expect(gone.code).toBe(1)
    expect(gone.err).toMatch(/^s0 volume: .+ \[\w+\]\n$/)
    expect(await ok('ls', `${id}:/a/b`)).not.toContain('hi.txt')
    // mkdir without -p needs the parent.
    expect((await volume('mkdir', `${id}:/x/y`)).code).toBe(1)
    await ok('rm', id)
  })

  it('reports server errors with their code and exit status 1', async () => {
    const missing = '00000000-0000-4000-8000-000000000000'
    for (const args of [
      ['rm', missing],
      ['snapshots', missing],
      ['cat', `${missing}:/x`],
    ]) {
      const r = await volume(...args)
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.err).toMatch(/^s0 volume: .+ \[not_found\]\n$/)
      expect(r.out).toBe('')
    }
    // The server refuses before reading the streamed body; the reply still gets through.
    const bigLocal = path.join(tmp, 'refused.bin')
    await writeFile(bigLocal, prng(3 * 1024 * 1024, 7))
    const refused = await volume('cp', bigLocal, `${missing}:/x`)
    expect([refused.code, refused.err]).toEqual([1, expect.stringMatching(/\[not_found\]\n$/)])
    const noLocal = await volume('cp', path.join(tmp, 'does-not-exist'), `${missing}:/x`)
    expect(noLocal.code).toBe(1)
    expect(noLocal.err).toContain('[ENOENT]')
  })

  it('reads the token file from S0_STATE_DIR when S0_TOKEN is unset', async () => {
    vi.stubEnv('S0_TOKEN', '')
    vi.stubEnv('S0_STATE_DIR', stateDir)
    try {
      expect(await ok('ls')).toMatch(/^ID\s+CREATED/)
      vi.stubEnv('S0_STATE_DIR', tmp)
      const r = await volume('ls')
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/no API token.*\[no_token\]/)
    } finally {
      vi.stubEnv('S0_TOKEN', token)
    }
  })

  it('hints at `s0 server` when nothing listens', async () => {
    const port = await freePort()
    vi.stubEnv('S0_API_URL', `http://127.0.0.1:${port}`)
    try {
      const r = await volume('ls')
      expect(r.code).toBe(1)
      expect(r.err).toContain(`is \`s0 server\` running at http://127.0.0.1:${port}?`)
      expect(r.err).toContain('[ECONNREFUSED]')
    } finally {
      vi.stubEnv('S0_API_URL', baseUrl)
    }
  })

  it('exits 2 with the usage text on command-line mistakes', async () => {
    for (const args of [
      [],
      ['frob'],
      ['create', '--bogus'],
      ['create', '--uid', '-1'],
      ['create', '--gid', '1.5'],
      ['rm'],
      ['snapshot', 'v1'],
      ['restore', 'v1'],
      ['cp', 'a', 'b'],
      ['cp', 'v:/a', 'w:/b'],
      ['cat', 'local.txt'],
      ['mv', 'v:/a', 'w:/b'],
    ]) {
      const r = await volume(...args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.err + r.out, args.join(' ')).toContain('usage:')
    }
    expect((await volume('--help')).code).toBe(0)
  })
})

/** A port nothing listens on: bound, then released. */
async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const address = srv.address()
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}
