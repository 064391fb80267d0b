// `s0 <command>` as a real child process run from source (test/support/s0-main.ts), for tests
// that need a process of their own: a foreground mount, a crash. Its output is collected.
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'

const S0_MAIN = path.join(import.meta.dirname, 's0-main.ts')

export interface S0Process {
  child: ChildProcess
  /** Resolves with the exit code (null when a signal ended it) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Everything the process wrote to stdout and stderr so far. */
  stdout(): string
  stderr(): string
}

/**
 * Starts `s0 ...args` with `env` added to ours, and resolves once its stdout contains `readyOn`
 * (at once when not given); fails with its stderr if it exits before that.
 */
export async function spawnS0(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; readyOn?: string } = {},
): Promise<S0Process> {
  const child = spawn(process.execPath, ['--import', 'tsx', S0_MAIN, ...args], {
    // Any free SSH port unless the test names one: servers run side by side (and a user's on 2222).
    env: { ...process.env, S0_SSH_PORT: '0', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  )
  const proc: S0Process = { child, exited, stdout: () => out, stderr: () => err }
  const { readyOn } = opts
  if (readyOn === undefined) return proc
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', () => {
      if (out.includes(readyOn)) resolve()
    })
    // Settles nothing once ready (a later exit is the test's business, through `exited`).
    void exited.then(({ code, signal }) =>
      reject(new Error(`s0 ${args[0]} exited early (${code ?? signal}): ${err.slice(-2000)}`)),
    )
  })
  return proc
}
