// One workspace sync session between a local folder and a volume directory: a first full pass,
// then live — local changes seen by inotify watches on every directory, remote ones by the
// volume's change feed (a long poll) — each change reconciled against the last synced ancestor
// (reconcile.ts) and applied: chunks the volume lacks uploaded, then one commit; remote files
// assembled from chunks, those the folder already holds read locally, the rest downloaded.
import { randomBytes } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { chmod, mkdir, readFile, rename, rmdir, symlink, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { hashChunk } from '../../blockstore/hash.js'
import { limits } from '../../core/limits.js'
import { encodeDelta, parseSignature, type Signature } from '../../sync/delta.js'
import { Ignorer, STATE_DIR_NAME } from './ignore.js'
import {
  abs,
  chunkFile,
  readRange,
  scan,
  statEntry,
  tempBeside,
  writeFileAtomic,
  type ChunkedFile,
  type LocalEntry,
} from './local.js'
import { reconcile, type Action, type Conflict, type ModeOptions, type RemoteEntry } from './reconcile.js'
import type { SyncRemote } from './remote.js'
import { transient, type OpResult, type WireOp } from './remote.js'
import { SyncState, type Ancestor } from './state.js'

export interface SessionOptions {
  localRoot: string
  remote: SyncRemote
  mode: ModeOptions
  /** Both sides have content and no ancestor: whose content wins where both have a path. */
  initFrom?: 'local' | 'remote'
  includeVcs?: boolean
  /** Deletions past the guard are applied without asking (`--confirm-deletes`). */
  confirmDeletes?: boolean
  /** Progress and state for the status line and `s0 sync status`. */
  onStatus?: (s: SessionStatus) => void
  log?: (line: string) => void
}

export interface SessionStatus {
  phase: 'scanning' | 'syncing' | 'live' | 'paused'
  pendingUp: number
  pendingDown: number
  bytesUp: number
  bytesDown: number
  conflicts: number
  lastChange: string | null
  pausedReason?: string
}

export interface PassStats {
  pushedFiles: number
  pulledFiles: number
  conflicts: number
}

/** How recent a local mtime is too recent to vouch for the content (the coarse clock's tick, with room). */
const RACY_NS = 2_000_000_000n

/** Chunks smaller than this go whole (a delta's header and signatures would not pay). */
const DELTA_MIN_BYTES = 4 * 1024
/** Whole chunks per upload request, at most (bytes and count). */
const BATCH_BYTES = 8 * 1024 * 1024
const BATCH_CHUNKS = 1024

export class SyncError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

interface ChunkSource {
  file: string
  off: number
  size: number
}

export class SyncSession {
  private state!: SyncState
  private ig!: Ignorer
  private readonly local = new Map<string, LocalEntry>()
  private readonly remote = new Map<string, RemoteEntry>()
  private cursor: string | null = null
  private readonly dirtyLocal = new Set<string>()
  private readonly dirtyRemote = new Set<string>()
  private readonly chunkSources = new Map<string, ChunkSource>()
  private readonly watchers = new Map<string, FSWatcher>()
  private readonly skippedReported = new Set<string>()
  private stopped = false
  /** Something this session could not apply (it is retried, but a resume must not skip it). */
  private unsettled = false
  private readonly abort = new AbortController()
  /** Paths whose action failed, looked at again after `retryDelayMs` (doubling while they fail). */
  private readonly retryPaths = new Set<string>()
  private retryTimer: NodeJS.Timeout | undefined
  private retryDelayMs: number = limits.syncClientRetryMs
  private wake: (() => void) | undefined
  private readonly stats: PassStats = { pushedFiles: 0, pulledFiles: 0, conflicts: 0 }
  private status: SessionStatus = {
    phase: 'scanning',
    pendingUp: 0,
    pendingDown: 0,
    bytesUp: 0,
    bytesDown: 0,
    conflicts: 0,
    lastChange: null,
  }

  constructor(private readonly o: SessionOptions) {}

  get totals(): PassStats & { bytesSent: number; bytesReceived: number } {
    return { ...this.stats, ...this.o.remote.counters }
  }

  private log(line: string): void {
    this.o.log?.(line)
  }

  private setStatus(p: Partial<SessionStatus>): void {
    this.status = {
      ...this.status,
      ...p,
      bytesUp: this.o.remote.counters.bytesSent,
      bytesDown: this.o.remote.counters.bytesReceived,
    }
    this.o.onStatus?.(this.status)
  }

  async open(): Promise<void> {
    this.state = await SyncState.open(this.o.localRoot)
    const meta = this.state.meta
    const r = this.o.remote
    if (meta && (meta.volumeId !== r.volumeId || meta.root !== r.root))
      throw new SyncError(
        'sync_mismatch',
        `${this.o.localRoot} is synced with ${meta.volumeId}:${meta.root}, not ${r.volumeId}:${r.root} (remove ${STATE_DIR_NAME}/ to start over)`,
      )
    this.ig = await Ignorer.open(this.o.localRoot, { includeVcs: this.o.includeVcs === true })
  }

  async close(): Promise<void> {
    this.stopped = true
    this.abort.abort()
    for (const w of this.watchers.values()) w.close()
    this.watchers.clear()
    this.wake?.()
    if (this.state) {
      if (this.state.meta) this.saveMeta()
      await this.state.close()
    }
  }

  /** One full pass: both sides listed whole, every difference reconciled. */
  async fullPass(): Promise<PassStats> {
    this.setStatus({ phase: 'scanning' })
    if (!(await this.resumeRemote())) {
      const t = await this.o.remote.tree()
      this.cursor = t.cursor
      this.remote.clear()
      for (const e of t.entries) if (!this.remoteIgnored(e)) this.remote.set(e.path, e)
    }
    await this.rescanLocal()
    // The first pass: until it has completed once, the folder and the volume are "being
    // introduced" (recorded before anything is applied, so a crash in it is not mistaken for
    // two strangers next time).
    const meta = this.state.meta
    const initializing = !meta || meta.initialized === false
    let mode = this.o.mode
    if (initializing) {
      const localEmpty = this.local.size === 0
      const remoteEmpty = this.remote.size === 0
      const initFrom = this.o.initFrom ?? meta?.initFrom
      if (!localEmpty && !remoteEmpty) {
        if (initFrom) mode = { mode: 'two-way-resolved', winner: initFrom }
        else if (!meta)
          throw new SyncError(
            'sync_init_ambiguous',
            `both ${this.o.localRoot} (${this.local.size} entries) and the volume directory (${this.remote.size} entries) have content and were never synced: say which wins where both have a path with --init-from local|remote`,
          )
        // Else a first pass that was cut off (one side was empty): the union, nothing lost.
      }
      this.state.setMeta({
        volumeId: this.o.remote.volumeId,
        root: this.o.remote.root,
        cursor: null,
        mode: this.o.mode.mode,
        initialized: false,
        ...(initFrom ? { initFrom } : {}),
      })
      await this.state.flush()
    }
    const before = { ...this.stats }
    await this.reconcileAndApply(undefined, mode)
    // Renames and conflict copies leave paths to settle (a moved directory's new content):
    // a few more rounds over just those.
    for (let i = 0; i < 3 && (this.dirtyLocal.size > 0 || this.dirtyRemote.size > 0); i++) {
      await this.reconcileAndApply(this.takeDirty(), mode)
    }
    this.saveMeta(true)
    await this.state.flush()
    return {
      pushedFiles: this.stats.pushedFiles - before.pushedFiles,
      pulledFiles: this.stats.pulledFiles - before.pulledFiles,
      conflicts: this.stats.conflicts - before.conflicts,
    }
  }

  /**
   * The remote side without a listing: the ancestors (what both sides held when the last
   * session ended settled) plus what the feed says changed since its cursor. False when there is
   * no such cursor or the feed asks for a rescan (another epoch: a server restart, a restore).
   */
  private async resumeRemote(): Promise<boolean> {
    const cursor = this.state.meta?.cursor
    if (!cursor) return false
    this.remote.clear()
    for (const [p, a] of this.state.entries) {
      this.remote.set(p, {
        path: p,
        kind: a.kind,
        mode: a.mode,
        size: a.kind === 'file' ? a.size : 0,
        mtime_ns: a.rmtime,
        ino: a.rino,
        version: a.rversion,
        ...(a.kind === 'symlink' ? { target: a.digest } : {}),
      })
    }
    let c = cursor
    for (;;) {
      const ans = await this.o.remote.changes(c, 0).catch((err: unknown) => {
        if ((err as { code?: string }).code === 'sync_cursor_invalid') return null
        throw err
      })
      if (!ans || ans.rescan) {
        this.remote.clear()
        return false
      }
      c = ans.cursor
      if (ans.changes.length === 0) break
      this.applyRemoteChanges(ans.changes)
    }
    this.cursor = c
    return true
  }

  /** Feed answers onto the remote view; the paths become dirty. */
  private applyRemoteChanges(changes: { path: string; entry: RemoteEntry | null }[]): void {
    for (const ch of changes) {
      if (ch.entry && this.remoteIgnored(ch.entry)) continue
      if (ch.entry) this.remote.set(ch.path, ch.entry)
      else
        for (const p of [...this.remote.keys()])
          if (p === ch.path || p.startsWith(ch.path + '/')) {
            this.remote.delete(p)
            this.dirtyRemote.add(p)
          }
      this.dirtyRemote.add(ch.path)
    }
  }

  /**
   * The cursor is kept only when everything is settled: a later start then resumes from it
   * (O(change) on the server). Anything left over (a failed action, a conflict answered,
   * deletions waiting for a yes) forgets it, so the next start lists the volume again.
   */
  private saveMeta(passCompleted = false): void {
    const settled =
      !this.unsettled &&
      this.dirtyLocal.size === 0 &&
      this.dirtyRemote.size === 0 &&
      this.pendingDirs.size === 0 &&
      this.status.phase !== 'paused'
    this.state.setMeta({
      volumeId: this.o.remote.volumeId,
      root: this.o.remote.root,
      cursor: settled ? this.cursor : null,
      mode: this.o.mode.mode,
      initialized: passCompleted || this.state.meta?.initialized !== false,
    })
  }

  private remoteIgnored(e: RemoteEntry): boolean {
    return e.kind === 'other' || this.ig.ignored(e.path, e.kind === 'dir')
  }

  private async rescanLocal(): Promise<void> {
    const s = await scan(this.o.localRoot, this.ig)
    this.local.clear()
    for (const [p, e] of s.entries) this.local.set(p, e)
    this.reportSkipped(s.skipped)
  }

  private reportSkipped(skipped: string[]): void {
    for (const s of skipped) {
      if (this.skippedReported.has(s)) continue
      this.skippedReported.add(s)
      this.log(`skipped (not synced): ${s}`)
    }
  }

  /** Rescans one local directory (not what its subdirectories hold, unless new). */
  private async rescanLocalDir(dir: string): Promise<void> {
    if (dir !== '' && this.ig.ignored(dir, true)) return
    const present = await statEntry(this.o.localRoot, dir)
    if (dir !== '' && (!present || present.kind !== 'dir')) {
      // Gone (or replaced): drop it and everything under it, then look at it as a name.
      for (const p of [...this.local.keys()]) if (p === dir || p.startsWith(dir + '/')) this.local.delete(p)
      this.dirtyLocal.add(dir)
      if (present && !this.ig.ignored(dir, false)) this.local.set(dir, present)
      return
    }
    const s = await scan(this.o.localRoot, this.ig, dir)
    this.reportSkipped(s.skipped)
    const prefix = dir === '' ? '' : dir + '/'
    for (const p of [...this.local.keys()]) {
      if (p.startsWith(prefix) && !s.entries.has(p)) {
        this.local.delete(p)
        this.dirtyLocal.add(p)
      }
    }
    for (const [p, e] of s.entries) {
      const old = this.local.get(p)
      if (
        !old ||
        old.mtimeNs !== e.mtimeNs ||
        old.size !== e.size ||
        old.ino !== e.ino ||
        old.mode !== e.mode ||
        old.kind !== e.kind ||
        old.target !== e.target
      ) {
        this.local.set(p, e)
        this.dirtyLocal.add(p)
      }
    }
  }

  /** Digests of local files whose stat is not the ancestor's (chunked now, remembered for upload). */
  private async localDigests(
    paths: Iterable<string>,
  ): Promise<{ digests: Map<string, string>; chunked: Map<string, ChunkedFile> }> {
    const digests = new Map<string, string>()
    const chunked = new Map<string, ChunkedFile>()
    const todo: LocalEntry[] = []
    for (const p of paths) {
      const l = this.local.get(p)
      if (!l || l.kind !== 'file') continue
      const a = this.state.entries.get(p)
      if (
        a &&
        a.kind === 'file' &&
        a.size === l.size &&
        a.lmtime === l.mtimeNs.toString() &&
        a.lino === l.ino
      )
        continue
      todo.push(l)
    }
    let i = 0
    const worker = async (): Promise<void> => {
      while (i < todo.length) {
        const l = todo[i++] as LocalEntry
        const file = abs(this.o.localRoot, l.path)
        let c: ChunkedFile | null = null
        for (let k = 0; k < limits.syncClientReadRetries && !c; k++) {
          const now = k === 0 ? l : await statEntry(this.o.localRoot, l.path)
          if (!now || now.kind !== 'file') break
          if (k > 0) this.local.set(l.path, now)
          c = await chunkFile(file, now)
        }
        if (!c) continue // changing under us: the next pass takes it
        digests.set(l.path, c.digest)
        chunked.set(l.path, c)
        for (const ch of c.chunks)
          this.chunkSources.set(ch.hash.toString('hex'), { file, off: ch.off, size: ch.size })
      }
    }
    await Promise.all(Array.from({ length: limits.syncClientFileConcurrency }, worker))
    return { digests, chunked }
  }

  private async reconcileAndApply(
    only: Set<string> | undefined,
    mode: ModeOptions = this.o.mode,
  ): Promise<void> {
    let A: ReadonlyMap<string, Ancestor> = this.state.entries
    let L: ReadonlyMap<string, LocalEntry> = this.local
    let R: ReadonlyMap<string, RemoteEntry> = this.remote
    if (only) {
      // Only the changed paths and what they hold (a moved directory brings its subtree).
      const pick = <T>(m: ReadonlyMap<string, T>): Map<string, T> => {
        const out = new Map<string, T>()
        for (const p of only) {
          const v = m.get(p)
          if (v !== undefined) out.set(p, v)
        }
        return out
      }
      A = pick(this.state.entries)
      L = pick(this.local)
      R = pick(this.remote)
    }
    const { digests, chunked } = await this.localDigests(L.keys())
    // Files whose stat moved but whose content did not (a touch, or a racily clean ancestor
    // now old enough): the ancestor takes the stat, so they are not read again.
    for (const [p, d] of digests) {
      const a = this.state.entries.get(p)
      const l = this.local.get(p)
      if (!a || !l || a.kind !== 'file' || a.digest !== d) continue
      if (BigInt(Date.now()) * 1_000_000n - l.mtimeNs < RACY_NS) continue
      this.state.set(p, { ...a, size: l.size, lmtime: l.mtimeNs.toString(), lino: l.ino })
    }
    const stamp = new Date()
      .toISOString()
      .replace(/[-:]/g, '')
      .replace(/\.\d+Z$/, 'Z')
    const plan = reconcile({ ancestors: A, local: L, remote: R, digests, mode, stamp })
    const up = plan.actions.filter((a) => a.do.startsWith('push')).length
    const down = plan.actions.filter((a) => a.do.startsWith('pull')).length
    this.setStatus({ phase: 'syncing', pendingUp: up, pendingDown: down })
    // The mass-delete guard: a pass that would delete much of the tree waits for a yes.
    const treeSize = Math.max(this.state.entries.size, 1)
    const tooMany = (n: number): boolean =>
      n > limits.syncDeleteCountMax || (treeSize >= 20 && n > treeSize * limits.syncDeleteShareMax)
    let actions = plan.actions
    const guard: string[] = []
    if (!this.o.confirmDeletes && !(await this.consumeConfirm())) {
      if (tooMany(plan.deletes.remote)) guard.push(`${plan.deletes.remote} deletions on the volume`)
      if (tooMany(plan.deletes.local)) guard.push(`${plan.deletes.local} deletions in ${this.o.localRoot}`)
    }
    if (guard.length > 0) {
      const reason = `paused: this change would make ${guard.join(' and ')} (of ${treeSize} entries); run \`s0 sync resolve --confirm-deletes ${this.o.localRoot}\` (or restart with --confirm-deletes) to go ahead`
      this.log(reason)
      this.setStatus({ phase: 'paused', pausedReason: reason })
      actions = actions.filter((a) => a.do !== 'push-delete' && a.do !== 'pull-delete')
    }
    if (process.env['S0_SYNC_TRACE'])
      for (const a of actions) this.log(`plan: ${a.do} ${'from' in a ? `${a.from} -> ` : ''}${a.path}`)
    for (const c of plan.conflicts) await this.noteConflict(c)
    await this.apply(actions, chunked)
    await this.state.flush()
    this.setStatus({
      pendingUp: 0,
      pendingDown: 0,
      lastChange: actions.length > 0 ? new Date().toISOString() : this.status.lastChange,
      ...(guard.length === 0 && this.status.phase === 'paused'
        ? { phase: 'syncing', pausedReason: undefined }
        : {}),
    })
  }

  private async consumeConfirm(): Promise<boolean> {
    const f = path.join(SyncState.stateDir(this.o.localRoot), 'confirm-deletes')
    try {
      await unlink(f)
      return true
    } catch {
      return false
    }
  }

  private async noteConflict(c: Conflict): Promise<void> {
    this.stats.conflicts++
    this.log(`conflict: ${c.path}: ${c.reason}${c.copy ? ` (other version kept as ${c.copy})` : ''}`)
    const f = path.join(SyncState.stateDir(this.o.localRoot), 'conflicts.json')
    const list = JSON.parse(await readFile(f, 'utf8').catch(() => '[]')) as Array<Conflict & { at: string }>
    list.push({ ...c, at: new Date().toISOString() })
    await writeFile(f, JSON.stringify(list, null, 1))
    this.setStatus({ conflicts: list.length })
  }

  private ancestorOf(l: LocalEntry, r: RemoteEntry, digest: string): Ancestor {
    // Racily clean (as git says): a file modified within a tick of the kernel's coarse clock
    // of now may be written again with the same mtime and size. Its stat is not trusted: the
    // next look compares its digest (and records the stat once it is old enough).
    const racy = l.kind === 'file' && BigInt(Date.now()) * 1_000_000n - l.mtimeNs < RACY_NS
    return {
      kind: l.kind,
      mode: l.mode,
      size: l.kind === 'file' ? l.size : 0,
      digest: l.kind === 'symlink' ? (l.target ?? '') : l.kind === 'file' ? digest : '',
      lmtime: racy ? '0' : l.mtimeNs.toString(),
      lino: l.ino,
      rversion: r.version,
      rino: r.ino,
      rmtime: r.mtime_ns,
    }
  }

  /**
   * Moves the ancestors of `from` and everything under it to `to`, and the view of the side we
   * just renamed (the other side's view is already at the new names, and fresher).
   */
  private moveTree(from: string, to: string, renamed: 'local' | 'remote'): void {
    const view = renamed === 'local' ? this.local : this.remote
    for (const m of [this.state.entries, view] as Map<string, unknown>[]) {
      for (const [p, v] of [...m]) {
        if (p !== from && !p.startsWith(from + '/')) continue
        const np = to + p.slice(from.length)
        // What else the moved tree holds (the other side's new files in it) is settled next.
        this.dirtyLocal.add(np)
        this.dirtyRemote.add(np)
        m.delete(p)
        if (m === (this.state.entries as Map<string, unknown>)) {
          this.state.set(p, null)
          this.state.set(np, v as Ancestor)
        } else m.set(np, typeof v === 'object' && v ? { ...(v as object), path: np } : v)
      }
    }
  }

  private async apply(actions: Action[], chunked: Map<string, ChunkedFile>): Promise<void> {
    // Local renames and moves aside first (the remote's view of the names is then right), then
    // pulls (they may be copies a push below goes over), then the pushes in one commit.
    const pushes: Action[] = []
    for (const a of actions) {
      if (this.stopped) return
      try {
        switch (a.do) {
          case 'push':
          case 'push-chmod':
          case 'push-delete':
          case 'push-rename':
            pushes.push(a)
            break
          case 'record': {
            let digest = ''
            if (a.local.kind === 'file') {
              const anc = this.state.entries.get(a.path)
              digest = chunked.get(a.path)?.digest ?? anc?.digest ?? ''
            }
            this.state.set(a.path, this.ancestorOf(a.local, a.remote, digest))
            break
          }
          case 'forget':
            this.state.set(a.path, null)
            break
          default:
            await this.applyLocal(a, chunked)
        }
      } catch (err) {
        if (transient(err)) throw err
        this.unsettled = true
        this.log(`could not ${a.do} ${a.path}: ${(err as Error).message} (retried shortly)`)
        this.retryLater(a.path)
      }
    }
    if (pushes.length > 0) await this.push(pushes, chunked)
  }

  private async applyLocal(a: Action, chunked: Map<string, ChunkedFile>): Promise<void> {
    const root = this.o.localRoot
    switch (a.do) {
      case 'pull': {
        const target = a.as ?? a.path
        const written = await this.pullEntry(target, a.remote, a.as ? null : a.expect)
        // The local side moved while we fetched: looked at again (the remote change stays due).
        if (!written) this.dirtyRemote.add(a.path)
        // A conflict copy is a new local file like any other: it goes to the volume next.
        if (written && a.as) this.dirtyLocal.add(a.as)
        if (!written || a.as) return
        this.state.set(a.path, this.ancestorOf(written.entry, written.remote, written.digest))
        if (a.remote.kind === 'file') this.stats.pulledFiles++
        return
      }
      case 'compare': {
        // Same size on both sides: fetch the remote version beside ours and compare digests.
        const tmpRel = `${STATE_DIR_NAME}/compare-${randomBytes(6).toString('hex')}`
        const got = await this.pullEntry(tmpRel, a.remote, null)
        const local = chunked.get(a.path)
        if (!got) return
        if (local && got.digest === local.digest) {
          this.local.delete(tmpRel)
          await unlink(abs(root, tmpRel)).catch(() => undefined)
          this.state.set(a.path, this.ancestorOf(a.local, got.remote, local.digest))
          // Same bytes, other permission bits: ours go over (the exec bit, say).
          if (a.local.mode !== a.remote.mode)
            await this.push(
              [{ do: 'push-chmod', path: a.path, local: a.local, base: a.remote.version }],
              chunked,
            )
          return
        }
        const stamp = new Date()
          .toISOString()
          .replace(/[-:]/g, '')
          .replace(/\.\d+Z$/, 'Z')
        const copy = `${a.path}.conflict-remote-${stamp}`
        await rename(abs(root, tmpRel), abs(root, copy))
        this.local.delete(tmpRel)
        const copied = await statEntry(root, copy)
        if (copied) this.local.set(copy, copied)
        this.dirtyLocal.add(copy)
        await this.noteConflict({ path: a.path, reason: 'changed on both sides', copy })
        await this.push([{ do: 'push', path: a.path, local: a.local, base: a.remote.version }], chunked)
        return
      }
      case 'pull-chmod': {
        const now = await statEntry(root, a.path)
        if (!now || now.mtimeNs !== a.local.mtimeNs || now.ino !== a.local.ino) return
        if (a.local.kind !== 'symlink') await chmod(abs(root, a.path), a.remote.mode)
        const after = (await statEntry(root, a.path)) as LocalEntry
        const anc = this.state.entries.get(a.path)
        this.state.set(a.path, this.ancestorOf(after, a.remote, anc?.digest ?? ''))
        this.local.set(a.path, after)
        return
      }
      case 'pull-delete': {
        const now = await statEntry(root, a.path)
        if (now && (now.mtimeNs !== a.local.mtimeNs || now.ino !== a.local.ino) && now.kind !== 'dir') return
        if (now?.kind === 'dir') {
          try {
            await rmdir(abs(root, a.path))
          } catch {
            return // something we have not synced is in it: the next pass settles it
          }
        } else if (now) await unlink(abs(root, a.path))
        this.local.delete(a.path)
        this.state.set(a.path, null)
        return
      }
      case 'pull-rename': {
        const now = await statEntry(root, a.from)
        if (!now || now.ino !== a.local.ino || (await statEntry(root, a.path))) {
          // The local side moved or took the name meanwhile: both names are looked at again. Just
          // returning dropped the remote's new name for good (both sides renaming one directory
          // at once lost the remote's copy until a restart).
          this.dirtyRemote.add(a.path)
          this.dirtyRemote.add(a.from)
          return
        }
        await mkdir(path.dirname(abs(root, a.path)), { recursive: true })
        await rename(abs(root, a.from), abs(root, a.path))
        this.moveTree(a.from, a.path, 'local')
        const anc = this.state.entries.get(a.path)
        if (anc)
          this.state.set(a.path, {
            ...anc,
            // A mode the other side changed along with the rename is still to come over.
            rversion: a.remote.mode === anc.mode ? a.remote.version : anc.rversion,
            rino: a.remote.ino,
            rmtime: a.remote.mtime_ns,
          })
        return
      }
      case 'move-local-aside': {
        await rename(abs(root, a.path), abs(root, a.as))
        this.local.delete(a.path)
        this.state.set(a.path, null)
        return
      }
      default:
        return
    }
  }

  /** Writes a remote entry at `rel` locally; null when the local side moved meanwhile. */
  private async pullEntry(
    rel: string,
    r: RemoteEntry,
    expect: LocalEntry | null,
  ): Promise<{ entry: LocalEntry; digest: string; remote: RemoteEntry } | null> {
    const root = this.o.localRoot
    const target = abs(root, rel)
    await mkdir(path.dirname(target), { recursive: true })
    if (r.kind === 'dir') {
      const now = await statEntry(root, rel)
      if (now && now.kind !== 'dir') {
        if (!expect || now.ino !== expect.ino) return null
        await unlink(target)
      }
      await mkdir(target, { recursive: true })
      await chmod(target, r.mode)
      const e = (await statEntry(root, rel)) as LocalEntry
      this.local.set(rel, e)
      return { entry: e, digest: '', remote: r }
    }
    if (r.kind === 'symlink') {
      const now = await statEntry(root, rel)
      if (now && (!expect || now.ino !== expect.ino || now.mtimeNs !== expect.mtimeNs)) return null
      const tmp = tempBeside(target)
      await symlink(r.target ?? '', tmp)
      if (now?.kind === 'dir') await rmdir(target).catch(() => undefined)
      // A link cannot be followed by a handle: if its directory moved meanwhile, the stale sweep
      // of the scan removes it.
      await rename(tmp, target).catch(async (err: unknown) => {
        await unlink(tmp).catch(() => undefined)
        throw err
      })
      const e = (await statEntry(root, rel)) as LocalEntry
      this.local.set(rel, e)
      return { entry: e, digest: r.target ?? '', remote: r }
    }
    const f = await this.o.remote.file(r.path)
    const pieces = this.contentOf(f.entry.size, f.inline, f.extents ?? [])
    const now = expect ? { mtimeNs: expect.mtimeNs, ino: expect.ino } : null
    if (expect?.kind === 'dir') await rmdir(target).catch(() => undefined)
    const written = await writeFileAtomic(
      target,
      pieces,
      f.entry.mode,
      BigInt(f.entry.mtime_ns),
      expect?.kind === 'dir' ? null : now,
    )
    if (!written) return null
    const st: LocalEntry = { ...written, path: rel }
    const c = await chunkFile(target, st)
    if (c)
      for (const ch of c.chunks)
        this.chunkSources.set(ch.hash.toString('hex'), { file: target, off: ch.off, size: ch.size })
    this.local.set(rel, st)
    // The remote entry these bytes came with, not the one listed before the fetch: the file may
    // have changed in between (a sandbox writing it), and an ancestor naming the older version
    // with the newer bytes would pull them again and hide a later rename of the file (the rename
    // then looked like a delete and a create).
    return { entry: st, digest: c?.digest ?? '', remote: f.entry }
  }

  /** A remote file's bytes in order: chunks found locally are read here, the rest fetched. */
  private async *contentOf(
    size: number,
    inline: string | undefined,
    extents: { off: number; len: number; hash: string; coff: number }[],
  ): AsyncGenerator<Buffer> {
    if (inline !== undefined) {
      const b = Buffer.from(inline, 'base64')
      yield b
      if (b.length < size) yield Buffer.alloc(size - b.length)
      return
    }
    const cache = new Map<string, Promise<Buffer>>()
    const fetchChunk = (hash: string): Promise<Buffer> => {
      let p = cache.get(hash)
      if (!p) {
        p = this.chunk(hash)
        cache.set(hash, p)
      }
      return p
    }
    let pos = 0
    for (let i = 0; i < extents.length; i++) {
      // Ask for the next few chunks at once.
      for (let k = i; k < Math.min(extents.length, i + limits.syncClientChunkConcurrency); k++)
        void fetchChunk((extents[k] as { hash: string }).hash).catch(() => undefined)
      const x = extents[i] as { off: number; len: number; hash: string; coff: number }
      if (x.off > pos) yield Buffer.alloc(x.off - pos)
      const data = await fetchChunk(x.hash)
      yield data.subarray(x.coff, x.coff + x.len)
      pos = x.off + x.len
      // Chunks are cut anew for every extent; drop those no later extent uses.
      if (!extents.slice(i + 1, i + 1 + 64).some((y) => y.hash === x.hash)) cache.delete(x.hash)
    }
    if (pos < size) yield Buffer.alloc(size - pos)
  }

  private async chunk(hash: string): Promise<Buffer> {
    const src = this.chunkSources.get(hash)
    if (src) {
      const data = await readRange(src.file, src.off, src.size).catch(() => null)
      if (data && data.length === src.size && hashChunk(data).toString('hex') === hash) return data
      this.chunkSources.delete(hash)
    }
    return this.o.remote.getChunk(hash)
  }

  /** Uploads what the volume lacks, then commits the operations; results update the ancestors. */
  private async push(actions: Action[], chunked: Map<string, ChunkedFile>): Promise<void> {
    const ops: WireOp[] = []
    const byPath = new Map<string, Action>()
    const need = new Map<string, { file: string; off: number; size: number; path: string }>()
    for (const a of actions) {
      if (a.do === 'push') {
        const l = a.local
        if (l.kind === 'file') {
          const c = chunked.get(a.path) ?? (await this.chunkNow(l))
          if (!c) continue
          chunked.set(a.path, c)
          for (const ch of c.chunks)
            need.set(ch.hash.toString('hex'), {
              file: abs(this.o.localRoot, a.path),
              off: ch.off,
              size: ch.size,
              path: a.path,
            })
          ops.push({
            op: 'put',
            path: a.path,
            base: a.base,
            mode: l.mode,
            mtime_ns: l.mtimeNs.toString(),
            chunks: c.chunks.map((ch) => ({ hash: ch.hash.toString('hex'), size: ch.size })),
          })
        } else if (l.kind === 'dir')
          ops.push({ op: 'mkdir', path: a.path, base: a.base, mode: l.mode, mtime_ns: l.mtimeNs.toString() })
        else
          ops.push({
            op: 'symlink',
            path: a.path,
            base: a.base,
            target: l.target ?? '',
            mtime_ns: l.mtimeNs.toString(),
          })
      } else if (a.do === 'push-chmod')
        ops.push({ op: 'chmod', path: a.path, base: a.base, mode: a.local.mode })
      else if (a.do === 'push-delete') ops.push({ op: 'delete', path: a.path, base: a.base })
      else if (a.do === 'push-rename')
        ops.push({ op: 'rename', from: a.from, path: a.path, base: a.base, to_base: null })
      else continue
      byPath.set(`${ops.length - 1}`, a)
    }
    if (ops.length === 0) return
    // Files the volume has an older version of: their new chunks may go as deltas against it.
    const bases = new Set<string>()
    for (const a of actions)
      if (a.do === 'push' && a.local.kind === 'file' && a.base !== null) bases.add(a.path)
    const bad = await this.upload(need, bases)
    // A file that changed while its chunks were read is left for the next pass.
    const keep = ops
      .map((op, i) => ({ op, a: byPath.get(`${i}`) as Action }))
      .filter((x) => !bad.has(x.op.path))
    for (let i = 0; i < keep.length; i += limits.syncCommitOpsMax) {
      const group = keep.slice(i, i + limits.syncCommitOpsMax)
      const key = `c-${randomBytes(12).toString('hex')}`
      let r = await this.o.remote.commit(
        group.map((g) => g.op),
        key,
      )
      const missing = r.results.flatMap((x) => (x.status === 'missing_chunks' ? x.missing : []))
      if (missing.length > 0) {
        // Collected meanwhile (a GC): sent again, then the same operations once more.
        await this.upload(new Map([...need].filter(([h]) => missing.includes(h))))
        const again = group.filter((_g, k) => (r.results[k] as OpResult).status === 'missing_chunks')
        const r2 = await this.o.remote.commit(
          again.map((g) => g.op),
          `c-${randomBytes(12).toString('hex')}`,
        )
        let k2 = 0
        r = {
          replayed: false,
          results: r.results.map((x) => (x.status === 'missing_chunks' ? (r2.results[k2++] as OpResult) : x)),
        }
      }
      for (let k = 0; k < group.length; k++)
        this.afterPush((group[k] as { a: Action }).a, r.results[k] as OpResult, chunked)
    }
  }

  private async chunkNow(l: LocalEntry): Promise<ChunkedFile | null> {
    const c = await chunkFile(abs(this.o.localRoot, l.path), l)
    return c
  }

  /** Sends the chunks the volume lacks; returns the paths whose bytes changed under us. */
  private async upload(
    need: Map<string, { file: string; off: number; size: number; path: string }>,
    withBase: Set<string> = new Set(),
  ): Promise<Set<string>> {
    const bad = new Set<string>()
    if (need.size === 0) return bad
    const missing = [...(await this.o.remote.missing([...need.keys()]))]
    const deltaBases = await this.deltaBases(missing, need, withBase)
    let i = 0
    const worker = async (): Promise<void> => {
      while (i < missing.length) {
        const h = missing[i++] as string
        const src = need.get(h) as { file: string; off: number; size: number; path: string }
        const data = await readRange(src.file, src.off, src.size).catch(() => null)
        if (!data || data.length !== src.size || hashChunk(data).toString('hex') !== h) {
          bad.add(src.path)
          continue
        }
        const b = deltaBases.get(src.path)
        const delta = b && data.length >= DELTA_MIN_BYTES ? encodeDelta(data, b) : null
        if (delta) await this.o.remote.putChunkDelta(h, delta)
        else {
          // Whole chunks go in batches: one request and one durability barrier for many.
          batch.push({ hash: h, data })
          batchBytes += data.length
          if (batchBytes >= BATCH_BYTES || batch.length >= BATCH_CHUNKS) {
            const send = batch
            batch = []
            batchBytes = 0
            await this.o.remote.putChunks(send)
          }
        }
        this.setStatus({})
      }
    }
    let batch: { hash: string; data: Buffer }[] = []
    let batchBytes = 0
    await Promise.all(Array.from({ length: limits.syncClientChunkConcurrency }, worker))
    if (batch.length > 0) await this.o.remote.putChunks(batch)
    return bad
  }

  /**
   * For files with missing chunks and an older version on the volume: that version's chunks'
   * signatures (a few KiB per MiB), to send the new chunks as deltas against.
   */
  private async deltaBases(
    missing: string[],
    need: Map<string, { path: string }>,
    withBase: Set<string>,
  ): Promise<Map<string, { hash: Buffer; sig: Signature }[]>> {
    const out = new Map<string, { hash: Buffer; sig: Signature }[]>()
    const paths = new Set<string>()
    for (const h of missing) {
      const p = (need.get(h) as { path: string }).path
      if (withBase.has(p)) paths.add(p)
    }
    for (const p of paths) {
      const f = await this.o.remote.file(p).catch(() => null)
      if (!f) continue
      const hashes = [...new Set((f.extents ?? []).map((x) => x.hash))].slice(0, 63)
      // A small file's old version is inline on the volume: the server signs it as a chunk.
      const inline = f.inline !== undefined && f.inline.length > 0 ? [p] : []
      if (hashes.length === 0 && inline.length === 0) continue
      const sigs = await this.o.remote.signatures(hashes, inline)
      out.set(
        p,
        [...sigs].map(([h, b]) => ({ hash: Buffer.from(h, 'hex'), sig: parseSignature(b) })),
      )
    }
    return out
  }

  private afterPush(a: Action, r: OpResult, chunked: Map<string, ChunkedFile>): void {
    if (process.env['S0_SYNC_TRACE']) this.log(`pushed ${a.do} ${a.path}: ${r.status}`)
    if (r.status !== 'ok') {
      // Stale base: the remote changed first. The next pass sees both changes and settles it,
      // with the remote entry as the server has it now (the feed may not have said yet).
      if (r.status === 'conflict') {
        if (r.entry) this.remote.set(r.path, r.entry)
        else this.remote.delete(r.path)
      }
      this.dirtyRemote.add(r.path)
      this.dirtyLocal.add(a.path)
      return
    }
    const e = r.entry
    if (a.do === 'push-delete') {
      this.remote.delete(a.path)
      this.state.set(a.path, null)
      return
    }
    if (a.do === 'push-rename') {
      this.moveTree(a.from, a.path, 'remote')
      if (e) {
        this.remote.set(a.path, e)
        const anc = this.state.entries.get(a.path)
        if (anc)
          this.state.set(a.path, {
            ...anc,
            // A mode changed over there meanwhile (ours moved with its old one) stays a change.
            rversion: e.mode === anc.mode ? e.version : anc.rversion,
            rino: e.ino,
            rmtime: e.mtime_ns,
          })
      }
      return
    }
    if (!e || (a.do !== 'push' && a.do !== 'push-chmod')) return
    this.remote.set(a.path, e)
    const digest = a.local.kind === 'file' ? (chunked.get(a.path)?.digest ?? '') : ''
    this.state.set(a.path, this.ancestorOf(a.local, e, digest))
    if (a.do === 'push' && a.local.kind === 'file') this.stats.pushedFiles++
  }

  // ---- live ----------------------------------------------------------------------------------

  private watchDir(dir: string): void {
    if (this.watchers.has(dir) || this.stopped) return
    try {
      const w = watch(abs(this.o.localRoot, dir), { persistent: true }, (_ev, name) => {
        const rel = name ? (dir === '' ? String(name) : `${dir}/${String(name)}`) : dir
        if (rel.split('/', 1)[0] === STATE_DIR_NAME) return
        this.localDirty(dir)
        if (name) this.localDirty(rel, true)
      })
      w.on('error', () => {
        w.close()
        this.watchers.delete(dir)
      })
      this.watchers.set(dir, w)
    } catch {
      // Gone already, or out of inotify watches: the periodic full rescan still finds changes.
    }
  }

  private readonly pendingDirs = new Set<string>()
  private localDirty(rel: string, maybeDir = false): void {
    if (maybeDir) {
      // A name in a directory: if it is a directory, it is rescanned (and watched) too.
      this.pendingDirs.add(`?${rel}`)
    } else this.pendingDirs.add(rel)
    this.wake?.()
  }

  private async drainLocal(): Promise<void> {
    const dirs = [...this.pendingDirs]
    this.pendingDirs.clear()
    for (const d of dirs) {
      if (d.startsWith('?')) {
        const rel = d.slice(1)
        // The kernel's clock for mtime is coarse: a second write in the same tick leaves size,
        // mtime and inode alike, so a name the kernel reported is looked at whatever its stat.
        if (!rel.startsWith(STATE_DIR_NAME)) this.dirtyLocal.add(rel)
        const e = await statEntry(this.o.localRoot, rel)
        if (e?.kind === 'dir' && !this.ig.ignored(rel, true)) {
          if (rel.endsWith('.gitignore')) continue
          await this.rescanLocalDir(rel)
          this.watchTree(rel)
        }
        continue
      }
      if (d === '' || !this.ig.ignored(d, true)) await this.rescanLocalDir(d)
      if (d.endsWith('/.gitignore') || d === '.gitignore')
        await this.ig.loadDir(path.posix.dirname(d) === '.' ? '' : path.posix.dirname(d))
    }
  }

  private watchTree(dir: string): void {
    this.watchDir(dir)
    for (const [p, e] of this.local)
      if (e.kind === 'dir' && (dir === '' || p.startsWith(dir + '/'))) this.watchDir(p)
  }

  /** Follows the volume's feed, applying what changed to the remote view; rescans on a gap. */
  private async followRemote(): Promise<void> {
    let backoff = 200
    while (!this.stopped) {
      try {
        if (!this.cursor) {
          const t = await this.o.remote.tree()
          this.cursor = t.cursor
          const seen = new Set<string>()
          for (const e of t.entries) {
            if (this.remoteIgnored(e)) continue
            seen.add(e.path)
            const old = this.remote.get(e.path)
            if (!old || old.version !== e.version) {
              this.remote.set(e.path, e)
              this.dirtyRemote.add(e.path)
            }
          }
          for (const p of [...this.remote.keys()]) {
            if (!seen.has(p)) {
              this.remote.delete(p)
              this.dirtyRemote.add(p)
            }
          }
          this.wake?.()
        }
        const ans = await this.o.remote.changes(this.cursor, limits.syncChangesWaitMsMax, this.abort.signal)
        backoff = 200
        if (ans.rescan) {
          this.cursor = null
          continue
        }
        this.cursor = ans.cursor
        this.applyRemoteChanges(ans.changes)
        if (ans.changes.length > 0) this.wake?.()
      } catch (err) {
        if (this.stopped) return
        if (!transient(err) && (err as { code?: string }).code !== 'sync_cursor_invalid') {
          this.log(`change feed: ${(err as Error).message}`)
        }
        if ((err as { code?: string }).code === 'sync_cursor_invalid') this.cursor = null
        await new Promise((r) => setTimeout(r, backoff))
        backoff = Math.min(backoff * 2, 5_000)
      }
    }
  }

  /**
   * Looks at `rel` again soon. Nothing else would: a live session reconciles only what changed,
   * so a pull that failed (a fetch refused, a name taken meanwhile) waited for the next change at
   * that path, and a new remote file could stay missing for good.
   */
  private retryLater(rel: string): void {
    this.retryPaths.add(rel)
    if (this.retryTimer || this.stopped) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      for (const p of this.retryPaths) this.dirtyRemote.add(p)
      this.retryPaths.clear()
      this.wake?.()
    }, this.retryDelayMs)
    this.retryTimer.unref()
    this.retryDelayMs = Math.min(this.retryDelayMs * 2, limits.syncClientRetryMaxMs)
  }

  /** Runs until close(): the first pass, then changes on either side as they come. */
  async live(onLive?: () => void): Promise<void> {
    await this.fullPass()
    this.watchTree('')
    this.setStatus({ phase: 'live' })
    onLive?.()
    const remoteLoop = this.followRemote()
    let lastFull = Date.now()
    let backoff = 200
    while (!this.stopped) {
      if (this.pendingDirs.size === 0 && this.dirtyRemote.size === 0 && this.dirtyLocal.size === 0) {
        await new Promise<void>((r) => {
          this.wake = r
          setTimeout(r, 1_000)
        })
        this.wake = undefined
        if (this.stopped) break
        // A burst of writes comes as many events: let it settle a moment.
        await new Promise((r) => setTimeout(r, limits.syncClientDebounceMs))
      }
      let only = new Set<string>()
      try {
        if (Date.now() - lastFull > limits.syncClientFullRescanMs) {
          lastFull = Date.now()
          await this.rescanLocalAll()
        }
        await this.drainLocal()
        only = this.takeDirty()
        if (only.size === 0) continue
        const failedBefore = this.retryPaths.size
        await this.reconcileAndApply(only)
        if (this.retryPaths.size === failedBefore && !this.retryTimer)
          this.retryDelayMs = limits.syncClientRetryMs
        this.setStatus({ phase: this.status.phase === 'paused' ? 'paused' : 'live' })
        backoff = 200
        for (const d of this.local.values()) if (d.kind === 'dir') this.watchDir(d.path)
      } catch (err) {
        if (this.stopped) break
        this.log(`sync pass failed: ${(err as Error).message}; retrying`)
        // The paths this pass took, too: a new remote path is in no ancestor, and was lost here.
        for (const p of only) this.dirtyRemote.add(p)
        for (const p of this.state.entries.keys()) this.dirtyLocal.add(p)
        await new Promise((r) => setTimeout(r, backoff))
        backoff = Math.min(backoff * 2, 5_000)
      }
    }
    await remoteLoop
  }

  /** The dirty paths, with their parents and what dirty directories hold; the sets are emptied. */
  private takeDirty(): Set<string> {
    const only = new Set<string>([...this.dirtyLocal, ...this.dirtyRemote])
    this.dirtyLocal.clear()
    this.dirtyRemote.clear()
    for (const p of [...only]) {
      for (let i = p.indexOf('/'); i > 0; i = p.indexOf('/', i + 1)) only.add(p.slice(0, i))
      const isDir =
        this.local.get(p)?.kind === 'dir' ||
        this.remote.get(p)?.kind === 'dir' ||
        this.state.entries.get(p)?.kind === 'dir'
      if (isDir)
        for (const m of [this.local, this.remote, this.state.entries] as ReadonlyMap<string, unknown>[])
          for (const q of m.keys()) if (q.startsWith(p + '/')) only.add(q)
    }
    return only
  }

  private async rescanLocalAll(): Promise<void> {
    const before = new Map(this.local)
    await this.rescanLocal()
    for (const [p, e] of this.local) {
      const o = before.get(p)
      if (!o || o.mtimeNs !== e.mtimeNs || o.size !== e.size || o.ino !== e.ino || o.mode !== e.mode)
        this.dirtyLocal.add(p)
    }
    for (const p of before.keys()) if (!this.local.has(p)) this.dirtyLocal.add(p)
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.retryTimer)
    this.abort.abort()
    this.wake?.()
  }
}
