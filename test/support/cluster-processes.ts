// Cluster processes on one machine (issue 17, docs/DEPLOY.md): API replicas (`s0 api`) and agents
// (`s0 agent`) as real processes over one fresh database and one s3rver. Each agent runs in network,
// PID and mount namespaces of its own (cluster-network.ts, then `unshare --pid --mount --fork
// --mount-proc`): it has its own address, loopback and sandbox network; its FUSE mounts are
// private to it; and a SIGKILL of its namespace's PID 1 takes every process it started down with
// it, containers included, as losing the host would. Postgres is reached over its Unix socket and
// s3rver on the bridge's address, as a host reaches shared services over the network.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { nodeId, serverTag } from '../../src/cli/server-command.js'
import { deleteNetns, listNetns } from '../../src/runtime/netns.js'
import { startS3rver, type S3rverHandle } from '../../tools/s3rver.js'
import { freePort } from '../../tools/free-port.js'
import { createClusterNetwork } from './cluster-network.js'
import { testSandboxCidr } from './upstream.js'

const S0_MAIN = path.join(import.meta.dirname, 's0-main.ts')
/** Every agent listens on this port at its own address (its network namespace is its own). */
const AGENT_PORT = 7080
/**
 * What an agent runs in, once nsenter has put it in its network namespace: a mount namespace whose
 * /sys is the namespace's sysfs (its interfaces' counters are read there) with the host's cgroup
 * hierarchies bound back under it (a fresh sysfs hides them; runc needs them), then PID and mount
 * namespaces whose PID 1 is the agent itself. nsenter and the shell exec, so the spawned child
 * ends as the outer unshare and its only child is the agent (signalInit).
 */
const AGENT_NAMESPACES = [
  'unshare',
  '--mount',
  '--propagation',
  'private',
  'sh',
  '-ec',
  'd=$(mktemp -d); mount --rbind /sys/fs/cgroup "$d"; mount -t sysfs sysfs /sys; ' +
    'mount --rbind "$d" /sys/fs/cgroup; umount -l "$d"; rmdir "$d"; ' +
    'exec unshare --pid --mount --fork --mount-proc --propagation private --kill-child "$@"',
  'agent-namespaces',
]

export interface ClusterProcess {
  name: string
  port: number
  url: string
  stateDir: string
  /** Host id of an agent (sandboxes.host); '' for a replica. */
  id: string
  /** An agent's network namespace (`ip netns exec` runs a command inside it); '' for a replica. */
  netns: string
  /** A replica's SSH port, with `ssh: true` (an agent's private one is in `nodes.ssh_port`). */
  sshPort?: number
  readonly process: ChildProcess | undefined
  start(): Promise<void>
  /** SIGKILL of the process (an agent: of its PID namespace's init, so of everything in it). */
  kill(): Promise<void>
  /** A signal to the s0 process itself (an agent: its namespace's init), e.g. SIGSTOP/SIGCONT. */
  signal(signal: NodeJS.Signals): Promise<void>
  /** Resolves with the exit code once the process has exited on its own. */
  exited(): Promise<number | null>
  stop(): Promise<void>
}

export interface Cluster {
  /** S0_CLUSTER_TOKEN of every process (benches call agents straight with it). */
  clusterToken: string
  /** The shared database (its URL is every process's DATABASE_URL). */
  databaseUrl: string
  s3: S3rverHandle
  apis: ClusterProcess[]
  agents: ClusterProcess[]
  token(): Promise<string>
  close(): Promise<void>
}

export interface ClusterOptions {
  /** A fresh database every process shares; `dropDatabase` removes it at close. */
  databaseUrl: string
  dropDatabase?: () => Promise<void>
  apis: number
  agents: number
  /** Added to every process's environment (runtimes, template dir...). */
  env?: NodeJS.ProcessEnv
  deadAfterS?: number
  /** S0_NODE_LABELS of agent i (`k=v,k=v`). */
  agentLabels?: (i: number) => string
  /**
   * SSH on: each replica relays users (API key as password accepted) on a port of its own; each
   * agent runs its private endpoint on an ephemeral port and reports replica 0's as `Sandbox.ssh`.
   */
  ssh?: boolean
}

export async function startClusterProcesses(o: ClusterOptions): Promise<Cluster> {
  const net = await createClusterNetwork()
  let s3: S3rverHandle
  try {
    s3 = await startS3rver({ address: net.hostAddress })
  } catch (err) {
    await net.remove()
    throw err
  }
  const clusterToken = randomBytes(32).toString('hex')
  const apiPorts = await Promise.all(Array.from({ length: o.apis }, () => freePort()))
  const sshPorts = o.ssh ? await Promise.all(apiPorts.map(() => freePort())) : []
  // A replica's SSH listens on loopback; an agent's private endpoint on its own address.
  const ssh = (port: number | undefined, agentAddress?: string): NodeJS.ProcessEnv =>
    o.ssh
      ? {
          S0_SSH_ENABLED: 'true',
          S0_SSH_HOST: agentAddress ?? '127.0.0.1',
          S0_SSH_PORT: String(port ?? 0),
          S0_SSH_TOKEN_AUTH: 'true',
          ...(agentAddress
            ? { S0_SSH_PUBLIC_HOST: '127.0.0.1', S0_SSH_PUBLIC_PORT: String(sshPorts[0]) }
            : {}),
        }
      : {}
  const common: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: o.databaseUrl,
    S0_OBJECT_STORE: 's3',
    S0_S3_ENDPOINT: s3.config.endpoint,
    S0_S3_BUCKET: s3.config.bucket,
    S0_S3_REGION: s3.config.region,
    S0_S3_FORCE_PATH_STYLE: 'true',
    S0_S3_ACCESS_KEY_ID: s3.config.accessKeyId,
    S0_S3_SECRET_ACCESS_KEY: s3.config.secretAccessKey,
    S0_CLUSTER_TOKEN: clusterToken,
    S0_NODE_DEAD_AFTER_S: String(o.deadAfterS ?? 3),
    // One public domain for service URLs, whichever agent makes them.
    S0_EXPOSURE_DOMAIN: `localhost:${apiPorts[0]}`,
    S0_SSH_ENABLED: 'false',
    S0_LOG_LEVEL: 'warn',
    UV_THREADPOOL_SIZE: '64',
    // The AWS SDK's notice about Node 22, once per process, is not the test's output.
    NODE_NO_WARNINGS: '1',
    // Credential sources are sealed with one key across the cluster.
    S0_SECRET_KEY: randomBytes(32).toString('base64'),
    ...o.env,
  }
  const cidrs: { release(): Promise<void> }[] = []
  const procs: ClusterProcess[] = []
  const apis: ClusterProcess[] = []
  const agents: ClusterProcess[] = []
  for (let i = 0; i < o.apis; i++) {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), `s0-cl-api${i}-`))
    const port = apiPorts[i] as number
    const replica = processOf(`api-${i}`, '', '', stateDir, `127.0.0.1:${port}`, ['api'], {
      ...common,
      S0_STATE_DIR: stateDir,
      S0_PORT: String(port),
      ...ssh(sshPorts[i]),
    })
    if (o.ssh) replica.sshPort = sshPorts[i] as number
    apis.push(replica)
  }
  for (let i = 0; i < o.agents; i++) {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), `s0-cl-agent${i}-`))
    await chmod(stateDir, 0o755)
    const cidr = await testSandboxCidr()
    cidrs.push(cidr)
    await net.addAgent(i)
    const address = net.address(i)
    const name = `agent-${i}-${randomBytes(3).toString('hex')}`
    agents.push(
      processOf(name, nodeId(name), net.netns(i), stateDir, `${address}:${AGENT_PORT}`, ['agent'], {
        ...common,
        S0_STATE_DIR: stateDir,
        S0_HOST: address,
        S0_PORT: String(AGENT_PORT),
        S0_NODE_NAME: name,
        S0_ADVERTISE_URL: `http://${address}:${AGENT_PORT}`,
        S0_SANDBOX_CIDR: cidr.cidr,
        ...(o.agentLabels ? { S0_NODE_LABELS: o.agentLabels(i) } : {}),
        ...ssh(0, address),
      }),
    )
  }
  procs.push(...apis, ...agents)
  const cluster: Cluster = {
    clusterToken,
    databaseUrl: o.databaseUrl,
    s3,
    apis,
    agents,
    // The first replica bootstraps the default team and its admin key.
    token: async () =>
      (await readFile(path.join((apis[0] as ClusterProcess).stateDir, 'token'), 'utf8')).trim(),
    close: async () => {
      await Promise.all(procs.map((p) => p.stop()))
      // The agents' sandbox networks (veths, nftables) go with their namespaces. Their sandboxes'
      // `ip netns` files stay behind, unmounted (the mounts were in the agents' own mount
      // namespaces), when an agent died without cleaning up (a node killed and not restarted).
      for (const a of agents)
        for (const n of await listNetns(`s0${serverTag(a.id)}-`)) await deleteNetns(n).catch(() => undefined)
      for (const c of cidrs) await c.release()
      await s3.stop()
      await net.remove()
      await o.dropDatabase?.()
      for (const p of procs) await rm(p.stateDir, { recursive: true, force: true })
    },
  }
  try {
    // The first replica alone first: it migrates the database and writes the admin key.
    await (apis[0] as ClusterProcess).start()
    await Promise.all([...apis.slice(1), ...agents].map((p) => p.start()))
  } catch (err) {
    await cluster.close()
    throw err
  }
  return cluster
}

function processOf(
  name: string,
  id: string,
  netns: string,
  stateDir: string,
  hostPort: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): ClusterProcess {
  let current: ChildProcess | undefined
  const agent = args[0] === 'agent'
  const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null
  const waitExit = (c: ChildProcess): Promise<void> =>
    exited(c) ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()))
  const startOnce = async (): Promise<void> => {
    const cmd = [process.execPath, '--import', 'tsx', S0_MAIN, ...args]
    current = agent
      ? spawn('nsenter', [`--net=/run/netns/${netns}`, ...AGENT_NAMESPACES, ...cmd], {
          env,
          stdio: ['ignore', 'ignore', 'inherit'],
        })
      : spawn(cmd[0] as string, cmd.slice(1), { env, stdio: ['ignore', 'ignore', 'inherit'] })
    const child = current
    const deadline = Date.now() + 120_000
    for (let i = 0; i < 1_200 && Date.now() < deadline; i++) {
      if (exited(child))
        throw new Error(`${name} exited before it was ready (${child.exitCode ?? child.signalCode})`)
      const up = await fetch(`${p.url}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
      if (up) return
      await new Promise((r) => setTimeout(r, 100))
    }
    child.kill('SIGKILL')
    throw new Error(`${name} did not become ready within 120 s`)
  }
  const p: ClusterProcess = {
    name,
    port: Number(hostPort.split(':')[1]),
    url: `http://${hostPort}`,
    stateDir,
    id,
    netns,
    get process() {
      return current
    },
    start: startOnce,
    kill: async () => {
      const child = current
      if (!child || exited(child)) return
      if (agent) await signalInit(child, 'SIGKILL')
      else child.kill('SIGKILL')
      await waitExit(child)
      current = undefined
    },
    signal: async (signal) => {
      const child = current
      if (!child || exited(child)) return
      if (agent) await signalInit(child, signal)
      else child.kill(signal)
    },
    exited: async () => {
      const child = current
      if (!child) return null
      await waitExit(child)
      current = undefined
      return child.exitCode
    },
    stop: async () => {
      const child = current
      if (!child || exited(child)) return
      if (agent) await signalInit(child, 'SIGTERM')
      else child.kill('SIGTERM')
      await waitExit(child)
      current = undefined
    },
  }
  return p
}

/**
 * Signals the agent: its namespace's PID 1, unshare's only child (SIGKILL of it kills the whole
 * namespace, containers included; unshare exits with it).
 */
async function signalInit(unshare: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  const text = await readFile(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').catch(() => '')
  const init = Number(text.trim().split(/\s+/)[0])
  if (init > 0) process.kill(init, signal)
  else unshare.kill(signal)
}
