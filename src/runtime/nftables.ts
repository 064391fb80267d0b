// One s0 server's nftables table: what may enter the host from its sandboxes' veths, where it is
// redirected (TCP → the egress proxy, UDP 53 → the resolver), and that nothing is ever routed
// to or from a sandbox. Written whole and replaced in one `nft -f` transaction (idempotent).
// Rules live on the host side of each veth, in a network namespace no sandbox can enter, and
// every one of them is a drop or a redirect: a drop in any base chain is final, so they hold
// whatever other tables accept and whatever net.ipv4.ip_forward says.
import { assert } from '../core/assert.js'
import { limits } from '../core/limits.js'
import { runCli, runCliOk } from './cli.js'

export interface SandboxTableSpec {
  /** `s0net_<tag>`. */
  table: string
  /** Host-side veth names of this server's sandboxes: `<prefix>*`. */
  ifacePrefix: string
  /** The address pool (a comment only: the source check is a reverse-path lookup). */
  cidr: string
  /** Every TCP connection from a sandbox is redirected here (the egress proxy, on 0.0.0.0). */
  proxyPort: number
  /** Every UDP datagram to port 53 from a sandbox is redirected here (the resolver, on 0.0.0.0). */
  dnsPort: number
  /** Every other UDP datagram is redirected here (the UDP relay); none: such UDP is dropped. */
  udpPort?: number
  /** Entries of the per-address ICMP meter: the pool's slot count. */
  icmpMeterSize: number
}

const NAME = /^[a-z0-9_]{1,32}$/
const IFACE_PREFIX = /^[a-z0-9-]{1,14}$/

/** The table as `nft -f` text; replaces any table of the same name in the same transaction. */
export function sandboxTableScript(s: SandboxTableSpec): string {
  assert(NAME.test(s.table), `bad nft table name ${s.table}`)
  assert(IFACE_PREFIX.test(s.ifacePrefix), `bad interface prefix ${s.ifacePrefix}`)
  for (const p of [s.proxyPort, s.dnsPort, s.udpPort ?? 1])
    assert(Number.isInteger(p) && p > 0 && p < 65536, `bad port ${p}`)
  const sbx = `iifname "${s.ifacePrefix}*"`
  const P = s.proxyPort
  const D = s.dnsPort
  const U = s.udpPort
  const icmpRate = `limit rate ${limits.sandboxIcmpEchoPerSecond}/second burst ${limits.sandboxIcmpEchoBurstPackets} packets`
  return `table inet ${s.table} {}
delete table inet ${s.table}
table inet ${s.table} {
	comment "s0 sandbox network: pool ${s.cidr}, sandbox veths ${s.ifacePrefix}*, proxy tcp/${P}, resolver udp/${D}${U ? `, udp relay udp/${U}` : ''}"

	set icmp_echo {
		type ipv4_addr
		size ${s.icmpMeterSize}
		flags dynamic,timeout
		timeout 1m
	}

	# Everything a sandbox sends, before NAT. IPv6 never; a source address that is not routed
	# back through the same veth (spoofed) never; then TCP (to be redirected to the proxy),
	# UDP 53 (to the resolver), other UDP (to the UDP relay, which applies the policy; without
	# one, dropped), ICMP echo to the sandbox's own gateway (rate-limited per address), and
	# nothing else.
	chain sandbox_ingress {
		meta nfproto ipv6 drop
		fib saddr . iif oif missing drop
		ct state invalid drop
		ct state established,related accept
		meta l4proto tcp accept
		udp dport 53 accept
		${U ? 'meta l4proto udp accept' : 'meta l4proto udp drop'}
		icmp type echo-request fib daddr . iif type local update @icmp_echo { ip saddr ${icmpRate} } accept
		drop
	}

	chain sandbox_prerouting {
		type filter hook prerouting priority mangle; policy accept;
		${sbx} jump sandbox_ingress
	}

	# The destination becomes the veth's own address (the sandbox's gateway) and the port the
	# proxy's or the resolver's; the proxy reads the original one with SO_ORIGINAL_DST.
	chain sandbox_redirect {
		type nat hook prerouting priority dstnat; policy accept;
		${sbx} meta l4proto tcp redirect to :${P}
		${sbx} udp dport 53 redirect to :${D}${U ? `\n\t\t${sbx} meta l4proto udp redirect to :${U}` : ''}
	}

	# What reaches the host itself from a sandbox: replies, the proxy, the resolver, echo to
	# the gateway. No other host service (whatever it listens on) and no loopback. New
	# connections to the proxy and resolver ports from any other interface but loopback are
	# dropped (no open proxy); replies to their own outgoing traffic are not new.
	chain host_input {
		type filter hook input priority filter - 10; policy accept;
		${sbx} ct state established,related accept
		${sbx} tcp dport ${P} accept
		${sbx} udp dport ${D} accept${U ? `\n\t\t${sbx} udp dport ${U} accept` : ''}
		${sbx} icmp type echo-request accept
		${sbx} drop
		iif != lo ct state new tcp dport ${P} drop
		iif != lo ct state new udp dport ${D} drop${U ? `\n\t\tiif != lo ct state new udp dport ${U} drop` : ''}
	}

	# A sandbox is never routed anywhere, nor anything to it: another sandbox, the host's
	# networks and the internet are reached through the proxy only.
	chain no_forward {
		type filter hook forward priority filter - 10; policy accept;
		${sbx} drop
		oifname "${s.ifacePrefix}*" drop
	}
}
`
}

/** Installs (or replaces) the table in one transaction. */
export async function applySandboxTable(s: SandboxTableSpec): Promise<void> {
  await runCliOk('nft', ['-f', '-'], {
    input: sandboxTableScript(s),
    timeoutMs: limits.sandboxNetworkCliTimeoutMs,
  })
}

/** Idempotent: an absent table is not an error. */
export async function deleteSandboxTable(table: string): Promise<void> {
  assert(NAME.test(table), `bad nft table name ${table}`)
  const r = await runCli('nft', ['delete', 'table', 'inet', table], {
    timeoutMs: limits.sandboxNetworkCliTimeoutMs,
  })
  if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) {
    await runCliOk('nft', ['delete', 'table', 'inet', table]) // throws with the stderr
  }
}

/** The table as the kernel has it (`nft list table`), or undefined when absent. */
export async function listSandboxTable(table: string): Promise<string | undefined> {
  assert(NAME.test(table), `bad nft table name ${table}`)
  const r = await runCli('nft', ['list', 'table', 'inet', table])
  return r.code === 0 ? r.stdout : undefined
}
