// runsc (gVisor, Debian's 20221219 build): a user-space kernel between the sandbox and the host.
// Quirks handled here (runtime-recipes §2): only --platform=ptrace works (no /dev/kvm, no
// systrap); --network=sandbox needs /proc/sys/net hidden at create; each guest process costs
// ~8 host pids; exec has no -t (a process.json with terminal:true instead).
import { mkdir, writeFile } from 'node:fs/promises'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { CliDriver, type CliDriverOptions } from './cli-driver.js'
import type { ExecSpec } from './driver.js'

export type RunscNetwork = 'sandbox' | 'none'

export interface RunscDriverOptions extends CliDriverOptions {
  /**
   * `sandbox` (default): gVisor's netstack on the interfaces of the spec's network namespace
   * (loopback only unless egress adds a veth). `none`: loopback only, namespace ignored.
   */
  network?: RunscNetwork
  platform?: string
}

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export class RunscDriver extends CliDriver {
  readonly name = 'runsc' as const
  override readonly pidsCost = { base: 160, perProcess: 8 } // driver.ts: PidsCost
  override readonly hostSeccomp = false
  readonly network: RunscNetwork
  private readonly platform: string

  constructor(opts: RunscDriverOptions) {
    super(opts, 'runsc')
    this.network = opts.network ?? 'sandbox'
    this.platform = opts.platform ?? 'ptrace'
  }

  protected override globalArgs(): string[] {
    // --file-access=shared: the files API writes the rootfs from the host side of the overlay;
    // with the default (exclusive) the gofer caches and a rewritten file reads stale inside.
    return [
      '--root',
      this.root,
      `--platform=${this.platform}`,
      `--network=${this.network}`,
      '--file-access=shared',
    ]
  }

  /**
   * runsc decides "am I in the root netns?" by the presence of /proc/sys/net/core/rmem_default,
   * which kernel 6.x has in every netns, and then refuses --network=sandbox (at create and at
   * start, which sets up the interfaces). A private mount namespace with an empty tmpfs over
   * /proc/sys/net hides it from this runsc process only.
   */
  protected override lifecycleArgv(args: string[]): string[] {
    const inner = [this.bin, ...this.globalArgs(), ...args]
    if (this.network !== 'sandbox') return inner
    return [
      'unshare',
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      'mount -t tmpfs -o size=4k,mode=0555 none /proc/sys/net && exec "$@"',
      'runsc-net',
      ...inner,
    ]
  }

  /**
   * gVisor saves the sandbox's memory and kernel state to one image file and restores it in a
   * new sandbox (files are reopened by path, so the root must show the same files). runc and
   * crun would need CRIU 4.1+ on kernels from 6.13 on; Debian 12 ships 3.17 (docs/ARCHITECTURE.md).
   */
  readonly memoryCheckpoint = {
    checkpoint: async (id: string, imageDir: string): Promise<void> => {
      await mkdir(imageDir, { recursive: true })
      const r = await this.cli(['checkpoint', `--image-path=${imageDir}`, id], limits.ociRunTimeoutMs)
      if (r.code !== 0)
        throw new S0Error(
          'runtime_failed',
          `runsc checkpoint ${id} failed: ${r.stderr.trim().slice(0, limits.hostCliErrorCharsMax)}`,
        )
    },
    restore: async (id: string, bundleDir: string, imageDir: string): Promise<number> => {
      const pidPath = await this.spawnInit(id, bundleDir, 'restore', [
        `--image-path=${imageDir}`,
        '--bundle',
        bundleDir,
        '-detach',
      ])
      return this.initPid(id, pidPath)
    },
  }

  /** The guest pid: runc's --pid-file would name the runsc client's own. */
  protected override execPidArgs(pidFile: string): string[] {
    return ['--internal-pid-file', pidFile]
  }

  /**
   * The pid file holds the guest pid; only runsc can signal it. A failure means the process or
   * the sandbox is already gone (runc's ESRCH), so its exit code is not checked.
   */
  protected override async killExec(id: string, pid: number, signal: NodeJS.Signals): Promise<void> {
    await this.cli(['kill', '--pid', String(pid), id, signal.replace(/^SIG/, '')])
  }

  /** runsc exec has no -t: a process.json with terminal:true instead. */
  protected override async ttyArgs(spec: ExecSpec, execBase: string): Promise<string[]> {
    const file = `${execBase}.process.json`
    const proc = {
      terminal: true,
      user: { uid: 0, gid: 0 },
      args: spec.args,
      env: [DEFAULT_PATH, 'TERM=xterm', ...(spec.env ?? [])],
      cwd: spec.cwd ?? '/',
    }
    await writeFile(file, JSON.stringify(proc))
    return ['--process', file]
  }
}
