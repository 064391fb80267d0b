// Runs one host command with a timeout and capped output: every runtime CLI call (runc, ip,
// mount, mmdebstrap...) goes through here, so none can hang the server or fill its memory.
import { spawn } from 'node:child_process'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'

export interface CliOptions {
  timeoutMs?: number
  /** Bytes kept of stdout and of stderr each; the rest is counted and dropped. */
  outputBytesMax?: number
  input?: string | Buffer
  env?: NodeJS.ProcessEnv
  cwd?: string
  signal?: AbortSignal
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `bin args` and resolves with its exit status, whatever it is. Rejects only on timeout or spawn failure. */
export function runCli(bin: string, args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? limits.hostCliTimeoutMsDefault
  const max = opts.outputBytesMax ?? limits.hostCliOutputBytesMax
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      cwd: opts.cwd,
    })
    const out = new CappedBuffer(max)
    const err = new CappedBuffer(max)
    child.stdout?.on('data', (b: Buffer) => out.push(b))
    child.stderr?.on('data', (b: Buffer) => err.push(b))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    const onAbort = (): void => {
      child.kill('SIGKILL')
    }
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    child.on('error', (e) => {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      reject(new S0Error('runtime_unavailable', `cannot run ${bin}: ${e.message}`, { cause: e }))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      if (timedOut) {
        reject(
          new S0Error('timeout', `${bin} ${args.slice(0, 4).join(' ')} timed out after ${timeoutMs} ms`, {
            details: { stderr: err.text() },
          }),
        )
        return
      }
      if (opts.signal?.aborted) {
        reject(new S0Error('aborted', `${bin} aborted`))
        return
      }
      resolve({ code, signal, stdout: out.text(), stderr: err.text() })
    })
    // A child that exits before reading all its input (nft refusing a script, say) closes the
    // pipe: EPIPE on our side. Its exit code and stderr say what happened; the write error is
    // not a second failure (and unhandled, it would crash the process).
    child.stdin?.on('error', () => undefined)
    if (opts.input !== undefined) child.stdin?.end(opts.input)
  })
}

/** Like runCli, but a non-zero exit is an S0Error with the command's stderr in the message. */
export async function runCliOk(
  bin: string,
  args: readonly string[],
  opts: CliOptions = {},
): Promise<CliResult> {
  const r = await runCli(bin, args, opts)
  if (r.code !== 0) {
    const why = (r.stderr.trim() || r.stdout.trim()).slice(0, limits.hostCliErrorCharsMax)
    throw new S0Error(
      'runtime_failed',
      `${bin} ${args.slice(0, 6).join(' ')} failed (${r.code ?? r.signal}): ${why}`,
      {
        details: { code: r.code, signal: r.signal, stderr: r.stderr },
      },
    )
  }
  return r
}

/** Keeps the first `max` bytes of a stream and counts the rest. */
export class CappedBuffer {
  private readonly parts: Buffer[] = []
  private kept = 0
  dropped = 0

  constructor(private readonly max: number) {}

  push(b: Buffer): void {
    const room = this.max - this.kept
    if (room <= 0) {
      this.dropped += b.length
      return
    }
    const part = b.length <= room ? b : b.subarray(0, room)
    this.parts.push(part)
    this.kept += part.length
    this.dropped += b.length - part.length
  }

  buffer(): Buffer {
    return Buffer.concat(this.parts)
  }

  text(): string {
    return this.buffer().toString('utf8')
  }
}
