// One veth pair per sandbox: the host end `<prefix><slot>` (addressed as the sandbox's gateway,
// its alias the sandbox id, so a restarted server knows whose it is), the other end `eth0` in
// the sandbox's network namespace (its address, a default route via the gateway, IPv6 off).
// Two host commands per attach (an `ip` batch on each side), one per detach.
import { writeFile } from 'node:fs/promises'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { runCli, runCliOk } from './cli.js'
import { netnsPath } from './netns.js'

/** Linux interface names: at most 15 bytes (IFNAMSIZ 16 with the NUL). */
export const IFACE_NAME_BYTES_MAX = 15

export interface VethSpec {
  hostIface: string
  /** Network namespace name (`ip netns`), where the peer becomes `eth0`. */
  netns: string
  sandboxId: string
  gateway: string
  address: string
  prefix: number
}

export interface HostVeth {
  name: string
  /** The sandbox id (the link's alias); undefined on a link we did not finish setting up. */
  sandboxId: string | undefined
  /** IPv4 addresses on the host end. */
  addresses: string[]
}

const opts = { timeoutMs: limits.sandboxNetworkCliTimeoutMs }

export async function createVeth(s: VethSpec): Promise<void> {
  if (Buffer.byteLength(s.hostIface) > IFACE_NAME_BYTES_MAX) {
    throw new S0Error('invalid_request', `interface name ${s.hostIface} is longer than 15 bytes`)
  }
  // The host end gets no IPv6 address at all (addrgenmode none, then disable_ipv6): nothing of
  // the host answers IPv6 on it, and the table drops it anyway.
  await runCliOk('ip', ['-batch', '-'], {
    ...opts,
    input: [
      `link add name ${s.hostIface} type veth peer name eth0 netns ${s.netns}`,
      `link set dev ${s.hostIface} addrgenmode none`,
      `addr add ${s.gateway}/${s.prefix} dev ${s.hostIface}`,
      `link set dev ${s.hostIface} up alias ${s.sandboxId}`,
      '',
    ].join('\n'),
  })
  // Defences that hold without the nft table too: no IPv6, nothing received here is forwarded
  // (until someone rewrites net.ipv4.ip_forward, which resets it), strict reverse-path check.
  await writeFile(`/proc/sys/net/ipv6/conf/${s.hostIface}/disable_ipv6`, '1\n')
  await writeFile(`/proc/sys/net/ipv4/conf/${s.hostIface}/forwarding`, '0\n')
  await writeFile(`/proc/sys/net/ipv4/conf/${s.hostIface}/rp_filter`, '1\n')
  // Inside: IPv6 off for every interface (lo and eth0 included), then the address and the
  // default route. `nsenter --net` changes only the network namespace (`ip netns exec` would
  // also remount /sys), and /proc/sys/net is the writer's namespace's.
  await runCliOk(
    'nsenter',
    [
      `--net=${netnsPath(s.netns)}`,
      '--',
      'sh',
      '-c',
      'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && ' +
        'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && exec ip -batch -',
    ],
    {
      ...opts,
      input: [
        `addr add ${s.address}/${s.prefix} dev eth0`,
        'link set dev eth0 up',
        `route add default via ${s.gateway} dev eth0`,
        '',
      ].join('\n'),
    },
  )
}

/** Removes both ends. Idempotent: an absent link is not an error. */
export async function deleteVeth(name: string): Promise<void> {
  const r = await runCli('ip', ['link', 'delete', 'dev', name], opts)
  if (r.code !== 0 && !/Cannot find device|does not exist/.test(r.stderr)) {
    await runCliOk('ip', ['link', 'delete', 'dev', name], opts) // throws with the stderr
  }
}

interface IpAddrJson {
  ifname?: string
  ifalias?: string
  addr_info?: { family?: string; local?: string }[]
}

/** Host-side veths whose name starts with `prefix`. */
export async function listVeths(prefix: string): Promise<HostVeth[]> {
  const r = await runCliOk('ip', ['-j', '-d', 'addr', 'show', 'type', 'veth'], opts)
  const links = JSON.parse(r.stdout.trim() || '[]') as IpAddrJson[]
  return links
    .filter((l) => l.ifname?.startsWith(prefix))
    .map((l) => ({
      name: l.ifname as string,
      sandboxId: l.ifalias === undefined || l.ifalias === '' ? undefined : l.ifalias,
      addresses: (l.addr_info ?? [])
        .filter((a) => a.family === 'inet' && a.local)
        .map((a) => a.local as string),
    }))
}

export interface HostRoute {
  /** `a.b.c.d/n`, or `default`. */
  dst: string
  dev: string | undefined
  table: string | undefined
  type: string | undefined
}

/** Every IPv4 route of every routing table (local and policy tables included). */
export async function hostRoutes(): Promise<HostRoute[]> {
  const r = await runCliOk('ip', ['-j', '-4', 'route', 'show', 'table', 'all'], opts)
  const routes = JSON.parse(r.stdout.trim() || '[]') as {
    dst?: string
    dev?: string
    table?: string
    type?: string
  }[]
  return routes.map((x) => ({ dst: x.dst ?? 'default', dev: x.dev, table: x.table, type: x.type }))
}
