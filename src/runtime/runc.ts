// runc 1.1: the reference runtime. Namespaces + cgroups + seccomp on the host kernel; everything
// it needs is CliDriver's defaults (exec pid file with the host pid, `exec -t` for a terminal).
// Quirk: the bundle's root.path must be a real absolute path, never a symlink (overlay.ts gives one).
import { CliDriver, type CliDriverOptions } from './cli-driver.js'

export class RuncDriver extends CliDriver {
  readonly name = 'runc' as const

  constructor(opts: CliDriverOptions) {
    super(opts, 'runc')
  }
}
