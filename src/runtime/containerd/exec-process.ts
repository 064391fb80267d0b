// One process exec'd through containerd, held like a child process (driver.ts ExecClient):
// there is no client process (the shim runs it), so its stdio are FIFOs we make and the shim
// copies to and from, and its exit comes from Tasks.Wait.
//
// FIFO rules that matter (containerd 1.6 pkg/process/io.go): the shim opens stdout/stderr for
// writing after the process started, blocking until a reader is there, and holds a reader of
// its own; it holds a writer of stdin until CloseIO. So: our read ends are opened (non-blocking)
// before Exec, with a writer of our own each until Start returns (a FIFO without writers reads
// as end-of-file); our stdin end is opened read-write (never blocks, never EPIPE) and its end
// is passed on with CloseIO.
import { EventEmitter } from 'node:events'
import { closeSync, constants, openSync } from 'node:fs'
import net from 'node:net'
import { Readable, Writable } from 'node:stream'
import type { ExecClient } from '../driver.js'

export interface FifoSet {
  stdin: string
  stdout: string
  /** Empty for a terminal: the shim sends the terminal's output to stdout only. */
  stderr: string
}

/** Our ends of one exec's FIFOs, opened before containerd's. */
export class FifoEnds {
  readonly stdin: net.Socket
  readonly stdout: net.Socket
  readonly stderr: Readable
  /** The streams whose end means the shim is done copying (stdout, and stderr without a terminal). */
  readonly copied: Readable[]
  private keep: number[]

  constructor(f: FifoSet) {
    const nb = constants.O_NONBLOCK
    const openRead = (p: string): net.Socket =>
      new net.Socket({ fd: openSync(p, constants.O_RDONLY | nb), readable: true, writable: false })
    this.stdout = openRead(f.stdout)
    this.keep = [openSync(f.stdout, constants.O_WRONLY | nb)]
    if (f.stderr) {
      this.stderr = openRead(f.stderr)
      this.keep.push(openSync(f.stderr, constants.O_WRONLY | nb))
    } else {
      // A terminal: stderr is merged into stdout, as on any terminal; an empty stream.
      this.stderr = Readable.from([])
    }
    this.copied = f.stderr ? [this.stdout, this.stderr] : [this.stdout]
    this.stdin = new net.Socket({
      fd: openSync(f.stdin, constants.O_RDWR | nb),
      readable: false,
      writable: true,
    })
  }

  /** Once the shim has its writers open (after Start) or will never open them (a failed start). */
  releaseKeepalives(): void {
    for (const fd of this.keep) closeSync(fd)
    this.keep = []
  }

  destroy(): void {
    this.releaseKeepalives()
    for (const s of [this.stdin, this.stdout, this.stderr]) s.destroy()
  }
}

export interface ExecProcessHooks {
  /** Signals the process through containerd. */
  signal(signal: NodeJS.Signals): Promise<void>
  /** Stdin ended on our side: CloseIO, so the process reads end-of-file. */
  closeStdin(): Promise<void>
  /** On a terminal: the shim closes the terminal itself at stdin's end (see the constructor). */
  tty: boolean
}

/**
 * The stand-in ChildProcess. Emits 'exit' when Tasks.Wait answers and 'close' once stdout and
 * stderr have ended too (the shim closes its writers after copying everything), like Node's.
 */
export class ExecProcess extends EventEmitter implements ExecClient {
  readonly stdin: Writable
  readonly stdout: Readable
  readonly stderr: Readable
  readonly pid = undefined
  exitCode: number | null = null
  signalCode: NodeJS.Signals | null = null
  private open: number

  constructor(
    private readonly ends: FifoEnds,
    private readonly hooks: ExecProcessHooks,
  ) {
    super()
    this.open = ends.copied.length
    this.stdout = ends.stdout
    this.stderr = ends.stderr
    // The process may exit before reading its input: what it read is what it wanted (cli.ts).
    ends.stdin.on('error', () => undefined)
    const sock = ends.stdin
    if (hooks.tty) {
      // The shim closes the terminal when its stdin ends, output not yet read included. The end
      // of input on a terminal is its EOF character instead (as `script` does for the CLIs);
      // no CloseIO, so the shim's own writer keeps the terminal's input open.
      this.stdin = new Writable({
        write: (chunk: Buffer, _enc, cb) => void sock.write(chunk, (e) => cb(e ?? null)),
        final: (cb) => {
          sock.end('\x04')
          cb()
        },
      })
      this.stdin.on('error', () => undefined)
    } else {
      this.stdin = sock
      sock.once('finish', () => {
        hooks.closeStdin().catch(() => undefined) // the process may be gone already
      })
    }
    for (const s of ends.copied) {
      s.once('close', () => {
        this.open--
        this.maybeClose()
      })
      s.on('error', () => undefined) // a read error ends the stream: 'close' follows
    }
  }

  /** Tasks.Wait answered (or the start failed: `code` then says how). */
  exited(code: number): void {
    if (this.exitCode !== null) return
    this.exitCode = code
    this.emit('exit', code, null)
    this.maybeClose()
  }

  /**
   * A signal to the process through containerd; as for a runtime client, SIGKILL gives up on
   * the streams (a child of the process may hold them open), so 'close' follows.
   */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    const name = typeof signal === 'number' ? 'SIGKILL' : signal
    this.hooks.signal(name).catch(() => undefined) // gone already: nothing to signal
    if (name === 'SIGKILL') {
      this.ends.destroy()
      if (this.exitCode === null) this.exited(128 + 9)
    }
    return true
  }

  private maybeClose(): void {
    if (this.open > 0 || this.exitCode === null) return
    this.open = -1
    this.ends.destroy()
    this.emit('close', this.exitCode, null)
  }
}
