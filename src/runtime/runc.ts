// runc 1.1: the reference runtime. Namespaces + cgroups + seccomp on the host kernel.
// Quirk: the bundle's root.path must be a real absolute path, never a symlink (bundle.ts resolves it).
import { CliDriver, type CliDriverOptions } from './cli-driver.js'
import type { ExecSpec } from './driver.js'

export class RuncDriver extends CliDriver {
  readonly name = 'runc' as const

  constructor(opts: CliDriverOptions) {
    super(opts, 'runc')
  }

  protected execPidArgs(pidFile: string): string[] {
    return ['--pid-file', pidFile]
  }

  /** The pid file holds the host pid (runc shares our pid namespace's view). */
  protected async killExec(_id: string, pid: number, signal: NodeJS.Signals): Promise<void> {
    killHostPid(pid, signal)
  }

  protected async ttyArgs(_spec: ExecSpec): Promise<string[]> {
    return ['-t']
  }
}

export function killHostPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}
