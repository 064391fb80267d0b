// A stand-in for `s0 sync` with its command line and output contract, over the plain files API:
// full scans of both sides every pass, whole-file transfers, no deletions, local wins conflicts.
// It exists to test the sync suite's harness before the real client lands
// (S0_BENCH_SYNC_CLI=stub); its figures mean nothing.
//   stub-cli.ts sync <local-dir> <volume-id>[:/path] [--once] [--init-from local|remote] [--json]
import { createReadStream } from 'node:fs'
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Readable } from 'node:stream'

const STATE_DIR = '.s0sync'
const LIVE_PASS_INTERVAL_MS = 100
const REQUEST_TIMEOUT_MS = 60_000
const USAGE = 'usage: stub-cli.ts <command>\n\ncommands:\n  sync  sync a local directory with a volume\n'

interface Side {
  size: number
  mtimeMs: number
}
interface Known {
  local: Side
  remote: Side
}
interface Counters {
  pushed_files: number
  pulled_files: number
  bytes_sent: number
  bytes_received: number
  conflicts: number
}

const baseUrl = (process.env['S0_API_URL'] ?? '').replace(/\/+$/, '')
const auth = { authorization: `Bearer ${process.env['S0_TOKEN'] ?? ''}` }

async function api(route: string, query: Record<string, string>, init: RequestInit = {}): Promise<Response> {
  const url = new URL(baseUrl + route)
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v)
  const res = await fetch(url, {
    ...init,
    headers: { ...auth, ...(init.headers as Record<string, string>) },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url.pathname}: ${res.status} ${await res.text()}`)
  return res
}

async function walkLocal(root: string, rel = '', out = new Map<string, Side>()): Promise<Map<string, Side>> {
  for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name
    if (r === STATE_DIR || e.name.startsWith('.s0-stub-')) continue
    if (e.isDirectory()) await walkLocal(root, r, out)
    else if (e.isFile()) {
      const s = await stat(path.join(root, r))
      out.set(r, { size: s.size, mtimeMs: s.mtimeMs })
    }
  }
  return out
}

interface WireEntry {
  name: string
  type: string
  size: number
  mod_time: string
}

async function walkRemote(
  files: string,
  base: string,
  rel = '',
  out = new Map<string, Side>(),
): Promise<Map<string, Side>> {
  const res = await api(`${files}/list`, { path: base + (rel ? `/${rel}` : '') || '/' })
  const { data } = (await res.json()) as { data: { entries: WireEntry[] } }
  for (const e of data.entries) {
    if (e.name.startsWith('.s0-upload-')) continue // an upload in flight
    const r = rel ? `${rel}/${e.name}` : e.name
    if (e.type === 'dir') await walkRemote(files, base, r, out)
    else if (e.type === 'file') out.set(r, { size: e.size, mtimeMs: Date.parse(e.mod_time) })
  }
  return out
}

const same = (a: Side | undefined, b: Side | undefined): boolean =>
  a !== undefined && b !== undefined && a.size === b.size && a.mtimeMs === b.mtimeMs

async function pass(dir: string, volume: string, base: string, initFrom: string, c: Counters): Promise<void> {
  const files = `/api/v1/sandboxvolumes/${volume}/files`
  const statePath = path.join(dir, STATE_DIR, 'stub-state.json')
  const known = new Map<string, Known>(
    Object.entries(JSON.parse(await readFile(statePath, 'utf8').catch(() => '{}')) as Record<string, Known>),
  )
  const local = await walkLocal(dir)
  const remote = await walkRemote(files, base)
  const remoteSide = async (rel: string): Promise<Side> => {
    const res = await api(`${files}/stat`, { path: `${base}/${rel}` })
    const { data } = (await res.json()) as { data: WireEntry }
    return { size: data.size, mtimeMs: Date.parse(data.mod_time) }
  }
  for (const rel of new Set([...local.keys(), ...remote.keys()])) {
    const k = known.get(rel)
    const l = local.get(rel)
    const r = remote.get(rel)
    const localChanged = l !== undefined && !same(l, k?.local)
    const remoteChanged = r !== undefined && !same(r, k?.remote)
    // Both sides new and no history: --init-from picks the side that wins.
    const push = localChanged && !(remoteChanged && k === undefined && initFrom === 'remote')
    if (localChanged && remoteChanged && k !== undefined) c.conflicts++ // local wins
    if (push && l) {
      await api(files, { path: `${base}/${rel}` }, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: Readable.toWeb(createReadStream(path.join(dir, rel))) as ReadableStream,
        duplex: 'half',
      } as RequestInit)
      c.pushed_files++
      c.bytes_sent += l.size
      known.set(rel, { local: l, remote: await remoteSide(rel) })
    } else if (remoteChanged && r) {
      const body = Buffer.from(await (await api(files, { path: `${base}/${rel}` })).arrayBuffer())
      const to = path.join(dir, rel)
      const tmp = path.join(path.dirname(to), `.s0-stub-${process.pid}`)
      await mkdir(path.dirname(to), { recursive: true })
      await writeFile(tmp, body)
      await rename(tmp, to)
      const s = await stat(to)
      c.pulled_files++
      c.bytes_received += body.length
      known.set(rel, { local: { size: s.size, mtimeMs: s.mtimeMs }, remote: r })
    } else if (l && r && !k) known.set(rel, { local: l, remote: r })
  }
  await mkdir(path.dirname(statePath), { recursive: true })
  await writeFile(statePath, JSON.stringify(Object.fromEntries(known)))
}

async function run(args: string[]): Promise<number> {
  if (args[0] !== 'sync') {
    process.stdout.write(USAGE)
    return args[0] === '--help' ? 0 : 2
  }
  const positional = args.slice(1).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--init-from')
  const [dir, target] = positional
  if (!dir || !target) {
    process.stderr.write(USAGE)
    return 2
  }
  const [volume, sub = ''] = target.split(/:(.*)/s) as [string, string?]
  const base = sub.replace(/\/+$/, '')
  const at = args.indexOf('--init-from')
  const initFrom = at >= 0 ? (args[at + 1] ?? 'local') : 'local'
  const c: Counters = { pushed_files: 0, pulled_files: 0, bytes_sent: 0, bytes_received: 0, conflicts: 0 }
  const t0 = performance.now()
  await pass(dir, volume, base, initFrom, c)
  if (args.includes('--once')) {
    if (args.includes('--json'))
      process.stdout.write(JSON.stringify({ ...c, seconds: (performance.now() - t0) / 1000 }) + '\n')
    return 0
  }
  let stopping = false
  process.on('SIGINT', () => (stopping = true))
  process.stderr.write('s0 sync: live\n')
  while (!stopping) {
    await new Promise((r) => setTimeout(r, LIVE_PASS_INTERVAL_MS))
    await pass(dir, volume, base, initFrom, c)
  }
  return 0
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    process.exit(1)
  },
)
