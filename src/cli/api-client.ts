// A small HTTP client of a running s0 server for CLI commands: finds the URL and token, unwraps the
// `{success, data | error}` envelope and turns failures into ApiError (server) or a connection hint.
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { TOKEN_FILE_NAME } from '../accounts/index.js'
import { loadConfig } from '../core/config.js'
import { limits } from '../core/limits.js'

/** A failure to report as `s0 <command>: <message> [<code>]`, exit status 1. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 0,
  ) {
    super(message)
  }
}

export interface Connection {
  baseUrl: string
  token: string
}

export interface RequestOptions {
  query?: Record<string, string>
  json?: unknown
  /** A streamed upload body (sent chunked, never buffered whole). */
  stream?: AsyncIterable<Uint8Array>
  accept?: string
  /** Defaults to limits.cliJsonRequestTimeoutMs for JSON calls and none for streams (size-dependent). */
  signal?: AbortSignal
}

/** S0_API_URL, or the address `s0 server` listens on; S0_TOKEN, or the token file it wrote. */
export async function resolveConnection(env: NodeJS.ProcessEnv = process.env): Promise<Connection> {
  const explicitUrl = env['S0_API_URL']
  const explicitToken = env['S0_TOKEN']
  const needConfig = !explicitUrl || !explicitToken
  const config = needConfig ? loadConfig(env) : undefined
  const baseUrl = (explicitUrl || defaultUrl(config?.host ?? '127.0.0.1', config?.port ?? 8080)).replace(
    /\/+$/,
    '',
  )
  if (explicitToken) return { baseUrl, token: explicitToken }
  const tokenFile = path.join(config?.stateDir ?? '.s0', TOKEN_FILE_NAME)
  try {
    return { baseUrl, token: (await readFile(tokenFile, 'utf8')).trim() }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    throw new ApiError(
      'no_token',
      `no API token: set S0_TOKEN, or S0_STATE_DIR to the state directory of \`s0 server\` (${tokenFile} does not exist)`,
    )
  }
}

function defaultUrl(host: string, port: number): string {
  // A server bound to every interface is reached on loopback.
  const h = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`
}

export class ApiClient {
  constructor(private readonly conn: Connection) {}

  /** Sends a request and returns the response if it is a success; otherwise throws ApiError. */
  async request(method: string, route: string, opts: RequestOptions = {}): Promise<Response> {
    const url = new URL(this.conn.baseUrl + route)
    for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v)
    const headers: Record<string, string> = { authorization: `Bearer ${this.conn.token}` }
    if (opts.accept) headers['accept'] = opts.accept
    const init: RequestInit = { method, headers }
    if (opts.stream) {
      headers['content-type'] = 'application/octet-stream'
      init.body = opts.stream
      // Required by fetch for a streamed request body: the reply is read after the upload ends.
      init.duplex = 'half'
    } else if (opts.json !== undefined) {
      headers['content-type'] = 'application/json'
      init.body = JSON.stringify(opts.json)
    }
    const signal =
      opts.signal ?? (opts.stream ? undefined : AbortSignal.timeout(limits.cliJsonRequestTimeoutMs))
    if (signal) init.signal = signal
    let res: Response
    try {
      res = await fetch(url, init)
    } catch (err) {
      throw connectionError(err, this.conn.baseUrl)
    }
    if (!res.ok) throw await errorOf(res)
    return res
  }

  /** A JSON call: returns the envelope's `data`. */
  async json<T>(method: string, route: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, route, { accept: 'application/json', ...opts })
    const body = (await res.json()) as { success?: boolean; data?: T }
    if (body.success !== true) throw new ApiError('bad_response', `unexpected reply from ${route}`)
    return body.data as T
  }
}

async function errorOf(res: Response): Promise<ApiError> {
  // A body cut off mid-read still leaves the status line to report.
  const text = await res.text().catch(() => '')
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }
    const { code, message } = body.error ?? {}
    if (typeof code === 'string' && typeof message === 'string')
      return new ApiError(code, message, res.status)
  } catch {
    // Not our envelope (a proxy's page, say): fall through to the status line.
  }
  return new ApiError(`http_${res.status}`, `${res.status} ${res.statusText}`.trim(), res.status)
}

/** fetch only says "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND...) sits in its cause. */
export function connectionError(err: unknown, baseUrl: string): Error {
  if (err instanceof Error && err.name === 'TimeoutError')
    return new ApiError('timeout', `${baseUrl} did not answer in ${limits.cliJsonRequestTimeoutMs / 1000} s`)
  const code = causeCode(err)
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'ECONNRESET')
    return new ApiError(
      code,
      `cannot reach ${baseUrl}: is \`s0 server\` running at ${baseUrl}? (set S0_API_URL)`,
    )
  if (code) return new ApiError(code, `request to ${baseUrl} failed`)
  return err instanceof Error ? err : new Error(String(err))
}

function causeCode(err: unknown): string | undefined {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e !== null && typeof e === 'object'; depth++) {
    const { code, errors, cause } = e as { code?: unknown; errors?: unknown; cause?: unknown }
    if (typeof code === 'string' && code !== 'UND_ERR_SOCKET') return code
    // Happy eyeballs (localhost → ::1 and 127.0.0.1) reports an AggregateError of attempts.
    if (Array.isArray(errors) && errors.length > 0) e = errors[0]
    else e = cause
  }
  return undefined
}
