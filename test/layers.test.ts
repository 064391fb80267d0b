// Layers import downward only: core <- blockstore <- snapshots <- fuse/runtime/sync <- api <- cli.
// (eslint enforces the same rule while editing; this test makes CI enforce it too.)
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const RANK: Record<string, number> = {
  core: 0,
  blockstore: 1,
  snapshots: 2,
  fuse: 3,
  runtime: 3,
  sync: 3,
  api: 4,
  cli: 5,
}
const SRC = path.resolve(import.meta.dirname, '..', 'src')

async function files(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...(await files(p)))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

describe('layering', () => {
  it('every import in src/ points to the same or a lower layer', async () => {
    const violations: string[] = []
    for (const file of await files(SRC)) {
      const layer = path.relative(SRC, file).split(path.sep)[0] as string
      expect(RANK[layer], `unknown layer folder src/${layer}`).toBeDefined()
      const text = await readFile(file, 'utf8')
      for (const m of text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) {
        const target = path.resolve(path.dirname(file), m[1] as string)
        const rel = path.relative(SRC, target)
        if (rel.startsWith('..')) {
          violations.push(`${path.relative(SRC, file)} imports outside src/: ${m[1]}`)
          continue
        }
        const to = rel.split(path.sep)[0] as string
        if (to !== layer && (RANK[to] ?? 99) >= (RANK[layer] ?? 0))
          violations.push(`${path.relative(SRC, file)} -> ${rel}`)
      }
    }
    expect(violations).toEqual([])
  })
})
