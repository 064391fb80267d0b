// Pre-started execs ("zygotes"). A runtime `exec` costs 30-70 ms here (runc, crun and runsc start
// a process in the container's namespaces, cgroups and security context), most of a warm
// sandbox's claim-to-first-output. A zygote is a shell exec'd the same way ahead of time that
// waits on its stdin for one command line; handed a command, it `exec`s it, about a millisecond.
// The process is exactly what a fresh exec would have made (same runtime client, same pid file
// for signals, same stdio pipes); only the shell's parsing of the line is new, so a command that
// the line cannot carry safely (a newline in an argument, an option-like argv[0]) and terminal
// execs use a fresh exec. One zygote per sandbox at most, a bounded number per runtime: each costs
// an idle runtime client on the host (runc ~10 MB, crun ~3 MB).
import { ENV_NAME_PATTERN } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { ExecChild, OciDriver } from './driver.js'

const ZYGOTE_SCRIPT = 'IFS= read -r line || exit 0; eval "$line"'

interface Zygote {
  ec: ExecChild
  env: Record<string, string>
}

/** POSIX single quotes: the only character needing care inside them is the quote itself. */
function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

export interface ZygoteCommand {
  args: readonly string[]
  env: Record<string, string>
  cwd?: string
}

export class ExecZygotes {
  private readonly ready = new Map<string, Zygote>()
  /** Sandboxes where a zygote died unused (no /bin/sh, say): fresh execs only. */
  private readonly broken = new Set<string>()

  constructor(
    private readonly driver: OciDriver,
    private readonly max: number = limits.execZygotesPerRuntimeMax,
  ) {}

  /** Starts a zygote for the sandbox if it has none and the cap allows; never throws. */
  prime(id: string, env: Record<string, string>): void {
    if (this.ready.has(id) || this.broken.has(id) || this.ready.size >= this.max) return
    // Fire and forget: the caller goes on without it; both outcomes are handled below.
    void this.driver
      .exec(id, {
        args: ['/bin/sh', '-c', ZYGOTE_SCRIPT],
        env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      })
      .then(
        (ec) => {
          const z: Zygote = { ec, env: { ...env } }
          if (this.ready.has(id)) {
            ec.child.kill('SIGKILL')
            return
          }
          this.ready.set(id, z)
          // EPIPE if it dies before it is used: its exit (below) marks the sandbox broken.
          ec.child.stdin?.on('error', () => undefined)
          ec.child.once('exit', () => {
            if (this.ready.get(id) === z) {
              this.ready.delete(id)
              this.broken.add(id)
            }
          })
        },
        // No zygote (the sandbox is gone, or has no /bin/sh): fresh execs report the real error.
        () => this.broken.add(id),
      )
  }

  /**
   * The sandbox's zygote running `cmd`, or undefined (none ready, or a command it cannot carry:
   * the caller makes a fresh exec). The zygote is used once.
   */
  take(id: string, cmd: ZygoteCommand): ExecChild | undefined {
    const z = this.ready.get(id)
    if (!z) return undefined
    const line = commandLine(cmd, z.env)
    if (line === undefined) return undefined
    this.ready.delete(id)
    const child = z.ec.child
    if (child.exitCode !== null || child.signalCode !== null || !child.stdin?.writable) return undefined
    child.stdin.write(line)
    return z.ec
  }

  /** Forgets (and stops) the sandbox's zygote: it is being stopped or deleted. */
  drop(id: string): void {
    const z = this.ready.get(id)
    this.ready.delete(id)
    this.broken.delete(id)
    z?.ec.child.stdin?.end()
  }

  get size(): number {
    return this.ready.size
  }
}

/** The shell line that turns a zygote started with `base` into `cmd`; undefined if it cannot. */
export function commandLine(cmd: ZygoteCommand, base: Record<string, string>): string | undefined {
  const all = [...cmd.args, ...Object.values(cmd.env), cmd.cwd ?? '']
  if (cmd.args.length === 0 || all.some((s) => s.includes('\n') || s.includes('\0'))) return undefined
  if ((cmd.args[0] as string).startsWith('-')) return undefined
  const parts: string[] = []
  for (const k of Object.keys(base)) if (!(k in cmd.env) && ENV_NAME_PATTERN.test(k)) parts.push(`unset ${k}`)
  for (const [k, v] of Object.entries(cmd.env)) {
    if (!ENV_NAME_PATTERN.test(k)) return undefined
    if (base[k] !== v) parts.push(`export ${k}=${q(v)}`)
  }
  if (cmd.cwd !== undefined) parts.push(`cd -- ${q(cmd.cwd)} || exit 126`)
  parts.push(`exec ${cmd.args.map(q).join(' ')}`)
  return parts.join('; ') + '\n'
}
