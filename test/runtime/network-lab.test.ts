// The sandbox network holds with IPv4 forwarding on. In a "lab" namespace standing in for the
// host (so the real host's net.ipv4.ip_forward is never touched) with forwarding on and a route
// to an upstream namespace, a sandbox namespace attached by SandboxNetwork (network-lab-child.ts)
// reaches the upstream by no path but the proxy; with the table deleted (a ruleset flush) and
// forwarding rewritten, the same probe does reach it, which shows the lab routes; ensureTable
// closes the path again.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCli, runCliOk, type CliResult } from '../../src/runtime/cli.js'
import { createNetns, deleteNetns } from '../../src/runtime/netns.js'
import type { SandboxAttachment } from '../../src/runtime/network.js'
import { startServerIn, type UpstreamServer } from '../support/upstream.js'

const tag = randomBytes(3).toString('hex')
const LAB = `s0lab${tag}`
const UP = `s0lab${tag}-up`
const SBX = `s0lab${tag}-sb`
const REPO = path.resolve(import.meta.dirname, '..', '..')

const inNs = (ns: string, args: readonly string[], input?: string): Promise<CliResult> =>
  runCli('nsenter', [`--net=/run/netns/${ns}`, '--', ...args], {
    timeoutMs: 15_000,
    ...(input === undefined ? {} : { input }),
  })

describe('sandbox network with IPv4 forwarding on', () => {
  const child = { proc: undefined as ReturnType<typeof spawn> | undefined }
  const replies: Record<string, unknown>[] = []
  let att: SandboxAttachment
  let table = ''
  let udpEcho: UpstreamServer
  let tcpEcho: UpstreamServer

  const nextReply = async (key: string): Promise<unknown> => {
    for (let i = 0; i < 300; i++) {
      const r = replies.find((x) => key in x)
      if (r) {
        replies.splice(replies.indexOf(r), 1)
        return r[key]
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`no ${key} from the lab child`)
  }

  beforeAll(async () => {
    for (const ns of [LAB, UP, SBX]) await createNetns(ns)
    await inNs(LAB, ['sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'])
    await runCliOk('ip', ['-n', LAB, '-batch', '-'], {
      input: `link add name up0 type veth peer name eth0 netns ${UP}\naddr add 198.19.0.1/24 dev up0\nlink set dev up0 up\n`,
    })
    // The upstream routes every reply back into the lab: only the lab's rules stand in the way.
    await runCliOk('ip', ['-n', UP, '-batch', '-'], {
      input: 'addr add 198.19.0.2/24 dev eth0\nlink set dev eth0 up\nroute add default via 198.19.0.1\n',
    })
    udpEcho = await startServerIn(UP, 'udp-echo')
    tcpEcho = await startServerIn(UP, 'tcp-echo')
    const proc = spawn(
      'nsenter',
      [
        `--net=/run/netns/${LAB}`,
        '--',
        process.execPath,
        '--import',
        'tsx',
        path.join(import.meta.dirname, 'network-lab-child.ts'),
        `l${tag.slice(0, 5)}`,
        '10.99.0.0/16',
        SBX,
      ],
      { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] },
    )
    child.proc = proc
    createInterface({ input: proc.stdout }).on('line', (l) =>
      replies.push(JSON.parse(l) as Record<string, unknown>),
    )
    const ready = (await nextReply('ready')) as { attachment: SandboxAttachment; table: string }
    att = ready.attachment
    table = ready.table
  })

  afterAll(async () => {
    const proc = child.proc
    if (proc && proc.exitCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.stdin?.end()
      await exited
    }
    await udpEcho?.stop()
    await tcpEcho?.stop()
    for (const ns of [SBX, UP, LAB]) await deleteNetns(ns)
  })

  /** Root in the sandbox namespace: the host's tools, its own default route via the gateway. */
  const probeUdp = (): Promise<CliResult> =>
    inNs(SBX, [
      'busybox',
      'timeout',
      '1',
      'busybox',
      'tftp',
      '-g',
      '-r',
      'x',
      '-l',
      '/dev/null',
      '198.19.0.2',
      String(udpEcho.port),
    ])
  const probeTcp = (): Promise<CliResult> =>
    inNs(SBX, ['busybox', 'nc', '-w', '2', '198.19.0.2', String(tcpEcho.port)], '')

  it('reaches the upstream through nothing but the proxy, and again after a flush is repaired', async () => {
    expect((await inNs(LAB, ['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim()).toBe('1')
    await probeUdp()
    expect((await probeTcp()).stdout).toBe(`ORIG 198.19.0.2:${tcpEcho.port} FROM ${att.address}\n`)
    expect(udpEcho.events).toEqual([])
    expect(tcpEcho.events).toEqual([])

    // Someone turns ip_forward off and on (a change sets it on every interface, our veth
    // included) and flushes the ruleset: now the lab routes the sandbox to the upstream.
    await inNs(LAB, [
      'sh',
      '-c',
      'echo 0 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv4/ip_forward',
    ])
    await inNs(LAB, ['nft', 'delete', 'table', 'inet', table])
    await probeUdp()
    // The echo server reports through its stdout: give a loaded machine a moment (bounded).
    for (let i = 0; i < 30 && udpEcho.events.length === 0; i++) await new Promise((r) => setTimeout(r, 100))
    const reached = udpEcho.events.length
    expect(reached).toBeGreaterThan(0)
    expect(new Set(udpEcho.events.map((e) => e.remoteAddress))).toEqual(new Set([att.address]))

    child.proc?.stdin?.write('ensure\n')
    expect(await nextReply('ensured')).toBe(false)
    await probeUdp()
    expect((await probeTcp()).stdout).toBe(`ORIG 198.19.0.2:${tcpEcho.port} FROM ${att.address}\n`)
    expect(udpEcho.events).toHaveLength(reached)
    expect(tcpEcho.events).toEqual([])
  })
})
