// A hosts file (`/etc/hosts` format) consulted before the upstream resolver (S0_EGRESS_HOSTS:
// tests and air-gapped sites). It is looked at again at most once per check interval and read
// only when its size, mtime, ctime or inode changed; a missing file is an empty table, an
// unreadable or oversized one keeps the last good table.
import { readFile, stat } from 'node:fs/promises'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import { parseIp, type Ip } from '../policy/ip.js'
import { hostNameProblem, normalizeName } from '../policy/names.js'

export interface HostsEntry {
  readonly v4: readonly Ip[]
  readonly v6: readonly Ip[]
}

/** `address name [alias...]` lines, `#` comments; bad addresses and names are skipped. */
export function parseHosts(text: string): Map<string, HostsEntry> {
  const table = new Map<string, { v4: Ip[]; v6: Ip[] }>()
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim()
    if (line === '') continue
    const [addr, ...names] = line.split(/\s+/)
    const ip = parseIp(addr as string)
    if (ip === undefined) continue
    for (const n of names) {
      const name = normalizeName(n)
      if (hostNameProblem(name) !== undefined) continue
      let e = table.get(name)
      if (e === undefined) table.set(name, (e = { v4: [], v6: [] }))
      const list = ip.v === 4 ? e.v4 : e.v6
      if (!list.some((x) => x.n === ip.n)) (list as Ip[]).push(ip)
    }
  }
  return table
}

export class HostsFile {
  private table = new Map<string, HostsEntry>()
  private signature = ''
  private checkedAt = -Infinity
  private checking: Promise<void> | undefined

  constructor(
    readonly path: string,
    private readonly opts: { checkIntervalMs?: number; log?: Logger } = {},
  ) {}

  /** The entry for `name` (normalized), reading the file again first if it may have changed. */
  async lookup(name: string): Promise<HostsEntry | undefined> {
    const interval = this.opts.checkIntervalMs ?? limits.dnsHostsCheckIntervalMs
    // A read in flight is waited for too: the first lookups after start must not see the empty
    // table while the first read runs (checkedAt is set when it starts).
    if (this.checking || performance.now() - this.checkedAt >= interval) {
      this.checking ??= this.check().finally(() => {
        this.checking = undefined
      })
      await this.checking
    }
    return this.table.get(name)
  }

  private async check(): Promise<void> {
    this.checkedAt = performance.now()
    let sig: string
    try {
      const s = await stat(this.path, { bigint: true })
      sig = `${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.ino}`
      if (s.size > BigInt(limits.dnsHostsFileBytesMax)) {
        if (sig !== this.signature) {
          this.opts.log?.warn('hosts file too large; keeping the previous table', { path: this.path })
        }
        this.signature = sig
        return
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.table = new Map()
        this.signature = 'missing'
        return
      }
      this.opts.log?.warn('hosts file unreadable; keeping the previous table', { path: this.path, err })
      return
    }
    if (sig === this.signature) return
    try {
      this.table = parseHosts(await readFile(this.path, 'utf8'))
      this.signature = sig
    } catch (err) {
      this.opts.log?.warn('hosts file unreadable; keeping the previous table', { path: this.path, err })
    }
  }
}
