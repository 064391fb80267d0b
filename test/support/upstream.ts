// "The internet" for egress tests: an upstream network namespace the test creates, joined to
// the host by a veth (host end 198.18.<n>.1/24, one address per name inside from .2 up), test
// servers run INSIDE it as child processes (upstream-server.ts), a hosts file mapping names to
// its addresses, and a cleanup that removes all of it. 198.18.0.0/15 is the benchmarking
// range: never a sandbox pool, never routed anywhere else. Also the sandbox pools tests use
// (testSandboxCidr): locked per test process, so parallel test files never share one.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { runCli, runCliOk } from '../../src/runtime/cli.js'
import type { ConnEvent } from './upstream-server.js'

export type { ConnEvent } from './upstream-server.js'

/** Names every upstream answers for, in address order (.2, .3, ...). */
export const DEFAULT_UPSTREAM_NAMES = [
  'api.allowed.test',
  'blocked.test',
  'other.test',
  'cdn.allowed.test',
] as const

/** Server kinds of upstream-server.ts (others may be added there). */
export type UpstreamServerKind = 'http-echo' | 'tcp-echo' | 'udp-echo' | (string & {})

export interface UpstreamServer {
  kind: string
  port: number
  pid: number
  /** Connections (TCP) or datagrams (UDP) the server saw, in order. */
  readonly events: readonly ConnEvent[]
  /** Anything else the server reported (the ssh kind's logins), in order. */
  readonly messages: readonly Record<string, unknown>[]
  stop(): Promise<void>
}

export interface Upstream {
  /** The namespace's name under /run/netns. */
  netns: string
  /** The host's end of the veth (where the proxy's connections come from). */
  hostAddress: string
  /** name → address inside the namespace. */
  addresses: Readonly<Record<string, string>>
  /** The /24 the upstream lives in. */
  cidr: string
  /** The address of a name (throws for an unknown one). */
  address(name: string): string
  /** A hosts-format file (`<address> <name>` per line), for S0_EGRESS_HOSTS. */
  hostsFile: string
  /** Starts a server of that kind inside the namespace; port 0 (default): any free one. */
  start(kind: UpstreamServerKind, opts?: { port?: number; args?: readonly string[] }): Promise<UpstreamServer>
  /** Stops every server, removes the namespace, the veth, the hosts file and the lock. */
  cleanup(): Promise<void>
}

const SUPPORT_DIR = import.meta.dirname
const REPO = path.resolve(SUPPORT_DIR, '..', '..')
const LOCK_DIR = '/run/s0-test-locks'
const READY_WAIT_MS = 30_000
const SUBNETS = 256

export async function createUpstream(opts: { names?: readonly string[] } = {}): Promise<Upstream> {
  const names = [...(opts.names ?? DEFAULT_UPSTREAM_NAMES)]
  if (names.length === 0 || names.length > 200) throw new Error('an upstream has 1 to 200 names')
  const start = Math.floor(Math.random() * SUBNETS)
  for (let i = 0; i < SUBNETS; i++) {
    const n = (start + i) % SUBNETS
    const cidr = `198.18.${n}.0/24`
    if (await routeExists(`198.18.${n}.`)) continue
    const release = await claimLock(`upstream-${n}`)
    if (!release) continue
    try {
      return await build(n, names, release)
    } catch (err) {
      await release()
      throw new Error(`upstream in ${cidr}: ${String(err)}`, { cause: err })
    }
  }
  throw new Error('no free 198.18.<n>.0/24 for an upstream namespace')
}

async function build(n: number, names: string[], release: () => Promise<void>): Promise<Upstream> {
  const netns = `s0up${n}`
  const hostIface = `s0up${n}`
  const hostAddress = `198.18.${n}.1`
  const addresses: Record<string, string> = {}
  names.forEach((name, i) => (addresses[name] = `198.18.${n}.${i + 2}`))
  // A namespace or veth of a crashed run holding this lock before us.
  await removeNetwork(netns, hostIface)
  await runCliOk('ip', ['netns', 'add', netns])
  const dir = await mkdtemp(path.join(os.tmpdir(), 's0-upstream-'))
  const servers = new Set<UpstreamServer>()
  const cleanup = async (): Promise<void> => {
    for (const s of [...servers]) await s.stop()
    await removeNetwork(netns, hostIface)
    await rm(dir, { recursive: true, force: true })
    await release()
  }
  try {
    await runCliOk('ip', ['-batch', '-'], {
      input: [
        `link add name ${hostIface} type veth peer name eth0 netns ${netns}`,
        `addr add ${hostAddress}/24 dev ${hostIface}`,
        `link set dev ${hostIface} up`,
        '',
      ].join('\n'),
    })
    await runCliOk('ip', ['-n', netns, '-batch', '-'], {
      input: [
        'link set dev lo up',
        ...Object.values(addresses).map((a) => `addr add ${a}/24 dev eth0`),
        'link set dev eth0 up',
        `route add default via ${hostAddress}`,
        '',
      ].join('\n'),
    })
    const hostsFile = path.join(dir, 'hosts')
    await writeFile(
      hostsFile,
      Object.entries(addresses)
        .map(([name, a]) => `${a} ${name}\n`)
        .join(''),
    )
    return {
      netns,
      hostAddress,
      addresses,
      cidr: `198.18.${n}.0/24`,
      hostsFile,
      address(name) {
        const a = addresses[name]
        if (a === undefined) throw new Error(`upstream has no name ${name}`)
        return a
      },
      async start(kind, o = {}) {
        const s = await startServer(netns, kind, o.port ?? 0, o.args ?? [])
        servers.add(s)
        const stop = s.stop
        s.stop = async () => {
          servers.delete(s)
          await stop()
        }
        return s
      },
      cleanup,
    }
  } catch (err) {
    await cleanup()
    throw err
  }
}

/**
 * A server of upstream-server.ts inside any network namespace (`ip netns` name): an upstream's,
 * or a bare one standing in for a sandbox. The caller stops it.
 */
export async function startServerIn(
  netns: string,
  kind: UpstreamServerKind,
  opts: { port?: number; args?: readonly string[] } = {},
): Promise<UpstreamServer> {
  return startServer(netns, kind, opts.port ?? 0, opts.args ?? [])
}

async function startServer(
  netns: string,
  kind: string,
  port: number,
  args: readonly string[],
): Promise<UpstreamServer> {
  // nsenter --net only: `ip netns exec` would also remount /sys.
  const child = spawn(
    'nsenter',
    [
      `--net=/run/netns/${netns}`,
      '--',
      process.execPath,
      '--import',
      'tsx',
      path.join(SUPPORT_DIR, 'upstream-server.ts'),
      kind,
      String(port),
      ...args,
    ],
    { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] },
  )
  const events: ConnEvent[] = []
  const messages: Record<string, unknown>[] = []
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < 8192) stderr += b.toString()
  })
  const ready = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} server not ready: ${stderr}`)), READY_WAIT_MS)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${kind} server exited (${code}): ${stderr}`))
    })
    createInterface({ input: child.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { ready?: { port: number }; conn?: ConnEvent }
      if (msg.conn) events.push(msg.conn)
      else if (!msg.ready) messages.push(msg)
      if (msg.ready) {
        clearTimeout(timer)
        resolve(msg.ready.port)
      }
    })
  })
  const stop = async (): Promise<void> => stopChild(child)
  try {
    return { kind, port: await ready, pid: child.pid as number, events, messages, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

async function removeNetwork(netns: string, hostIface: string): Promise<void> {
  await runCli('ip', ['link', 'delete', 'dev', hostIface])
  await runCli('ip', ['netns', 'delete', netns])
}

async function routeExists(prefix: string): Promise<boolean> {
  const r = await runCliOk('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])
  return (JSON.parse(r.stdout || '[]') as { dst?: string }[]).some((x) => x.dst?.startsWith(prefix))
}

/**
 * A private /16 for one test's SandboxNetwork (10.160.0.0/16 to 10.229.0.0/16; the default pool
 * 10.231.0.0/16 is left to servers), locked for this process until `release`.
 */
export async function testSandboxCidr(): Promise<{ cidr: string; release(): Promise<void> }> {
  const first = 160
  const count = 70
  const start = Math.floor(Math.random() * count)
  for (let i = 0; i < count; i++) {
    const octet = first + ((start + i) % count)
    if (await routeExists(`10.${octet}.`)) continue
    const release = await claimLock(`cidr-10.${octet}`)
    if (release) return { cidr: `10.${octet}.0.0/16`, release }
  }
  throw new Error('no free 10.x.0.0/16 for a test sandbox network')
}

/**
 * An exclusive lock file holding our pid; a lock whose pid is gone (a crashed run) is taken
 * over. Returns its release, or undefined when another live process holds it.
 */
async function claimLock(name: string): Promise<(() => Promise<void>) | undefined> {
  await mkdir(LOCK_DIR, { recursive: true })
  const file = path.join(LOCK_DIR, name)
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, String(process.pid), { flag: 'wx' })
      return () => rm(file, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(await readFile(file, 'utf8').catch(() => ''))
      if (pid > 0 && pidAlive(pid)) return undefined
      await rm(file, { force: true })
    }
  }
  return undefined
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
