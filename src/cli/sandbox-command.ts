// `s0 sandbox`: sandboxes of a running server over its HTTP API: claim, list, inspect, run a
// command or an interactive REPL, copy files in and out, pause/resume/fork/snapshot/restore,
// read and replace the egress policy, delete, and read what happened in one (its signed events,
// its contexts' output, its latest metrics).
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { limits } from '../core/limits.js'
import { ApiClient, ApiError, resolveConnection } from './api-client.js'
import { downloadTo, readLocalText, uploadFrom } from './file-transfer.js'
import { isoSeconds, table } from './format.js'
import { Progress } from './progress.js'

const USAGE = `usage:
  s0 sandbox claim [TEMPLATE] [--ttl SECONDS]        prints the new sandbox id (template: default)
  s0 sandbox ls                                       list the team's sandboxes
  s0 sandbox get <id>
  s0 sandbox rm <id>
  s0 sandbox exec <id> -- COMMAND [ARGS...]           runs it, streams its output, exits with its code
  s0 sandbox run <id> [--language python|bash|node]   an interactive REPL (see below)
  s0 sandbox cp <src> <dst>       one side is <id>:<path>; the other a local path, or - (stdin/stdout)
  s0 sandbox metrics <id> [--metrics a,b]             the latest point of each series
  s0 sandbox pause <id> | resume <id>
  s0 sandbox fork <id>                                prints the new (paused) sandbox id
  s0 sandbox snapshot <id> [--name N]                 prints the rootfs snapshot id
  s0 sandbox restore <id> <snapshot-id>               a paused sandbox's root back to the snapshot
  s0 sandbox network get <id>                         the egress policy as JSON
  s0 sandbox network set <id> --file F|-              replace it with the JSON in F (- is stdin)
  s0 sandbox events <id> [--type T] [--action A] [--limit N] [--all] [--follow]
  s0 sandbox logs <id> [--context C] [--stream stdout|stderr|pty] [--limit N] [--all] [--follow]
Every command takes --json (the server's JSON; events and logs as one JSON object per line, which
\`s0 events verify\` checks offline).
\`run\` starts a REPL context in the sandbox and sends it what you type: a line, or a block (a line
ending in \`:\` or \`\\\` continues until an empty line). Variables live until you leave (Ctrl-D, or
the end of piped input). Ctrl-C interrupts the running statement. Without a terminal it reads
stdin to its end and prints only the output; --json prints each exec result as a JSON line.
The server is S0_API_URL (default http://$S0_HOST:$S0_PORT); the token is S0_TOKEN, or
$S0_STATE_DIR/token.
`

class UsageError extends Error {}

const sbx = (id: string): string => `/api/v1/sandboxes/${encodeURIComponent(id)}`

interface SandboxJson {
  id: string
  template?: string
  template_id?: string
  status: string
  paused: boolean
  runtime_generation?: number
  created_at?: string
  expires_at?: string | null
}

type Values = Record<string, string | boolean | undefined>

interface Sub {
  strings?: string[]
  booleans?: string[]
  /** Positional arguments: at least, at most. */
  arity: [number, number]
  run(api: ApiClient, pos: string[], v: Values, json: boolean): Promise<number>
}

const out = (s: string): boolean => process.stdout.write(s)
const print = (json: boolean, data: unknown, text: string): void =>
  void out(json ? `${JSON.stringify(data, null, 2)}\n` : text)

const SUBS: Record<string, Sub> = {
  claim: {
    strings: ['ttl'],
    arity: [0, 1],
    async run(api, [template], v, json) {
      const ttl = v['ttl'] === undefined ? undefined : positiveInt('--ttl', v['ttl'] as string)
      const data = await api.json<{ sandbox_id: string }>('POST', '/api/v1/sandboxes', {
        json: { template: template ?? 'default', ...(ttl ? { config: { ttl } } : {}) },
      })
      print(json, data, `${data.sandbox_id}\n`)
      return 0
    },
  },
  ls: {
    arity: [0, 0],
    async run(api, _pos, _v, json) {
      const data = await api.json<{ sandboxes: SandboxJson[] }>('GET', '/api/v1/sandboxes', {
        query: { limit: '200' },
      })
      print(
        json,
        data,
        table(
          ['ID', 'TEMPLATE', 'STATUS', 'CREATED'],
          data.sandboxes.map((s) => [
            s.id,
            s.template_id ?? s.template ?? '',
            s.status,
            s.created_at ? isoSeconds(s.created_at) : '',
          ]),
        ),
      )
      return 0
    },
  },
  get: {
    arity: [1, 1],
    async run(api, [id], _v, json) {
      const s = await api.json<SandboxJson>('GET', sbx(id as string))
      print(
        json,
        s,
        `id          ${s.id}\ntemplate    ${s.template}\nstatus      ${s.status}\ngeneration  ${s.runtime_generation ?? 1}\n`,
      )
      return 0
    },
  },
  rm: {
    arity: [1, 1],
    async run(api, [id], _v, json) {
      const data = await api.json<unknown>('DELETE', sbx(id as string))
      print(json, data, '')
      return 0
    },
  },
  exec: {
    arity: [2, Infinity],
    async run(api, [id, ...command], _v, json) {
      if (!json) return execStreaming(api, id as string, command)
      const data = await api.json<{ stdout?: string; stderr?: string; exit_code?: number; state?: string }>(
        'POST',
        `${sbx(id as string)}/contexts`,
        {
          json: { type: 'cmd', cmd: { command }, wait_until_done: true },
          signal: AbortSignal.timeout(limits.cliExecTimeoutMs),
        },
      )
      print(true, data, '')
      return data.exit_code ?? 1
    },
  },
  pause: {
    arity: [1, 1],
    async run(api, [id], _v, json) {
      const data = await api.json<{ paused: boolean }>('POST', `${sbx(id as string)}/pause`)
      print(
        json,
        data,
        data.paused ? 'paused\n' : 'pausing (still capturing; `s0 sandbox get` shows when it is paused)\n',
      )
      return 0
    },
  },
  resume: {
    arity: [1, 1],
    async run(api, [id], _v, json) {
      const data = await api.json<unknown>('POST', `${sbx(id as string)}/resume`)
      print(json, data, 'resumed\n')
      return 0
    },
  },
  fork: {
    arity: [1, 1],
    async run(api, [id], _v, json) {
      const data = await api.json<{ sandbox: SandboxJson }>('POST', `${sbx(id as string)}/fork`, { json: {} })
      print(json, data, `${data.sandbox.id}\n`)
      return 0
    },
  },
  snapshot: {
    strings: ['name'],
    arity: [1, 1],
    async run(api, [id], v, json) {
      const data = await api.json<{ id: string }>('POST', `${sbx(id as string)}/snapshots`, {
        json: v['name'] === undefined ? {} : { name: v['name'] },
      })
      print(json, data, `${data.id}\n`)
      return 0
    },
  },
  run: {
    strings: ['language'],
    arity: [1, 1],
    run: async (api, [id], v, json) => repl(api, id as string, (v['language'] as string) ?? 'python', json),
  },
  cp: {
    arity: [2, 2],
    async run(api, [src, dst], _v, json) {
      if (isRemote(src as string) === isRemote(dst as string))
        throw new UsageError('cp needs exactly one side as <sandbox-id>:<path>')
      if (isRemote(dst as string)) {
        const r = remote(dst as string)
        const data = await uploadFrom(api, `${sbx(r.sandbox)}/files`, src as string, r.path)
        print(json, data, '')
      } else {
        const r = remote(src as string)
        await downloadTo(api, `${sbx(r.sandbox)}/files`, r.path, dst as string)
      }
      return 0
    },
  },
  metrics: {
    strings: ['metrics'],
    arity: [1, 1],
    async run(api, [id], v, json) {
      const query: Record<string, string> = {}
      if (v['metrics'] !== undefined) query['metrics'] = v['metrics'] as string
      const data = await api.json<MetricsJson>('GET', `${sbx(id as string)}/metrics`, { query })
      const rows = data.series.map((s) => {
        const points = s.segments.flatMap((g) => g.points)
        const last = points[points.length - 1]
        return [
          s.metric,
          s.dimensions
            ? Object.entries(s.dimensions)
                .map(([k, d]) => `${k}=${d}`)
                .join(',')
            : '',
          last ? String(last.value) : '-',
          s.unit,
          last ? isoSeconds(last.time) : '-',
        ]
      })
      const f = data.freshness
      print(
        json,
        data,
        table(['METRIC', 'DIMENSIONS', 'VALUE', 'UNIT', 'TIME'], rows) +
          `freshness: ${f.status}${f.age_seconds !== undefined ? ` (${f.age_seconds} s old)` : ''}\n`,
      )
      return 0
    },
  },
  restore: {
    arity: [2, 2],
    async run(api, [id, snapshot], _v, json) {
      const progress = new Progress(`restoring ${id as string}`)
      progress.update(`to ${snapshot as string}`)
      try {
        const data = await api.json<{ status: string }>('POST', `${sbx(id as string)}/rootfs/restore`, {
          json: { snapshot_id: snapshot },
          signal: AbortSignal.timeout(limits.cliRestoreTimeoutMs),
        })
        progress.done()
        print(json, data, `restored (${data.status})\n`)
      } finally {
        progress.done()
      }
      return 0
    },
  },
  network: {
    strings: ['file'],
    arity: [2, 2],
    async run(api, [action, id], v, json) {
      const route = `${sbx(id as string)}/network`
      if (action === 'get') {
        if (v['file'] !== undefined) throw new UsageError('network get takes no --file')
        const policy = await api.json<unknown>('GET', route)
        // The policy is JSON either way: what `get` prints, `set --file` takes back.
        print(true, policy, '')
        return 0
      }
      if (action !== 'set')
        throw new UsageError(`network: unknown action ${JSON.stringify(action)} (get | set)`)
      const file = v['file'] as string | undefined
      if (file === undefined) throw new UsageError('network set needs --file F (or --file - for stdin)')
      const text = await readLocalText(file)
      let policy: unknown
      try {
        policy = JSON.parse(text)
      } catch (err) {
        throw new ApiError('invalid_json', `${file === '-' ? 'stdin' : file}: ${(err as Error).message}`)
      }
      const data = await api.json<unknown>('PUT', route, { json: policy })
      print(json, data, 'network policy replaced\n')
      return 0
    },
  },
  events: {
    strings: ['type', 'action', 'limit'],
    booleans: ['all', 'follow'],
    arity: [1, 1],
    async run(api, [id], v, json) {
      const query: Record<string, string> = {}
      if (v['type']) query['event_type'] = v['type'] as string
      if (v['action']) query['action'] = v['action'] as string
      const line = (e: EventJson): string =>
        json
          ? `${JSON.stringify(e)}\n`
          : `${e.occurred_at}  ${e.event_type.padEnd(13)} ${`${e.action}/${e.phase}`.padEnd(28)} ${e.outcome.padEnd(9)} ${e.actor.kind}${e.actor.id ? `:${e.actor.id}` : ''}  ${e.integrity.signature_status}\n`
      return page<EventJson>(
        api,
        `${sbx(id as string)}/observability/events`,
        'events',
        'event',
        query,
        v,
        line,
      )
    },
  },
  logs: {
    strings: ['context', 'stream', 'limit'],
    booleans: ['all', 'follow'],
    arity: [1, 1],
    async run(api, [id], v, json) {
      const query: Record<string, string> = {}
      if (v['context']) query['context_id'] = v['context'] as string
      if (v['stream']) query['stream'] = v['stream'] as string
      const line = (l: LogJson): string => (json ? `${JSON.stringify(l)}\n` : l.message)
      return page<LogJson>(api, `${sbx(id as string)}/observability/logs`, 'logs', 'log', query, v, line)
    },
  },
}

interface EventJson {
  occurred_at: string
  event_type: string
  action: string
  phase: string
  outcome: string
  actor: { kind: string; id?: string }
  integrity: { signature_status: string }
}
interface LogJson {
  message: string
  cursor: string
}

interface MetricsJson {
  series: {
    metric: string
    unit: string
    dimensions?: Record<string, string>
    segments: { points: { time: string; value: number }[] }[]
  }[]
  freshness: { status: string; age_seconds?: number }
}

interface ExecJson {
  output_raw?: string
  state?: string
}

/** `<sandbox-id>:<path>`: a colon before any slash, so `./a:b` stays a local path. */
function isRemote(arg: string): boolean {
  return /^[^/:]+:/.test(arg)
}

function remote(arg: string): { sandbox: string; path: string } {
  const colon = arg.indexOf(':')
  const p = arg.slice(colon + 1)
  return { sandbox: arg.slice(0, colon), path: p.startsWith('/') ? p : `/${p}` }
}

/**
 * `s0 sandbox run`: one REPL context for the session, one exec per line or block. The context
 * runs on pipes in the sandbox; the terminal side is readline (line editing, history), so the
 * output is the REPL's own, the prompts ours. The context is deleted when the session ends.
 */
async function repl(api: ApiClient, id: string, alias: string, json: boolean): Promise<number> {
  const ctx = await api.json<{ id: string; running: boolean; state?: string }>(
    'POST',
    `${sbx(id)}/contexts`,
    {
      json: { type: 'repl', repl: { alias } },
    },
  )
  const route = `${sbx(id)}/contexts/${encodeURIComponent(ctx.id)}`
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true
  const rl = createInterface({
    input: process.stdin,
    ...(tty ? { output: process.stdout, terminal: true } : { terminal: false }),
  })
  try {
    if (!ctx.running)
      throw new ApiError(
        'repl_not_running',
        `the ${alias} REPL did not start in ${id} (${ctx.state ?? 'stopped'})`,
      )
    let busy = false
    let block: string[] = []
    const prompt = (): void => {
      if (!tty) return
      rl.setPrompt(block.length > 0 ? '... ' : '>>> ')
      rl.prompt()
    }
    // Ctrl-C while a statement runs interrupts it in the sandbox, not this process; at the
    // prompt it drops the block being typed, as python's own REPL does.
    rl.on('SIGINT', () => {
      if (busy) {
        void api.json('POST', `${route}/signal`, { json: { signal: 'SIGINT' } }).catch(() => undefined)
        return
      }
      block = []
      out('^C\n')
      prompt()
    })
    const send = async (code: string): Promise<void> => {
      busy = true
      try {
        const r = await api.json<ExecJson>('POST', `${route}/exec`, {
          json: { data: code },
          signal: AbortSignal.timeout(limits.cliExecTimeoutMs),
        })
        out(json ? `${JSON.stringify(r)}\n` : (r.output_raw ?? ''))
      } finally {
        busy = false
      }
    }
    prompt()
    for await (const line of rl) {
      const continues = /[:\\]\s*$/.test(line)
      if (block.length > 0) {
        if (line.trim() === '') {
          await send(block.join('\n'))
          block = []
        } else block.push(line)
      } else if (continues) block.push(line)
      else if (line.trim() !== '') await send(line)
      prompt()
    }
    if (block.length > 0) await send(block.join('\n'))
    if (tty) out('\n')
    return 0
  } finally {
    rl.close()
    await api.json('DELETE', route).catch(() => undefined)
  }
}

/** The lines of an NDJSON watch (`watch=true`); an `error` line ends it with that error. */
async function* watchLines<T>(res: Response): AsyncGenerator<{ type: string; data?: T; cursor?: string }> {
  const decoder = new TextDecoder()
  let buf = ''
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true })
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const text = buf.slice(0, nl).trim()
      buf = buf.slice(nl + 1)
      if (!text) continue
      const msg = JSON.parse(text) as { type: string; data?: T; cursor?: string; error?: string }
      if (msg.type === 'error') throw new ApiError('watch_failed', msg.error ?? 'the watch failed')
      yield msg
    }
  }
}

interface ExecLog {
  stream: 'stdout' | 'stderr' | 'pty'
  message: string
  cursor: string
}

/**
 * `exec` without --json: a cmd context started at once, its output followed live on the logs
 * watch (filtered to the context) while its state is polled; once it has ended (the server
 * stores a context's output before it reports the end), what the watch had not delivered yet is
 * read from the last cursor printed. Returns the exit code.
 */
async function execStreaming(api: ApiClient, id: string, command: string[]): Promise<number> {
  const ctx = await api.json<{ id: string }>('POST', `${sbx(id)}/contexts`, {
    json: { type: 'cmd', cmd: { command }, wait_until_done: false },
  })
  const logs = `${sbx(id)}/observability/logs`
  let cursor = '0'
  const show = (l: ExecLog): void => {
    if (l.stream === 'stderr') process.stderr.write(l.message)
    else out(l.message)
    cursor = l.cursor
  }
  const stop = new AbortController()
  const following = (async () => {
    const res = await api.request('GET', logs, {
      query: { context_id: ctx.id, watch: 'true' },
      accept: 'application/x-ndjson',
      signal: stop.signal,
    })
    for await (const msg of watchLines<ExecLog>(res)) if (msg.type === 'log' && msg.data) show(msg.data)
  })().catch((err: unknown) => {
    if (!stop.signal.aborted) throw err
  })
  const started = Date.now()
  let exit: number | undefined
  while (exit === undefined) {
    const c = await api.json<{ running: boolean; exit_code?: number }>('GET', `${sbx(id)}/contexts/${ctx.id}`)
    if (!c.running) exit = c.exit_code ?? 1
    else if (Date.now() - started > limits.cliExecTimeoutMs)
      throw new ApiError('timeout', 'the command did not end')
    else await new Promise((r) => setTimeout(r, limits.cliExecPollMs))
  }
  stop.abort()
  await following
  // Bounded: each page moves the cursor forward, and the context has ended.
  for (let i = 0; i < 100_000; i++) {
    const page = await api.json<{ logs: ExecLog[] }>('GET', logs, {
      query: { context_id: ctx.id, cursor, limit: '1000' },
    })
    for (const l of page.logs) show(l)
    if (page.logs.length < 1000) break
  }
  await api.json('DELETE', `${sbx(id)}/contexts/${ctx.id}`).catch(() => undefined)
  return exit
}

/** Lists one page (or `--all` of them), or follows the live watch until interrupted. */
async function page<T>(
  api: ApiClient,
  route: string,
  key: string,
  watchType: string,
  query: Record<string, string>,
  v: Values,
  line: (row: T) => string,
): Promise<number> {
  if (v['follow']) {
    const res = await api.request('GET', route, {
      query: { ...query, watch: 'true' },
      accept: 'application/x-ndjson',
    })
    for await (const msg of watchLines<T>(res)) if (msg.type === watchType && msg.data) out(line(msg.data))
    return 0
  }
  const limit = v['limit'] === undefined ? undefined : positiveInt('--limit', v['limit'] as string)
  let cursor: string | undefined
  // Bounded: a million pages is far beyond any retention.
  for (let i = 0; i < 1_000_000; i++) {
    const data = await api.json<Record<string, unknown>>('GET', route, {
      query: {
        ...query,
        ...(limit ? { limit: String(limit) } : v['all'] ? { limit: '1000' } : {}),
        ...(cursor ? { cursor } : {}),
      },
    })
    for (const row of data[key] as T[]) out(line(row))
    cursor = data['next_cursor'] as string | undefined
    if (!v['all'] || !cursor) break
  }
  return 0
}

function positiveInt(flag: string, text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive integer`)
  return n
}

export async function run(args: string[]): Promise<number> {
  const [name, ...rest] = args
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    out(USAGE)
    return name ? 0 : 2
  }
  const sub = SUBS[name]
  let pos: string[]
  let values: Values
  try {
    if (!sub) throw new UsageError(`unknown subcommand ${JSON.stringify(name)}`)
    // `exec <id> -- cmd args`: everything after `--` is the command, flags included.
    const dash = rest.indexOf('--')
    const own = dash >= 0 ? rest.slice(0, dash) : rest
    const options: Record<string, { type: 'string' | 'boolean' }> = { json: { type: 'boolean' } }
    for (const s of sub.strings ?? []) options[s] = { type: 'string' }
    for (const b of sub.booleans ?? []) options[b] = { type: 'boolean' }
    const parsed = parseArgs({ args: own, options, allowPositionals: true, strict: true })
    pos = [...parsed.positionals, ...(dash >= 0 ? rest.slice(dash + 1) : [])]
    values = parsed.values
    if (name === 'exec' && dash < 0) throw new UsageError('exec needs `--` before the command')
    if (pos.length < sub.arity[0] || pos.length > sub.arity[1])
      throw new UsageError(`${name}: wrong number of arguments`)
  } catch (err) {
    if (
      !(err instanceof UsageError) &&
      (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') !== true
    )
      throw err
    process.stderr.write(`s0 sandbox: ${(err as Error).message}\n\n${USAGE}`)
    return 2
  }
  try {
    return await sub.run(new ApiClient(await resolveConnection()), pos, values, values['json'] === true)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`s0 sandbox: ${err.message}\n\n${USAGE}`)
      return 2
    }
    if (err instanceof ApiError) {
      process.stderr.write(`s0 sandbox: ${err.message} [${err.code}]\n`)
      return 1
    }
    // Local I/O (EACCES, ENOSPC, EPIPE) or a transfer cut short: expected, reported, not a crash.
    const code = (err as NodeJS.ErrnoException).code
    if (err instanceof Error && typeof code === 'string') {
      process.stderr.write(`s0 sandbox: ${err.message} [${code}]\n`)
      return 1
    }
    throw err
  }
}
