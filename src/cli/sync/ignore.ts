// Which paths workspace sync leaves alone: `.gitignore` files (the root's and nested ones, each
// applying below its directory), `.git/info/exclude` and `.s0ignore` at the root, `.git/` unless
// VCS data is included, and always `.s0sync/` (our state). gitignore semantics: `#` comments,
// `!` negation (the last matching rule wins), a leading or inner `/` anchors the pattern to its
// file's directory, a trailing `/` matches directories only, `*` `?` `[...]` stay within a name,
// `**` spans directories. A path under an ignored directory is ignored whatever the rules say.
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { isTempName } from '../../sync/entries.js'

interface Rule {
  negate: boolean
  dirOnly: boolean
  re: RegExp
  /** The directory (relative, '' for the root) the rule's file sits in. */
  base: string
}

/** A gitignore glob as a regex over the path relative to the rule's base. */
function globToRegex(glob: string, anchored: boolean): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**/` any directories (also none), `/**` everything below, `**` anything.
        if (glob[i + 2] === '/') {
          re += '(?:.*/)?'
          i += 2
        } else {
          re += '.*'
          i += 1
        }
      } else re += '[^/]*'
    } else if (c === '?') re += '[^/]'
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1)
      if (end < 0) re += '\\['
      else {
        let cls = glob.slice(i + 1, end)
        if (cls.startsWith('!')) cls = '^' + cls.slice(1)
        re += `[${cls.replace(/\\/g, '\\\\')}]`
        i = end
      }
    } else if (c === '\\' && i + 1 < glob.length) {
      re += (glob[i + 1] as string).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
      i++
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
  }
  return new RegExp(anchored ? `^${re}$` : `^(?:.*/)?${re}$`)
}

export function parseRules(text: string, base: string): Rule[] {
  const rules: Rule[] = []
  for (let line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue
    line = line.replace(/(?<!\\)\s+$/, '')
    if (line === '') continue
    let negate = false
    if (line.startsWith('!')) {
      negate = true
      line = line.slice(1)
    } else if (line.startsWith('\\!') || line.startsWith('\\#')) line = line.slice(1)
    let dirOnly = false
    if (line.endsWith('/')) {
      dirOnly = true
      line = line.slice(0, -1)
    }
    const anchored = line.includes('/')
    if (line.startsWith('/')) line = line.slice(1)
    if (line === '') continue
    rules.push({ negate, dirOnly, re: globToRegex(line, anchored), base })
  }
  return rules
}

export interface IgnoreOptions {
  /** Sync `.git/` too (off by default). */
  includeVcs?: boolean
}

export const STATE_DIR_NAME = '.s0sync'
/** Files written beside their target and renamed into place (both sides): one prefix. */
export { TEMP_PREFIX } from '../../sync/entries.js'

export class Ignorer {
  private readonly rules: Rule[] = []
  /** Directories whose `.gitignore` was read (nested files are read as the scan meets them). */
  private readonly loaded = new Set<string>()

  private constructor(
    private readonly root: string,
    private readonly opts: IgnoreOptions,
  ) {}

  static async open(root: string, opts: IgnoreOptions = {}): Promise<Ignorer> {
    const ig = new Ignorer(root, opts)
    for (const f of [path.join('.git', 'info', 'exclude'), '.s0ignore']) {
      const text = await readFile(path.join(root, f), 'utf8').catch(() => '')
      ig.rules.push(...parseRules(text, ''))
    }
    await ig.loadDir('')
    return ig
  }

  /** Reads `<dir>/.gitignore` once (call for a directory before asking about what it holds). */
  async loadDir(dir: string): Promise<void> {
    if (this.loaded.has(dir)) return
    this.loaded.add(dir)
    const text = await readFile(path.join(this.root, dir, '.gitignore'), 'utf8').catch(() => '')
    if (text) this.rules.push(...parseRules(text, dir))
  }

  /** Rules from text a test or the remote side gives (a remote `.gitignore` not yet local). */
  addRules(text: string, base: string): void {
    this.rules.push(...parseRules(text, base))
  }

  /** Whether `rel` ('/'-joined, relative to the root) is ignored; its parents are not (checked before). */
  ignoredName(rel: string, isDir: boolean): boolean {
    const first = rel.split('/', 1)[0]
    if (first === STATE_DIR_NAME) return true
    // Temporary files of a write in progress, ours or the server's: never synced.
    if (isTempName(rel.slice(rel.lastIndexOf('/') + 1))) return true
    if (!this.opts.includeVcs && (rel === '.git' || rel.endsWith('/.git'))) return true
    let ignored = false
    for (const r of this.rules) {
      if (r.dirOnly && !isDir) continue
      if (r.base !== '' && !rel.startsWith(r.base + '/')) continue
      const sub = r.base === '' ? rel : rel.slice(r.base.length + 1)
      if (r.re.test(sub)) ignored = !r.negate
    }
    return ignored
  }

  /** Whether `rel` or any directory above it is ignored. */
  ignored(rel: string, isDir: boolean): boolean {
    const parts = rel.split('/')
    for (let i = 1; i < parts.length; i++)
      if (this.ignoredName(parts.slice(0, i).join('/'), true)) return true
    return this.ignoredName(rel, isDir)
  }
}
