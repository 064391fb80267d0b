// End to end: the official SDK's volumes.importArchive (sandbox0@0.9.5) against a listening s0
// server. Archives come from GNU tar; hostile ones are refused with a 400 and change nothing.
import { execFileSync } from 'node:child_process'
import { chmod, link, mkdir, symlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ArchiveImportLimits } from '../../src/snapshots/archive-import.js'
import { startTestServer, type TestServer } from '../support/server.js'
import { prng } from '../support/store.js'
import { sdkError } from '../support/sdk.js'

const MiB = 1024 * 1024
const MTIME_S = 1_700_000_000
const BIG_BYTES = 3 * MiB + 5
// Small enough to trip with a test-sized archive; production uses core/limits.ts.
const TEST_LIMITS: ArchiveImportLimits = { archiveEntriesMax: 100, fileUploadBytesMax: 8 * MiB }

let server: TestServer
let client: Client
let baseUrl: string
let token: string
let work: string

beforeAll(async () => {
  server = await startTestServer({ build: { archiveLimits: TEST_LIMITS } })
  token = server.token
  work = path.join(server.stateDir, 'work')
  baseUrl = server.url + '/'
  client = new Client({ token, baseUrl })
})

afterAll(async () => {
  await server.close()
})

function tar(args: string[]): Buffer {
  return execFileSync('tar', [...args, '-cf', '-'], {
    maxBuffer: 64 * MiB,
    stdio: ['ignore', 'pipe', 'ignore'],
  })
}

async function dir(name: string): Promise<string> {
  const d = path.join(work, name)
  await mkdir(d, { recursive: true })
  return d
}

/** Every entry in the volume, through the SDK: path, type, mode, size, link target. */
async function listTree(volumeId: string, at = '/'): Promise<string[]> {
  const out: string[] = []
  for (const f of await client.volumes.listFiles(volumeId, at)) {
    out.push(`${f.path} ${f.type} ${f.mode} ${f.size} ${f.linkTarget ?? ''}`)
    if (f.type === 'dir') out.push(...(await listTree(volumeId, f.path ?? '')))
  }
  return out
}

describe('sandbox0 SDK 0.9.5: volumes.importArchive', () => {
  it('extracts a GNU tar (pax) tree that reads back byte for byte with its modes', async () => {
    const src = await dir('tree')
    await mkdir(path.join(src, 'bin'))
    await mkdir(path.join(src, 'private'), { mode: 0o700 })
    const deep = path.join(src, 'deep', 'd'.repeat(70), 'e'.repeat(70))
    await mkdir(deep, { recursive: true })
    const files: Record<string, Buffer> = {
      'hello.txt': Buffer.from('hello world\n'),
      empty: Buffer.alloc(0),
      'bin/run.sh': Buffer.from('#!/bin/sh\necho hi\n'),
      'big.bin': prng(BIG_BYTES, 3),
      ['n'.repeat(200)]: Buffer.from('long name\n'),
      [path.relative(src, path.join(deep, 'f.txt'))]: Buffer.from('deep\n'),
      'private/secret': Buffer.from('s'),
    }
    for (const [name, data] of Object.entries(files)) await writeFile(path.join(src, name), data)
    await chmod(path.join(src, 'empty'), 0o600)
    await chmod(path.join(src, 'bin', 'run.sh'), 0o750)
    await symlink('hello.txt', path.join(src, 'link'))
    await symlink('../hello.txt', path.join(src, 'bin', 'up'))
    await link(path.join(src, 'hello.txt'), path.join(src, 'hard'))
    const all = execFileSync('find', [src], { encoding: 'utf8' }).split('\n').filter(Boolean)
    execFileSync('touch', ['-h', '-d', `@${MTIME_S}`, ...all])

    const v = await client.volumes.create({ defaultPosixUid: 1000, defaultPosixGid: 1000 })
    const result = await client.volumes.importArchive(
      v.id,
      '/proj/app',
      tar(['-C', src, '--format=pax', '--sort=name', '.']),
    )
    // hard and hello.txt are one file archived twice (a file, then a hard link); ./ is the
    // destination itself and is not counted.
    const bytes = Object.values(files).reduce((n, b) => n + b.length, 0)
    expect(result).toEqual({ files: 8, directories: 5, symlinks: 2, bytes })

    for (const [name, data] of Object.entries(files)) {
      const got = Buffer.from(await client.volumes.readFile(v.id, `/proj/app/${name}`))
      expect(got.equals(data), name).toBe(true)
    }
    expect(Buffer.from(await client.volumes.readFile(v.id, '/proj/app/hard')).toString()).toBe(
      'hello world\n',
    )
    const stat = (p: string) => client.volumes.statFile(v.id, `/proj/app/${p}`)
    expect((await stat('empty')).mode).toBe('0600')
    expect((await stat('bin/run.sh')).mode).toBe('0750')
    expect((await stat('hello.txt')).mode).toBe('0644')
    expect((await stat('private')).mode).toBe('0700')
    expect((await stat('big.bin')).modTime?.toISOString()).toBe(new Date(MTIME_S * 1000).toISOString())
    expect((await stat('bin')).modTime?.toISOString()).toBe(new Date(MTIME_S * 1000).toISOString())
    const up = await stat('bin/up')
    expect([up.type, up.isLink, up.linkTarget]).toEqual(['symlink', true, '../hello.txt'])
    const listed = await client.volumes.listFiles(v.id, '/proj/app')
    expect(listed.map((f) => `${f.name}:${f.type}`).sort()).toEqual(
      [
        'big.bin:file',
        'bin:dir',
        'deep:dir',
        'empty:file',
        'hard:file',
        'hello.txt:file',
        'link:symlink',
        `${'n'.repeat(200)}:file`,
        'private:dir',
      ].sort(),
    )
    expect((await client.volumes.listFiles(v.id, '/')).map((f) => f.name)).toEqual(['proj'])
  })

  it('a second import replaces files and merges into existing directories', async () => {
    const v = await client.volumes.create({})
    const a = await dir('merge-a')
    await mkdir(path.join(a, 'etc'))
    await writeFile(path.join(a, 'etc', 'keep.conf'), 'keep')
    await writeFile(path.join(a, 'etc', 'app.conf'), 'v1')
    await client.volumes.importArchive(v.id, '/', tar(['-C', a, 'etc']))
    const b = await dir('merge-b')
    await mkdir(path.join(b, 'etc'))
    await writeFile(path.join(b, 'etc', 'app.conf'), 'version 2')
    await writeFile(path.join(b, 'etc', 'new.conf'), 'new')
    const result = await client.volumes.importArchive(v.id, '/', tar(['-C', b, 'etc']))
    expect(result).toEqual({ files: 2, directories: 1, symlinks: 0, bytes: 12 })
    const read = async (p: string) => Buffer.from(await client.volumes.readFile(v.id, p)).toString()
    expect([await read('/etc/keep.conf'), await read('/etc/app.conf'), await read('/etc/new.conf')]).toEqual([
      'keep',
      'version 2',
      'new',
    ])
  })

  it('refuses hostile or broken archives with a 400, leaving the volume as it was', async () => {
    const v = await client.volumes.create({})
    await client.volumes.writeFile(v.id, '/dest/existing.txt', 'before')
    await client.volumes.writeFile(v.id, '/outside.txt', 'outside')
    const before = await listTree(v.id)

    const base = await dir('hostile')
    await mkdir(path.join(base, 'in'), { recursive: true })
    await writeFile(path.join(base, 'in', 'ok.txt'), 'ok')
    await writeFile(path.join(base, 'in', 'big.bin'), prng(3 * MiB, 4))
    await writeFile(path.join(base, 'evil.txt'), 'evil')
    await symlink('../../outside.txt', path.join(base, 'in', 'escape'))
    await writeFile(path.join(base, 'in', 'f'), 'f')
    await link(path.join(base, 'in', 'f'), path.join(base, 'in', 'h'))
    const good = tar(['-C', path.join(base, 'in'), 'ok.txt', 'big.bin'])
    const corrupt = Buffer.from(good)
    corrupt[0] = 0x5a // the first header's name changes; its checksum does not
    const cases: Array<[string, Buffer, string, RegExp]> = [
      // Good entries (3 MiB of them) first: they were already staged when the bad one arrived.
      [
        'a late "../" entry',
        tar(['-C', path.join(base, 'in'), '-P', 'ok.txt', 'big.bin', '../evil.txt']),
        'invalid_path',
        /\.\.\/evil\.txt/,
      ],
      ['an absolute entry', tar(['-P', path.join(base, 'evil.txt')]), 'invalid_path', /absolute/],
      [
        'a symlink out of the destination',
        tar(['-C', path.join(base, 'in'), 'ok.txt', 'escape']),
        'invalid_path',
        /"escape".*outside/,
      ],
      // The first name is renamed in the archive, so the hard link names nothing archived.
      [
        'a hard link to a file not in the archive',
        tar(['-C', path.join(base, 'in'), '--transform=s,^f$,g,H', 'f', 'h']),
        'invalid_path',
        /"h".*hard link/,
      ],
      ['a bad header checksum', corrupt, 'bad_request', /checksum/],
      ['a truncated archive', good.subarray(0, 512 + 1000), 'bad_request', /truncated/],
      [
        'a gzip-compressed archive',
        execFileSync('gzip', ['-c'], { input: good, maxBuffer: 64 * MiB }),
        'bad_request',
        /gzip/,
      ],
    ]
    for (const [what, archive, code, message] of cases) {
      const err = await sdkError(client.volumes.importArchive(v.id, '/dest', archive))
      expect([what, err.statusCode, err.code]).toEqual([what, 400, code])
      expect(err.message).toMatch(message)
      expect(await listTree(v.id), what).toEqual(before) // no staging directory left either
    }
    // Into a path that is a file: the destination is checked before anything is read.
    const onFile = await sdkError(client.volumes.importArchive(v.id, '/dest/existing.txt', good))
    expect([onFile.statusCode, onFile.code]).toEqual([409, 'path_not_directory'])
    expect(await listTree(v.id)).toEqual(before)
  })

  it('refuses tar bombs beyond the entry and byte limits', async () => {
    const v = await client.volumes.create({})
    await client.volumes.writeFile(v.id, '/keep.txt', 'keep')
    const before = await listTree(v.id)
    const many = await dir('bomb-many')
    for (let k = 0; k <= TEST_LIMITS.archiveEntriesMax; k++) await writeFile(path.join(many, `f${k}`), '')
    const tooMany = await sdkError(client.volumes.importArchive(v.id, '/x', tar(['-C', many, '.'])))
    expect([tooMany.statusCode, tooMany.code]).toEqual([429, 'quota_exceeded'])
    const big = await dir('bomb-big')
    await writeFile(path.join(big, 'a.bin'), prng(5 * MiB, 5))
    await writeFile(path.join(big, 'b.bin'), prng(5 * MiB, 6))
    const tooBig = await sdkError(client.volumes.importArchive(v.id, '/x', tar(['-C', big, '.'])))
    expect([tooBig.statusCode, tooBig.code]).toEqual([413, 'file_too_large'])
    expect(await listTree(v.id)).toEqual(before)
    // The refused uploads were drained: the same client goes on working.
    expect(Buffer.from(await client.volumes.readFile(v.id, '/keep.txt')).toString()).toBe('keep')
  })

  it('validates the request: content type, query, team', async () => {
    const v = await client.volumes.create({})
    const url = (q: string) => `${baseUrl}api/v1/sandboxvolumes/${v.id}/files/archive${q}`
    const put = (q: string, type: string, body: Buffer | string) =>
      fetch(url(q), {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': type },
        body,
      })
    const codeOf = async (r: Response) => [
      r.status,
      ((await r.json()) as { error: { code: string } }).error.code,
    ]
    const ok = tar(['-C', await dir('tree'), 'hello.txt'])
    expect(await codeOf(await put('?path=/a', 'application/json', '{}'))).toEqual([400, 'bad_request'])
    expect(await codeOf(await put('', 'application/x-tar', ok))).toEqual([400, 'bad_request'])
    expect(await codeOf(await put('?path=/a&mkdir=true', 'application/x-tar', ok))).toEqual([
      400,
      'bad_request',
    ])
    expect(await codeOf(await put('?path=/../a', 'application/x-tar', ok))).toEqual([400, 'invalid_path'])
    const res = await put('?path=/a', 'application/x-tar', ok)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      success: true,
      data: { files: 1, directories: 0, symlinks: 0, bytes: 12 },
    })
    const other = await fetch(
      `${baseUrl}api/v1/sandboxvolumes/00000000-0000-0000-0000-000000000000/files/archive?path=/`,
      {
        method: 'PUT',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-tar' },
        body: ok,
      },
    )
    expect(await codeOf(other)).toEqual([404, 'not_found'])
  })
})
