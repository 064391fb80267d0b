// No import cycle inside src/runtime, type-only imports and re-exports included: every module
// can be read (and changed) knowing only the ones below it.
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const DIR = path.resolve(import.meta.dirname, '..', '..', 'src', 'runtime')

/** Relative imports of every module, by file name: `import`, `import type`, `export ... from`, `import()`. */
async function graph(): Promise<Map<string, string[]>> {
  const g = new Map<string, string[]>()
  for (const f of (await readdir(DIR)).filter((n) => n.endsWith('.ts'))) {
    const text = await readFile(path.join(DIR, f), 'utf8')
    const deps = new Set<string>()
    for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)'(\.\/[^']+)'/gm)) {
      deps.add(path.basename((m[1] as string).replace(/\.js$/, '.ts')))
    }
    g.set(f, [...deps])
  }
  return g
}

function cycles(g: Map<string, string[]>): string[][] {
  const found: string[][] = []
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (f: string): void => {
    state.set(f, 'open')
    stack.push(f)
    for (const d of g.get(f) ?? []) {
      if (state.get(d) === 'open') found.push([...stack.slice(stack.indexOf(d)), d])
      else if (!state.has(d)) visit(d)
    }
    stack.pop()
    state.set(f, 'done')
  }
  for (const f of g.keys()) if (!state.has(f)) visit(f)
  return found
}

describe('src/runtime imports', () => {
  it('form no cycle, type-only ones included', async () => {
    const g = await graph()
    expect(g.get('sandbox-runtime.ts')).toContain('exec-handle.ts') // the parser sees imports
    expect(g.get('teardown.ts')).toContain('sandbox-record.ts') // and type-only ones
    for (const deps of g.values()) for (const d of deps) expect(g.has(d), d).toBe(true)
    expect(cycles(g).map((c) => c.join(' -> '))).toEqual([])
  })

  it('the checker finds a cycle when there is one', () => {
    const g = new Map([
      ['a.ts', ['b.ts']],
      ['b.ts', ['c.ts']],
      ['c.ts', ['a.ts']],
      ['d.ts', ['a.ts']],
    ])
    expect(cycles(g)).toEqual([['a.ts', 'b.ts', 'c.ts', 'a.ts']])
  })
})
