// Run by network-lab.test.ts INSIDE a "lab" network namespace that stands in for the host: opens
// a SandboxNetwork there (with the test proxy and resolver), attaches the given namespace, and
// prints `{"ready":{attachment, table}}`. Then one command per stdin line: `ensure` re-installs
// the table (prints `{"ensured":bool}`). Closing stdin removes everything and exits.
import { createInterface } from 'node:readline'
import { SandboxNetwork } from '../../src/runtime/network.js'
import { startTestDns, startTestProxy } from './network-support.js'

const [tag = '', cidr = '', sandboxNetns = ''] = process.argv.slice(2)
const out = (line: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(line)}\n`)

const proxy = await startTestProxy()
const dns = await startTestDns()
// No periodic check: the test deletes the table and probes before asking for it back.
const network = await SandboxNetwork.open({
  tag,
  cidr,
  proxyPort: proxy.port,
  dnsPort: dns.port,
  tableCheckIntervalMs: 0,
})
const attachment = await network.attach(`lab-${tag}`, sandboxNetns)
out({ ready: { attachment, table: network.table } })

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (line === 'ensure') out({ ensured: await network.ensureTable() })
}
await network.close({ removeAll: true })
await proxy.close()
await dns.close()
