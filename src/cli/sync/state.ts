// The last synced ancestor of every path (what both sides agreed on), kept in `<dir>/.s0sync/`:
// `state.json` (a snapshot, replaced atomically) and `journal` (one JSON line per change since,
// fsynced before the change counts as synced). Opening replays the journal (a torn last line is
// dropped: its change was not acknowledged) and compacts. A change is applied to a side first
// and journaled after: a crash in between leaves both sides equal and the ancestor old, which
// the next pass sees as "both changed the same way" and records, never as a conflict or a loss.
import { open, readFile, rename, writeFile, mkdir, type FileHandle } from 'node:fs/promises'
import path from 'node:path'
import { STATE_DIR_NAME } from './ignore.js'

export type LocalKind = 'file' | 'dir' | 'symlink'

export interface Ancestor {
  kind: LocalKind
  mode: number
  size: number
  /** Files: the content digest (BLAKE3 of the chunk hashes); symlinks: the target. */
  digest: string
  /** The local file as last seen synced: mtime (ns, decimal) and inode number. */
  lmtime: string
  lino: number
  /** The remote node as last seen synced. */
  rversion: string
  rino: number
  /** The remote mtime (ns, decimal): with rino and size, tells a metadata-only change apart. */
  rmtime: string
}

export interface SyncMeta {
  volumeId: string
  root: string
  cursor: string | null
  mode: string
  /** False while the first pass has not completed (a restart continues it, never refuses). */
  initialized?: boolean
  /** The first pass's --init-from, kept for a restart of it. */
  initFrom?: 'local' | 'remote'
}

const JOURNAL_COMPACT_LINES = 50_000

export class SyncState {
  readonly entries = new Map<string, Ancestor>()
  meta: SyncMeta | null = null
  private journal: FileHandle | undefined
  private pending: string[] = []
  private lines = 0

  private constructor(readonly dir: string) {}

  static stateDir(localRoot: string): string {
    return path.join(localRoot, STATE_DIR_NAME)
  }

  static async open(localRoot: string): Promise<SyncState> {
    const dir = SyncState.stateDir(localRoot)
    await mkdir(dir, { recursive: true })
    const s = new SyncState(dir)
    const snap = await readFile(path.join(dir, 'state.json'), 'utf8').catch(() => '')
    if (snap) {
      const j = JSON.parse(snap) as { meta: SyncMeta | null; entries: [string, Ancestor][] }
      s.meta = j.meta
      for (const [p, e] of j.entries) s.entries.set(p, e)
    }
    const journal = await readFile(path.join(dir, 'journal'), 'utf8').catch(() => '')
    for (const line of journal.split('\n')) {
      if (!line) continue
      let rec: { p?: string; e?: Ancestor | null; meta?: SyncMeta }
      try {
        rec = JSON.parse(line) as typeof rec
      } catch {
        break // torn last line: never acknowledged
      }
      if (rec.meta) s.meta = rec.meta
      else if (rec.p !== undefined) {
        if (rec.e) s.entries.set(rec.p, rec.e)
        else s.entries.delete(rec.p)
      }
    }
    await s.compact()
    return s
  }

  /** Writes the snapshot and starts an empty journal. */
  async compact(): Promise<void> {
    await this.journal?.close()
    const tmp = path.join(this.dir, 'state.json.tmp')
    const fh = await open(tmp, 'w', 0o600)
    await fh.writeFile(JSON.stringify({ meta: this.meta, entries: [...this.entries] }))
    await fh.sync()
    await fh.close()
    await rename(tmp, path.join(this.dir, 'state.json'))
    await writeFile(path.join(this.dir, 'journal'), '')
    this.journal = await open(path.join(this.dir, 'journal'), 'a', 0o600)
    await this.journal.sync()
    this.lines = 0
  }

  set(p: string, e: Ancestor | null): void {
    if (e) this.entries.set(p, e)
    else this.entries.delete(p)
    this.pending.push(JSON.stringify({ p, e }))
  }

  setMeta(meta: SyncMeta): void {
    this.meta = meta
    this.pending.push(JSON.stringify({ meta }))
  }

  /** Makes every change since the last flush durable. */
  async flush(): Promise<void> {
    if (this.pending.length === 0 || !this.journal) return
    const text = this.pending.join('\n') + '\n'
    this.lines += this.pending.length
    this.pending = []
    await this.journal.write(text)
    await this.journal.sync()
    if (this.lines > JOURNAL_COMPACT_LINES) await this.compact()
  }

  async close(): Promise<void> {
    await this.flush()
    await this.journal?.close()
    this.journal = undefined
  }
}
