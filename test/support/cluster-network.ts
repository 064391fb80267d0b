// The network of a cluster on one machine (issue 17 §5): each agent in a network namespace of its
// own, as on a host of its own, joined to the test's process by one bridge.
//
//   root namespace: bridge s0cl<X>, 10.X.0.1/24: s3rver listens here; replicas and the test
//                   reach agents through it (Postgres is reached over its Unix socket).
//   agent i:        namespace s0cl<X>a<i>, eth0 10.X.0.(10+i)/24, default route via 10.X.0.1; its
//                   sandboxes' network (veths, nftables) lives inside it and dies with it.
//
// 10.X.0.0/16 comes from testSandboxCidr, so parallel test files never share X.
import { runCli, runCliOk } from '../../src/runtime/cli.js'
import { testSandboxCidr } from './upstream.js'

export interface ClusterNetwork {
  /** The bridge's address in the root namespace: shared services listen here. */
  hostAddress: string
  /** Agent i's namespace (an `ip netns` name) and its address. */
  netns(i: number): string
  address(i: number): string
  /** Creates agent i's namespace (once). */
  addAgent(i: number): Promise<void>
  /** Removes every namespace, the bridge and the lock (processes in them must be gone). */
  remove(): Promise<void>
}

const MAX_AGENTS = 200

export async function createClusterNetwork(): Promise<ClusterNetwork> {
  const lease = await testSandboxCidr()
  const x = Number(/^10\.(\d+)\./.exec(lease.cidr)?.[1])
  const bridge = `s0cl${x}`
  const hostAddress = `10.${x}.0.1`
  const created = new Set<number>()
  const netns = (i: number): string => `s0cl${x}a${i}`
  const remove = async (): Promise<void> => {
    for (const i of created) await runCli('ip', ['netns', 'delete', netns(i)])
    created.clear()
    await runCli('ip', ['link', 'delete', 'dev', bridge])
  }
  // A bridge or namespace of a crashed run that held this lock before us.
  for (let i = 0; i < 8; i++) await runCli('ip', ['netns', 'delete', netns(i)])
  await runCli('ip', ['link', 'delete', 'dev', bridge])
  try {
    await runCliOk('ip', ['-batch', '-'], {
      input: [
        `link add name ${bridge} type bridge`,
        `addr add ${hostAddress}/24 dev ${bridge}`,
        `link set dev ${bridge} up`,
        '',
      ].join('\n'),
    })
  } catch (err) {
    await remove()
    await lease.release()
    throw err
  }
  return {
    hostAddress,
    netns,
    address: (i) => `10.${x}.0.${10 + i}`,
    addAgent: async (i) => {
      if (!Number.isInteger(i) || i < 0 || i >= MAX_AGENTS) throw new Error(`agent index ${i}`)
      if (created.has(i)) return
      const ns = netns(i)
      await runCliOk('ip', ['netns', 'add', ns])
      created.add(i)
      await runCliOk('ip', ['-batch', '-'], {
        input: [
          `link add name ${ns} type veth peer name eth0 netns ${ns}`,
          `link set dev ${ns} master ${bridge}`,
          `link set dev ${ns} up`,
          '',
        ].join('\n'),
      })
      await runCliOk('ip', ['-n', ns, '-batch', '-'], {
        input: [
          'link set dev lo up',
          `addr add 10.${x}.0.${10 + i}/24 dev eth0`,
          'link set dev eth0 up',
          `route add default via ${hostAddress}`,
          '',
        ].join('\n'),
      })
    },
    remove: async () => {
      await remove()
      await lease.release()
    },
  }
}
