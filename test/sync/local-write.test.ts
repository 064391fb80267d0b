// The client's atomic local write (src/cli/sync/local.ts): what it leaves behind when the folder
// changes under it. A user may move a directory while a pull writes into it.
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeFileAtomic } from '../../src/cli/sync/local.js'

let root: string
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 's0-local-write-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('writeFileAtomic', () => {
  it('writes whole and renames into place', async () => {
    const target = path.join(root, 'a.txt')
    async function* pieces(): AsyncGenerator<Buffer> {
      yield Buffer.from('hello ')
      yield Buffer.from('world')
    }
    const e = await writeFileAtomic(target, pieces(), 0o640, 1_700_000_000_000_000_000n, null)
    expect(e).toMatchObject({ kind: 'file', size: 11, mode: 0o640, mtimeNs: 1_700_000_000_000_000_000n })
    expect(await readdir(root)).toEqual(['a.txt'])
  })

  it('leaves the target alone when it changed since (and no temporary file)', async () => {
    const dir = path.join(root, 'changed')
    await mkdir(dir)
    await writeFile(path.join(dir, 'b.txt'), 'mine')
    async function* pieces(): AsyncGenerator<Buffer> {
      yield Buffer.from('theirs')
    }
    expect(await writeFileAtomic(path.join(dir, 'b.txt'), pieces(), 0o644, 0n, null)).toBe(false)
    expect(await readdir(dir)).toEqual(['b.txt'])
  })

  it('leaves no temporary file in a directory moved while it wrote', async () => {
    const dir = path.join(root, 'before')
    await mkdir(dir)
    async function* pieces(): AsyncGenerator<Buffer> {
      yield Buffer.from('part one, ')
      // The user moves the directory between two pieces.
      await rename(dir, path.join(root, 'after'))
      yield Buffer.from('part two')
    }
    const err = await writeFileAtomic(path.join(dir, 'c.txt'), pieces(), 0o644, 0n, null).catch(
      (e: unknown) => e,
    )
    expect((err as { code?: string }).code).toBe('ENOENT')
    expect(await readdir(path.join(root, 'after'))).toEqual([])
  })
})
