// Three-way reconciliation of workspace sync (docs/SYNC.md "Conflict rules"): for every path,
// the local entry and the remote entry are compared with the last synced ancestor; a side that
// differs from the ancestor changed. One side changed: its state goes to the other. Both changed
// the same way: recorded. Both changed differently: a conflict, settled by the mode. Renames are
// found first (same inode, same content, gone from its old path) and sent as renames. Pure: the
// caller gives the local digests of files whose stat moved, and applies the plan.
import type { LocalEntry } from './local.js'
import type { WireEntry } from '../../api/wire/sync.js'
import type { Ancestor } from './state.js'

/** A volume entry as the sync routes answer it (api/wire/sync.ts). */
export type RemoteEntry = WireEntry

export type SyncMode = 'two-way-safe' | 'two-way-resolved' | 'one-way-replica'

export interface ModeOptions {
  mode: SyncMode
  /** two-way-resolved: who wins a conflict; one-way-replica: the source. */
  winner?: 'local' | 'remote'
}

export type Action =
  | { do: 'push'; path: string; local: LocalEntry; base: string | null }
  | { do: 'push-chmod'; path: string; local: LocalEntry; base: string }
  | { do: 'push-delete'; path: string; base: string }
  | { do: 'push-rename'; from: string; path: string; base: string }
  | { do: 'pull'; path: string; remote: RemoteEntry; expect: LocalEntry | null; as?: string }
  | { do: 'pull-chmod'; path: string; remote: RemoteEntry; local: LocalEntry }
  | { do: 'pull-delete'; path: string; local: LocalEntry }
  | { do: 'pull-rename'; from: string; path: string; local: LocalEntry; remote: RemoteEntry }
  /** Both sides hold the same thing: the ancestor becomes it. */
  | { do: 'record'; path: string; local: LocalEntry; remote: RemoteEntry }
  /** Gone on both sides. */
  | { do: 'forget'; path: string }
  /** Both files changed to the same size: the caller compares contents, then records or conflicts. */
  | { do: 'compare'; path: string; local: LocalEntry; remote: RemoteEntry }
  /** The local file moves aside (a directory comes from the remote where it was). */
  | { do: 'move-local-aside'; path: string; local: LocalEntry; as: string }

export interface Conflict {
  path: string
  /** What happened, for `s0 sync conflicts`. */
  reason: string
  /** Where the other version was kept, if a copy was made. */
  copy?: string
}

export interface Plan {
  actions: Action[]
  conflicts: Conflict[]
  /** Deletions the plan would make on each side (entries, directories' contents included). */
  deletes: { local: number; remote: number }
}

export interface Inputs {
  ancestors: ReadonlyMap<string, Ancestor>
  local: ReadonlyMap<string, LocalEntry>
  remote: ReadonlyMap<string, RemoteEntry>
  /** Digests of local files whose stat differs from their ancestor (absent: unreadable now). */
  digests: ReadonlyMap<string, string>
  mode: ModeOptions
  /** Names conflict copies: `name.conflict-remote-<stamp>`. */
  stamp: string
}

function localSame(a: Ancestor, l: LocalEntry): 'same' | 'stat' | 'mode' | 'changed' {
  if (a.kind !== l.kind) return 'changed'
  if (l.kind === 'symlink') return l.target === a.digest ? 'same' : 'changed'
  if (l.kind === 'dir') return l.mode === a.mode ? 'same' : 'mode'
  const statSame = l.size === a.size && l.mtimeNs.toString() === a.lmtime && l.ino === a.lino
  return statSame ? (l.mode === a.mode ? 'same' : 'mode') : 'stat'
}

function remoteSame(a: Ancestor, r: RemoteEntry): 'same' | 'mode' | 'changed' {
  if (r.version === a.rversion) return 'same'
  if (r.kind !== a.kind) return 'changed'
  if (r.kind === 'symlink') return r.target === a.digest ? 'same' : 'changed'
  if (r.kind === 'dir') return r.mode === a.mode ? 'same' : 'mode'
  const contentSame = r.ino === a.rino && r.size === a.size && r.mtime_ns === a.rmtime
  return contentSame ? (r.mode === a.mode ? 'same' : 'mode') : 'changed'
}

function under(p: string, dir: string): boolean {
  return p.startsWith(dir + '/')
}

function conflictName(p: string, side: 'local' | 'remote', stamp: string): string {
  return `${p}.conflict-${side}-${stamp}`
}

export function reconcile(inp: Inputs): Plan {
  const { ancestors: A, local: L, remote: R } = inp
  const actions: Action[] = []
  const conflicts: Conflict[] = []
  const handled = new Set<string>()

  // A local change of a file that only touched its stat (same digest) is no change.
  const lChange = (p: string): 'none' | 'content' | 'mode' => {
    const a = A.get(p)
    const l = L.get(p)
    if (!a) return l ? 'content' : 'none'
    if (!l) return 'content'
    const s = localSame(a, l)
    if (s === 'same') return 'none'
    if (s === 'mode') return 'mode'
    if (s === 'stat') {
      const d = inp.digests.get(p)
      if (d === a.digest) return l.mode === a.mode ? 'none' : 'mode'
    }
    return 'content'
  }
  const rChange = (p: string): 'none' | 'content' | 'mode' => {
    const a = A.get(p)
    const r = R.get(p)
    if (!a) return r ? 'content' : 'none'
    if (!r) return 'content'
    const s = remoteSame(a, r)
    return s === 'same' ? 'none' : s === 'mode' ? 'mode' : 'content'
  }

  const oneWay = inp.mode.mode === 'one-way-replica'
  if (!oneWay) findRenames()

  /** The local file holds the ancestor's content: same stat, or (stat not trusted) same digest. */
  function sameContent(a: Ancestor, l: LocalEntry, at: string): boolean {
    if (l.size !== a.size) return false
    if (l.mtimeNs.toString() === a.lmtime && l.ino === a.lino) return true
    return inp.digests.get(at) === a.digest
  }

  function findRenames(): void {
    const byLino = new Map<number, string>()
    const byRino = new Map<number, string>()
    for (const [p, a] of A) {
      if (!L.has(p)) byLino.set(a.lino, p)
      if (!R.has(p)) byRino.set(a.rino, p)
    }
    const sorted = (m: ReadonlyMap<string, unknown>): string[] => [...m.keys()].sort()
    // Local renames: a new local path holding the inode of an ancestor gone locally, unchanged
    // on both sides otherwise. Parents first, so a directory's rename covers what it holds.
    for (const p2 of sorted(L)) {
      if (A.has(p2) || R.has(p2) || [...handled].some((h) => under(p2, h))) continue
      const l = L.get(p2) as LocalEntry
      const p1 = byLino.get(l.ino)
      if (p1 === undefined || handled.has(p1)) continue
      const a = A.get(p1) as Ancestor
      const r = R.get(p1)
      if (a.kind !== l.kind || !r || remoteSame(a, r) !== 'same') continue
      if (l.kind === 'file' && !sameContent(a, l, p2)) continue
      actions.push({ do: 'push-rename', from: p1, path: p2, base: r.version })
      handled.add(p1)
      handled.add(p2)
    }
    for (const p2 of sorted(R)) {
      if (A.has(p2) || L.has(p2) || [...handled].some((h) => under(p2, h))) continue
      const r = R.get(p2) as RemoteEntry
      const p1 = byRino.get(r.ino)
      if (p1 === undefined || handled.has(p1)) continue
      const a = A.get(p1) as Ancestor
      const l = L.get(p1)
      if (a.kind !== r.kind || !l) continue
      if (l.kind === 'file' ? !sameContent(a, l, p1) || l.mode !== a.mode : localSame(a, l) !== 'same')
        continue
      if (r.kind === 'file' && !(r.size === a.size && r.mtime_ns === a.rmtime)) continue
      actions.push({ do: 'pull-rename', from: p1, path: p2, local: l, remote: r })
      handled.add(p1)
      handled.add(p2)
    }
  }

  const renamedDirs = [...handled]
  const paths = new Set<string>([...A.keys(), ...L.keys(), ...R.keys()])
  for (const p of [...paths].sort()) {
    if (handled.has(p) || renamedDirs.some((h) => under(p, h))) continue
    const a = A.get(p)
    const l = L.get(p) ?? null
    const r0 = R.get(p)
    const r = r0 && r0.kind !== 'other' ? r0 : null
    let lc = lChange(p)
    let rc = rChange(p)
    if (oneWay) {
      // A replica follows its source whatever the ancestor says.
      const fromLocal = inp.mode.winner !== 'remote'
      const same = equalEnough(l, r, a, inp.digests.get(p))
      if (same === true) {
        if (l && r) actions.push({ do: 'record', path: p, local: l, remote: r })
        else if (a) actions.push({ do: 'forget', path: p })
        continue
      }
      lc = fromLocal ? 'content' : 'none'
      rc = fromLocal ? 'none' : 'content'
      if (same === 'mode') {
        if (fromLocal) lc = 'mode'
        else rc = 'mode'
      }
    }
    if (lc === 'none' && rc === 'none') continue
    if (rc === 'none') {
      pushSide(p, l, r, lc)
      continue
    }
    if (lc === 'none') {
      pullSide(p, l, r, rc)
      continue
    }
    // Both changed.
    if (!l && !r) {
      actions.push({ do: 'forget', path: p })
      continue
    }
    if (l && r && l.kind === r.kind) {
      if (l.kind === 'dir') {
        if (l.mode === r.mode) actions.push({ do: 'record', path: p, local: l, remote: r })
        else actions.push({ do: 'push-chmod', path: p, local: l, base: r.version })
        continue
      }
      if (l.kind === 'symlink' && l.target === r.target) {
        actions.push({ do: 'record', path: p, local: l, remote: r })
        continue
      }
      if (l.kind === 'file' && lc === 'mode' && rc === 'mode') {
        actions.push({ do: 'push-chmod', path: p, local: l, base: r.version })
        continue
      }
      if (l.kind === 'file' && l.size === r.size && inp.mode.mode === 'two-way-safe') {
        actions.push({ do: 'compare', path: p, local: l, remote: r })
        continue
      }
    }
    settle(p, l, r)
  }

  function pushSide(
    p: string,
    l: LocalEntry | null,
    r: RemoteEntry | null,
    lc: 'content' | 'mode' | 'none',
  ): void {
    if (!l) {
      if (r) actions.push({ do: 'push-delete', path: p, base: r.version })
      else actions.push({ do: 'forget', path: p })
    } else if (lc === 'mode' && r && r.kind === l.kind)
      actions.push({ do: 'push-chmod', path: p, local: l, base: r.version })
    else if (r && r.kind === 'dir' && l.kind !== 'dir') {
      // A directory cannot be replaced in one step: its deletion goes first (it may fail if
      // the remote has content we have not seen, and then the next pass settles it).
      actions.push({ do: 'push-delete', path: p, base: r.version })
      actions.push({ do: 'push', path: p, local: l, base: null })
    } else actions.push({ do: 'push', path: p, local: l, base: r?.version ?? null })
  }

  function pullSide(
    p: string,
    l: LocalEntry | null,
    r: RemoteEntry | null,
    rc: 'content' | 'mode' | 'none',
  ): void {
    if (!r) {
      if (l) actions.push({ do: 'pull-delete', path: p, local: l })
      else actions.push({ do: 'forget', path: p })
    } else if (rc === 'mode' && l && l.kind === r.kind)
      actions.push({ do: 'pull-chmod', path: p, remote: r, local: l })
    else actions.push({ do: 'pull', path: p, remote: r, expect: l })
  }

  /** Both sides changed and differ: the mode decides; nothing is lost in two-way-safe. */
  function settle(p: string, l: LocalEntry | null, r: RemoteEntry | null): void {
    if (inp.mode.mode !== 'two-way-safe') {
      if (inp.mode.winner === 'remote') pullSide(p, l, r, 'content')
      else pushSide(p, l, r, 'content')
      return
    }
    if (!l && r) {
      // Deleted here, changed there: the change is kept.
      actions.push({ do: 'pull', path: p, remote: r, expect: null })
      conflicts.push({ path: p, reason: 'deleted locally, changed remotely: the remote version was kept' })
      return
    }
    if (l && !r) {
      actions.push({ do: 'push', path: p, local: l, base: null })
      conflicts.push({ path: p, reason: 'deleted remotely, changed locally: the local version was kept' })
      return
    }
    if (!l || !r) return
    if (l.kind === 'dir') {
      // The remote file (or link) is kept beside, then our directory replaces it remotely.
      const copy = conflictName(p, 'remote', inp.stamp)
      actions.push({ do: 'pull', path: p, remote: r, expect: null, as: copy })
      actions.push({ do: 'push-delete', path: p, base: r.version })
      actions.push({ do: 'push', path: p, local: l, base: null })
      conflicts.push({ path: p, reason: `a directory here, a ${r.kind} remotely`, copy })
      return
    }
    if (r.kind === 'dir') {
      const copy = conflictName(p, 'local', inp.stamp)
      actions.push({ do: 'move-local-aside', path: p, local: l, as: copy })
      actions.push({ do: 'pull', path: p, remote: r, expect: null })
      conflicts.push({ path: p, reason: `a ${l.kind} here, a directory remotely`, copy })
      return
    }
    // Two versions of a file or link: the remote one is kept beside ours, ours goes over it.
    const copy = conflictName(p, 'remote', inp.stamp)
    actions.push({ do: 'pull', path: p, remote: r, expect: null, as: copy })
    actions.push({ do: 'push', path: p, local: l, base: r.version })
    conflicts.push({ path: p, reason: 'changed on both sides', copy })
  }

  // Creations parent first (sorted paths do that); deletions children first.
  const deletesLast = (x: Action): number => (x.do === 'push-delete' || x.do === 'pull-delete' ? 1 : 0)
  const ordered = actions
    .map((x, i) => ({ x, i }))
    .sort((m, n) => {
      const d = deletesLast(m.x) - deletesLast(n.x)
      if (d !== 0) return d
      if (deletesLast(m.x) === 1) return n.x.path.localeCompare(m.x.path)
      return m.i - n.i
    })
    .map((m) => m.x)
  // A conflict's delete-then-put pair must stay in order: keep those deletes where they were.
  const final: Action[] = []
  const pairDeletes = new Set<Action>()
  for (let i = 0; i < actions.length - 1; i++) {
    const x = actions[i] as Action
    const y = actions[i + 1] as Action
    if (x.do === 'push-delete' && y.do === 'push' && x.path === y.path) pairDeletes.add(x)
  }
  for (const x of ordered) {
    if (pairDeletes.has(x)) continue
    if (x.do === 'push' && [...pairDeletes].some((d) => d.path === x.path)) {
      final.push([...pairDeletes].find((d) => d.path === x.path) as Action)
    }
    final.push(x)
  }
  // Every path of a deleted directory has its own action: the counts are the entries deleted.
  let localDeletes = 0
  let remoteDeletes = 0
  for (const x of final) {
    if (x.do === 'pull-delete') localDeletes++
    if (x.do === 'push-delete' && !pairDeletes.has(x)) remoteDeletes++
  }
  return { actions: final, conflicts, deletes: { local: localDeletes, remote: remoteDeletes } }
}

/** Replica check: equal (true), equal but for the mode ('mode'), or different (false). */
function equalEnough(
  l: LocalEntry | null,
  r: RemoteEntry | null,
  a: Ancestor | undefined,
  digest: string | undefined,
): boolean | 'mode' {
  if (!l && !r) return true
  if (!l || !r || l.kind !== r.kind) return false
  const modeOk = l.mode === r.mode
  if (l.kind === 'dir') return modeOk ? true : 'mode'
  if (l.kind === 'symlink') return l.target === r.target
  if (!a || r.version !== a.rversion) return false
  const lSame =
    (l.size === a.size && l.mtimeNs.toString() === a.lmtime && l.ino === a.lino) || digest === a.digest
  if (!lSame) return false
  return modeOk ? true : 'mode'
}
