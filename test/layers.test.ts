// The code's shape, checked: layers import downward only (core <- blockstore <- snapshots <-
// fuse/runtime/egress/sync <- accounts/sandboxes <- api <- cli), no import cycle anywhere in src/
// (type-only imports count: a cycle of types is a cycle of meaning), and the API's route plugins
// never import each other or the server. eslint enforces the direction while editing; this test
// makes CI enforce all three.
import { readFileSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = path.resolve(import.meta.dirname, '..')
// One table of ranks for this test and eslint.config.js.
const RANK = JSON.parse(readFileSync(path.join(ROOT, 'tools', 'layers.json'), 'utf8')) as Record<
  string,
  number
>
const SRC = path.join(ROOT, 'src')

async function files(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...(await files(p)))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

/** Relative imports of a file (static, type-only, re-exports, dynamic), as src-relative .ts paths. */
async function importsOf(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)'(\.[^']+)'/gm)) {
    const target = path.resolve(path.dirname(file), (m[1] as string).replace(/\.js$/, '.ts'))
    out.push(path.relative(SRC, target))
  }
  return out
}

async function graph(): Promise<Map<string, string[]>> {
  const g = new Map<string, string[]>()
  for (const file of await files(SRC)) g.set(path.relative(SRC, file), await importsOf(file))
  return g
}

/** Strongly connected components with more than one module, or a module importing itself (Tarjan). */
function cycles(g: Map<string, string[]>): string[][] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const onStack = new Set<string>()
  const stack: string[] = []
  const out: string[][] = []
  let next = 0
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of g.get(v) ?? []) {
      if (!g.has(w)) continue
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number))
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = []
      for (;;) {
        const w = stack.pop() as string
        onStack.delete(w)
        scc.push(w)
        if (w === v) break
      }
      if (scc.length > 1 || (g.get(v) ?? []).includes(v)) out.push(scc.sort())
    }
  }
  for (const v of g.keys()) if (!index.has(v)) visit(v)
  return out
}

describe('layering', () => {
  it('every import in src/ points to the same folder or a lower layer', async () => {
    const violations: string[] = []
    for (const [file, imports] of await graph()) {
      const layer = file.split(path.sep)[0] as string
      expect(RANK[layer], `unknown layer folder src/${layer}`).toBeDefined()
      for (const target of imports) {
        if (target.startsWith('..')) {
          violations.push(`${file} imports outside src/: ${target}`)
          continue
        }
        const to = target.split(path.sep)[0] as string
        if (to !== layer && (RANK[to] ?? 99) >= (RANK[layer] ?? 0)) violations.push(`${file} -> ${target}`)
      }
    }
    expect(violations).toEqual([])
  })

  it('src/ has no import cycle, not even inside a folder', async () => {
    expect(cycles(await graph())).toEqual([])
  })

  it('the cycle check finds a cycle when there is one', () => {
    const g = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['d.ts']],
      ['e.ts', ['a.ts']],
    ])
    expect(cycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts'], ['d.ts']])
  })

  it('API route plugins import neither another route nor the server', async () => {
    const violations: string[] = []
    for (const [file, imports] of await graph()) {
      if (!file.startsWith(path.join('api', 'routes') + path.sep)) continue
      for (const target of imports)
        if (
          target.startsWith(path.join('api', 'routes') + path.sep) ||
          target === path.join('api', 'server.ts')
        )
          violations.push(`${file} -> ${target}`)
    }
    expect(violations).toEqual([])
  })
})
