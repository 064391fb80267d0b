// The OCI runtime boundary: one interface for runc, crun and runsc, each driven through its CLI
// with a state directory of our own (`--root`), so our containers never mix with anyone else's;
// or runc and runsc driven through a containerd daemon of our own (containerd/, `via`).
import type { Readable, Writable } from 'node:stream'

export type DriverName = 'runc' | 'crun' | 'runsc'
export const DRIVER_NAMES: readonly DriverName[] = ['runc', 'crun', 'runsc']

/**
 * How a runtime is driven: its CLI (the default), or containerd's gRPC API with the runtime
 * under containerd's runc v2 shim (containerd/driver.ts). The sandbox's runtime stays the same
 * (its name, seccomp, pids cost), so templates, rows and the API do not see the difference.
 */
export type DriverVia = 'cli' | 'containerd'
/** The runtimes that can be driven through containerd (crun could too; nobody asked). */
export const CONTAINERD_RUNTIMES: readonly DriverName[] = ['runc', 'runsc']

export type ContainerStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped'

export interface ContainerState {
  id: string
  status: ContainerStatus
  /** Host pid of the container's init (0 once stopped). */
  pid: number
  bundle: string
}

export interface ExecSpec {
  args: readonly string[]
  /** `KEY=value` entries added to (and overriding) the container's environment. */
  env?: readonly string[]
  cwd?: string
  /** Run under a pseudo-terminal (stdout and stderr then arrive merged on stdout). */
  tty?: boolean
  /** With `tty`: its size from the start (the runtime copies it to the process's terminal). */
  ttySize?: { rows: number; cols: number }
}

/**
 * The part of a ChildProcess callers of exec use. The CLI drivers hand the runtime client's
 * ChildProcess itself; the containerd driver has no client process (the shim runs the process),
 * so it hands a stand-in whose stdio are the FIFOs the shim copies to (containerd/exec-process.ts).
 */
export interface ExecClient {
  readonly stdin: Writable | null
  readonly stdout: Readable | null
  readonly stderr: Readable | null
  /** A host pid callers may resize a terminal through (pty-resize.ts); undefined without one. */
  readonly pid?: number | undefined
  readonly exitCode: number | null
  readonly signalCode: NodeJS.Signals | null
  kill(signal?: NodeJS.Signals | number): boolean
  on(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  on(event: 'error', listener: (err: Error) => void): unknown
  once(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown
  once(event: 'error', listener: (err: Error) => void): unknown
}

/** A process started inside a running container. */
export interface ExecChild {
  /** The runtime's client process: its stdio are the exec'd process's stdio, its exit code is its exit code. */
  readonly child: ExecClient
  /**
   * Signals the process inside the container. Killing `child` alone would leave the process
   * running (the runtime cannot forward SIGKILL), so timeouts go through here.
   */
  kill(signal: NodeJS.Signals): Promise<void>
  /**
   * A terminal exec's window size, where the driver resizes it itself (containerd: ResizePty);
   * without it, callers resize the terminal of `child.pid` (`script`'s, pty-resize.ts).
   */
  resize?(rows: number, cols: number): Promise<void>
}

/**
 * What the runtime charges to the pids cgroup per sandbox process: runsc on ptrace uses 7-8 host
 * threads per guest process plus ~40 for itself, and its Go runtime keeps the threads a burst of
 * blocking calls made (measured: 42 idle, 133 during six parallel sleeps, 152 after them), so a
 * guest limit of N needs base + N * perProcess with room for that burst in the base.
 */
export interface PidsCost {
  base: number
  perProcess: number
}

export interface OciDriver {
  readonly name: DriverName
  /** Absent: 'cli'. */
  readonly via?: DriverVia
  /** Our state directory for this runtime (its `--root`). */
  readonly root: string
  readonly pidsCost: PidsCost
  /**
   * Whether the bundle carries our seccomp profile (seccomp.ts): runc and crun apply it to the
   * sandbox's processes on the host kernel. runsc: no (its sentry implements the syscalls and
   * filters its own; it ignores the spec's profile).
   */
  readonly hostSeccomp: boolean
  /**
   * `create` then `start`: the container's init runs when this resolves, with its host pid
   * (from `create --pid-file`, so no `state` call is needed).
   */
  run(id: string, bundleDir: string): Promise<number>
  exec(id: string, spec: ExecSpec): Promise<ExecChild>
  /**
   * Freezes every process of the container (runc/crun: the cgroup freezer; runsc: its sentry),
   * so its file system can be captured at one instant; `thaw` lets them go on.
   */
  freeze(id: string): Promise<void>
  thaw(id: string): Promise<void>
  /**
   * Process memory to disk and back, where the runtime can (runsc). `checkpoint` leaves the
   * container stopped; `restore` recreates it from the image and the bundle (its root file
   * system must show the same files at the same paths) and returns the init's host pid.
   */
  readonly memoryCheckpoint?: {
    checkpoint(id: string, imageDir: string): Promise<void>
    restore(id: string, bundleDir: string, imageDir: string): Promise<number>
  }
  /** Signals the init (or, with `all`, every process) of the container. */
  kill(id: string, signal: NodeJS.Signals, opts?: { all?: boolean }): Promise<void>
  /** Deletes the container, killing it first if it runs. Absent containers are not an error. */
  delete(id: string): Promise<void>
  /** undefined when the runtime does not know the id. */
  state(id: string): Promise<ContainerState | undefined>
  list(): Promise<ContainerState[]>
  /** Host pids of the container's processes (runc, crun) or of the sandbox itself (runsc: guest pids). */
  pids(id: string): Promise<number[]>
  /**
   * Releases what the driver holds beyond its containers (containerd: stops our daemon; the
   * containers keep running under their shims). The CLI drivers hold nothing.
   */
  close?(): Promise<void>
}
