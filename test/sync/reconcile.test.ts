// The three-way reconciler and the ignore rules, as pure functions: each conflict rule of
// docs/SYNC.md on a table of small cases.
import { describe, expect, it } from 'vitest'
import { parseRules } from '../../src/cli/sync/ignore.js'
import type { LocalEntry } from '../../src/cli/sync/local.js'
import { reconcile, type Inputs, type RemoteEntry } from '../../src/cli/sync/reconcile.js'
import type { Ancestor } from '../../src/cli/sync/state.js'

const anc = (o: Partial<Ancestor> = {}): Ancestor => ({
  kind: 'file',
  mode: 0o644,
  size: 3,
  digest: 'd0',
  lmtime: '100',
  lino: 11,
  rversion: 'v0',
  rino: 21,
  rmtime: '100',
  ...o,
})
const loc = (path: string, o: Partial<LocalEntry> = {}): LocalEntry => ({
  path,
  kind: 'file',
  mode: 0o644,
  size: 3,
  mtimeNs: 100n,
  ino: 11,
  ...o,
})
const rem = (path: string, o: Partial<RemoteEntry> = {}): RemoteEntry => ({
  path,
  kind: 'file',
  mode: 0o644,
  size: 3,
  mtime_ns: '100',
  ino: 21,
  version: 'v0',
  ...o,
})

function plan(p: Partial<Inputs>): Array<[string, string]> {
  const r = reconcile({
    ancestors: new Map(),
    local: new Map(),
    remote: new Map(),
    digests: new Map(),
    mode: { mode: 'two-way-safe' },
    stamp: 'T',
    ...p,
  })
  return r.actions.map((a) => [
    a.do,
    'from' in a ? `${a.from}>${a.path}` : 'as' in a && a.as ? `${a.path}@${a.as}` : a.path,
  ])
}

const m = <T>(...xs: [string, T][]): Map<string, T> => new Map(xs)

describe('reconcile', () => {
  it('does nothing when neither side moved, and ignores a touch (same digest)', () => {
    expect(
      plan({ ancestors: m(['a', anc()]), local: m(['a', loc('a')]), remote: m(['a', rem('a')]) }),
    ).toEqual([])
    expect(
      plan({
        ancestors: m(['a', anc()]),
        local: m(['a', loc('a', { mtimeNs: 200n })]),
        remote: m(['a', rem('a')]),
        digests: m(['a', 'd0']),
      }),
    ).toEqual([])
  })

  it('sends a one-sided change to the other side: edit, create, delete, mode', () => {
    const A = m(['a', anc()])
    expect(
      plan({
        ancestors: A,
        local: m(['a', loc('a', { mtimeNs: 2n })]),
        remote: m(['a', rem('a')]),
        digests: m(['a', 'd1']),
      }),
    ).toEqual([['push', 'a']])
    expect(
      plan({
        ancestors: A,
        local: m(['a', loc('a')]),
        remote: m(['a', rem('a', { version: 'v1', mtime_ns: '7' })]),
      }),
    ).toEqual([['pull', 'a']])
    expect(plan({ ancestors: A, local: m(), remote: m(['a', rem('a')]) })).toEqual([['push-delete', 'a']])
    expect(plan({ ancestors: A, local: m(['a', loc('a')]), remote: m() })).toEqual([['pull-delete', 'a']])
    expect(plan({ local: m(['n', loc('n')]) })).toEqual([['push', 'n']])
    expect(plan({ remote: m(['n', rem('n')]) })).toEqual([['pull', 'n']])
    expect(
      plan({ ancestors: A, local: m(['a', loc('a', { mode: 0o755 })]), remote: m(['a', rem('a')]) }),
    ).toEqual([['push-chmod', 'a']])
    // Same inode, size and mtime remotely: a mode change only.
    expect(
      plan({
        ancestors: A,
        local: m(['a', loc('a')]),
        remote: m(['a', rem('a', { version: 'v2', mode: 0o755 })]),
      }),
    ).toEqual([['pull-chmod', 'a']])
  })

  it('records equal changes and compares same-size files instead of guessing', () => {
    expect(
      plan({ local: m(['d', loc('d', { kind: 'dir' })]), remote: m(['d', rem('d', { kind: 'dir' })]) }),
    ).toEqual([['record', 'd']])
    expect(
      plan({
        local: m(['l', loc('l', { kind: 'symlink', target: 'x' })]),
        remote: m(['l', rem('l', { kind: 'symlink', target: 'x' })]),
      }),
    ).toEqual([['record', 'l']])
    expect(plan({ local: m(['f', loc('f')]), remote: m(['f', rem('f')]), digests: m(['f', 'dx']) })).toEqual([
      ['compare', 'f'],
    ])
  })

  it('two-way-safe keeps both versions of a conflict, and a change beats a delete', () => {
    const A = m(['a', anc()])
    const bothEdited = {
      ancestors: A,
      local: m(['a', loc('a', { size: 4, mtimeNs: 5n })]),
      remote: m(['a', rem('a', { size: 9, version: 'v9', mtime_ns: '9' })]),
      digests: m(['a', 'd4']),
    }
    expect(plan(bothEdited)).toEqual([
      ['pull', 'a@a.conflict-remote-T'],
      ['push', 'a'],
    ])
    expect(
      plan({ ancestors: A, local: m(), remote: m(['a', rem('a', { version: 'v9', mtime_ns: '9' })]) }),
    ).toEqual([['pull', 'a']])
    expect(
      plan({
        ancestors: A,
        local: m(['a', loc('a', { mtimeNs: 5n })]),
        remote: m(),
        digests: m(['a', 'd5']),
      }),
    ).toEqual([['push', 'a']])
    // A file here, a directory there: ours moves aside, theirs comes.
    expect(
      plan({
        ancestors: A,
        local: m(['a', loc('a', { mtimeNs: 5n })]),
        remote: m(['a', rem('a', { kind: 'dir', version: 'vd', ino: 99 })]),
        digests: m(['a', 'd5']),
      }),
    ).toEqual([
      ['move-local-aside', 'a@a.conflict-local-T'],
      ['pull', 'a'],
    ])
  })

  it('two-way-resolved lets the winner take a conflict; one-way-replica follows its source', () => {
    const A = m(['a', anc()])
    const both = {
      ancestors: A,
      local: m(['a', loc('a', { size: 4, mtimeNs: 5n })]),
      remote: m(['a', rem('a', { size: 9, version: 'v9', mtime_ns: '9' })]),
      digests: m(['a', 'd4']),
    }
    expect(plan({ ...both, mode: { mode: 'two-way-resolved', winner: 'local' } })).toEqual([['push', 'a']])
    expect(plan({ ...both, mode: { mode: 'two-way-resolved', winner: 'remote' } })).toEqual([['pull', 'a']])
    // The replica's own change is undone by the source's state.
    const replica = {
      ancestors: A,
      local: m(['a', loc('a')]),
      remote: m(['a', rem('a', { version: 'v9', mtime_ns: '9' })]),
    }
    expect(plan({ ...replica, mode: { mode: 'one-way-replica', winner: 'local' } })).toEqual([['push', 'a']])
    expect(plan({ ...replica, mode: { mode: 'one-way-replica', winner: 'remote' } })).toEqual([['pull', 'a']])
  })

  it('finds renames on either side and sends them as renames', () => {
    const A = m(['old', anc()])
    expect(plan({ ancestors: A, local: m(['new', loc('new')]), remote: m(['old', rem('old')]) })).toEqual([
      ['push-rename', 'old>new'],
    ])
    expect(plan({ ancestors: A, local: m(['old', loc('old')]), remote: m(['new', rem('new')]) })).toEqual([
      ['pull-rename', 'old>new'],
    ])
    // A directory rename carries what it holds.
    const D = m<Ancestor>(['d', anc({ kind: 'dir', lino: 1, rino: 2, rversion: 'vd' })], ['d/f', anc()])
    expect(
      plan({
        ancestors: D,
        local: m(['e', loc('e', { kind: 'dir', ino: 1 })], ['e/f', loc('e/f')]),
        remote: m(['d', rem('d', { kind: 'dir', ino: 2, version: 'vd' })], ['d/f', rem('d/f')]),
      }),
    ).toEqual([['push-rename', 'd>e']])
  })

  it('deletes children before parents and counts them for the mass-delete guard', () => {
    const A = m<Ancestor>(
      ['d', anc({ kind: 'dir', rversion: 'vd' })],
      ['d/a', anc({ lino: 1 })],
      ['d/b', anc({ lino: 2 })],
    )
    const R = m(['d', rem('d', { kind: 'dir', version: 'vd' })], ['d/a', rem('d/a')], ['d/b', rem('d/b')])
    const r = reconcile({
      ancestors: A,
      local: m(),
      remote: R,
      digests: m(),
      mode: { mode: 'two-way-safe' },
      stamp: 'T',
    })
    expect(r.actions.map((a) => a.path)).toEqual(['d/b', 'd/a', 'd'])
    expect(r.deletes).toEqual({ local: 0, remote: 3 })
  })
})

describe('ignore rules', () => {
  const ignored = (rules: string, p: string, dir = false, base = ''): boolean => {
    let out = false
    for (const r of parseRules(rules, base)) {
      if (r.dirOnly && !dir) continue
      if (r.base !== '' && !p.startsWith(r.base + '/')) continue
      if (r.re.test(r.base === '' ? p : p.slice(r.base.length + 1))) out = !r.negate
    }
    return out
  }
  it('follows gitignore: globs, anchors, directory-only, negation, **', () => {
    expect(ignored('*.log', 'a/b/x.log')).toBe(true)
    expect(ignored('/build', 'build', true)).toBe(true)
    expect(ignored('/build', 'src/build', true)).toBe(false)
    expect(ignored('out/', 'out', false)).toBe(false)
    expect(ignored('out/', 'out', true)).toBe(true)
    expect(ignored('*.log\n!keep.log', 'keep.log')).toBe(false)
    expect(ignored('a/**/z', 'a/b/c/z')).toBe(true)
    expect(ignored('a/**/z', 'a/z')).toBe(true)
    expect(ignored('# comment\n\n\\#hash', '#hash')).toBe(true)
    expect(ignored('f?o.[ch]', 'src/fxo.c')).toBe(true)
    // A nested .gitignore applies below its directory only.
    expect(ignored('cache', 'src/cache', false, 'src')).toBe(true)
    expect(ignored('cache', 'cache', false, 'src')).toBe(false)
  })
})
