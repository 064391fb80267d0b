// Our own containerd: one daemon per driver, with its root, state, socket and config under the
// driver's state directory, so it never touches (or is touched by) a system containerd. The
// containers outlive it: each one's runc v2 shim is its parent, and a daemon started again on
// the same root and state finds the shims again (how s0's restarts adopt sandboxes).
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { pidAlive } from '../exec-handle.js'
import { ContainerdClient } from './client.js'

export interface ContainerdPaths {
  dir: string
  root: string
  state: string
  socket: string
  config: string
  log: string
  pidFile: string
}

/** Everything of the daemon lives under `dir` (the driver's state directory). */
export function containerdPaths(dir: string): ContainerdPaths {
  return {
    dir,
    root: path.join(dir, 'root'),
    state: path.join(dir, 'state'),
    socket: socketPath(dir),
    config: path.join(dir, 'config.toml'),
    log: path.join(dir, 'containerd.log'),
    pidFile: path.join(dir, 'containerd.pid'),
  }
}

/** A unix socket path fits sun_path: 108 bytes with its NUL. */
const SOCKET_PATH_BYTES_MAX = 107
/** Where the sockets go when the state dir is too deep for them (one name per dir). */
const SHORT_SOCKET_DIR = '/run/s0'

/**
 * `<dir>/ctd.sock` (and `.ttrpc`, the longer one) when it fits; a deep state dir (a probe's,
 * under `<S0_STATE_DIR>/runtime/detect/probe/...`) gets a short name in /run/s0 instead.
 */
function socketPath(dir: string): string {
  const inDir = path.join(dir, 'ctd.sock')
  if (Buffer.byteLength(`${inDir}.ttrpc`) <= SOCKET_PATH_BYTES_MAX) return inDir
  const name = createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 16)
  return path.join(SHORT_SOCKET_DIR, `ctd-${name}.sock`)
}

/**
 * No CRI (we are not a kubelet's runtime), no snapshotters we do not use (they probe the host
 * and log errors), and no `opt` plugin (it would create /opt/containerd). The v1 runtime stays:
 * containerd 1.6's Tasks service does not load without it (we only use v2 shims).
 */
export function containerdConfig(p: ContainerdPaths): string {
  const disabled = [
    'io.containerd.grpc.v1.cri',
    'io.containerd.internal.v1.opt',
    'io.containerd.snapshotter.v1.aufs',
    'io.containerd.snapshotter.v1.btrfs',
    'io.containerd.snapshotter.v1.devmapper',
    'io.containerd.snapshotter.v1.zfs',
  ]
  return [
    'version = 2',
    `root = ${JSON.stringify(p.root)}`,
    `state = ${JSON.stringify(p.state)}`,
    `disabled_plugins = [${disabled.map((d) => JSON.stringify(d)).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${JSON.stringify(p.socket)}`,
    '',
    '[ttrpc]',
    `  address = ${JSON.stringify(`${p.socket}.ttrpc`)}`,
    '',
  ].join('\n')
}

/** A running daemon of ours and a client on its socket. */
export class ContainerdDaemon {
  private child: ChildProcess | undefined
  private exited: Promise<void> | undefined

  private constructor(
    readonly paths: ContainerdPaths,
    readonly client: ContainerdClient,
  ) {}

  /**
   * Starts containerd on `dir` and waits until it answers Version. A daemon left running on the
   * same dir by a previous process (its pid file) is stopped first: one daemon per dir, ours.
   */
  static async start(dir: string, namespace: string, bin = 'containerd'): Promise<ContainerdDaemon> {
    const p = containerdPaths(dir)
    await mkdir(p.dir, { recursive: true, mode: 0o700 })
    await stopByPidFile(p)
    await mkdir(path.dirname(p.socket), { recursive: true, mode: 0o700 })
    await rm(p.socket, { force: true })
    await writeFile(p.config, containerdConfig(p))
    const client = new ContainerdClient(p.socket, namespace)
    const d = new ContainerdDaemon(p, client)
    const fd = openSync(p.log, 'a', 0o600)
    // Its own process group: a Ctrl-C of the server does not take it down before close() does.
    const child = spawn(bin, ['--config', p.config], { stdio: ['ignore', fd, fd], detached: true })
    closeSync(fd)
    d.child = child
    d.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    const spawnError = new Promise<never>((_, reject) =>
      child.once('error', (e) =>
        reject(new S0Error('runtime_unavailable', `cannot run ${bin}: ${e.message}`, { cause: e })),
      ),
    )
    spawnError.catch(() => undefined) // raced below; unhandled otherwise once start resolved
    try {
      await Promise.race([d.waitReady(), spawnError])
    } catch (err) {
      await d.stop()
      throw err
    }
    if (child.pid !== undefined) await writeFile(p.pidFile, `${child.pid}\n`)
    return d
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + limits.containerdStartTimeoutMs
    let last: unknown
    while (Date.now() < deadline) {
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) break
      // Not before the socket exists: a refused connect puts grpc-js into a 1 s reconnect backoff.
      if (
        !(await access(this.paths.socket).then(
          () => true,
          () => false,
        ))
      ) {
        await new Promise((r) => setTimeout(r, limits.containerdStartPollMs))
        continue
      }
      try {
        await this.client.call('version.Version', {}, limits.containerdStartTimeoutMs)
        return
      } catch (err) {
        last = err
        await new Promise((r) => setTimeout(r, limits.containerdStartPollMs))
      }
    }
    const log = (await readFile(this.paths.log, 'utf8').catch(() => '')).slice(-limits.hostCliErrorCharsMax)
    throw new S0Error(
      'runtime_unavailable',
      `containerd did not come up on ${this.paths.socket}: ${String(last)}; log: ${log.trim()}`,
    )
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  /** SIGTERM, then SIGKILL after the grace; the containers (under their shims) keep running. */
  async stop(): Promise<void> {
    this.client.close()
    const child = this.child
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), limits.containerdStopGraceMs)
      await this.exited
      clearTimeout(timer)
    }
    await rm(this.paths.pidFile, { force: true })
    // containerd leaves its sockets behind (they would pile up in /run/s0).
    for (const f of [this.paths.socket, `${this.paths.socket}.ttrpc`]) await rm(f, { force: true })
  }
}

/** Stops the daemon a crashed predecessor left on this dir, if its pid is still containerd. */
async function stopByPidFile(p: ContainerdPaths): Promise<void> {
  const pid = Number((await readFile(p.pidFile, 'utf8').catch(() => '')).trim())
  if (!Number.isInteger(pid) || pid <= 0) return
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
  // A recycled pid is someone else's process: only ours names our config.
  if (!cmdline.includes(p.config)) return
  process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + limits.containerdStopGraceMs
  while (Date.now() < deadline && (await pidAlive(pid))) await new Promise((r) => setTimeout(r, 50))
  if (await pidAlive(pid)) process.kill(pid, 'SIGKILL')
}
