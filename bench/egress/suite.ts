// Egress bench (`npm run bench -- egress`, as root: it makes network namespaces, veths and an
// nftables table, and removes them all at the end, also on SIGINT/SIGTERM). Every figure is
// paired with a peer measured in the same run:
//   egress_policy_eval            rule index vs a linear scan of the same 1,000 rules (policy-eval.ts)
//   egress_http_rps / _p99_ms     keep-alive HTTP through the real proxy vs direct (proxy.ts)
//   egress_connect_p50_ms         new connection + one request, proxied vs direct (proxy.ts)
//   egress_tls_mitm_rps           TLS terminate-reoriginate with header injection vs passthrough,
//   egress_tls_mitm_handshake_rps and the same a connection per request (tls.ts)
//   egress_sandbox_attach_ms      a veth and address per sandbox (attach + detach) vs the bare netns (proxy.ts)
// Nothing reaches past this machine: loopback and the namespaces the bench creates itself.
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { EventLog } from '../../src/core/events.js'
import { createLogger } from '../../src/core/log.js'
import { native } from '../../src/core/native.js'
import {
  benchDatabase,
  errorMessage,
  gitCommit,
  machineInfo,
  note,
  shutdown,
  type Figure,
  type SuiteResult,
} from '../lib.js'
import { benchPolicyEval } from './policy-eval.js'
import { egressProxyFigures } from './proxy.js'
import { egressTlsFigures } from './tls.js'

const TEAM = 'team-bench-egress'

export async function runEgressSuite(): Promise<SuiteResult> {
  if (process.getuid?.() !== 0) throw new Error('the egress bench makes network namespaces: run it as root')
  // A build from before native/netfilter.c loads, but has no originalDst: every proxied
  // connection would fail with a TypeError.
  if (typeof native?.originalDst !== 'function')
    throw new Error('the native addon has no originalDst: rebuild it (npm install, or node-gyp rebuild)')
  const startedAt = new Date().toISOString()
  const log = createLogger('warn')
  const steps: Array<() => Promise<void>> = []
  const defer = (step: () => Promise<void>): void => void steps.push(step)
  let cleaning: Promise<void> | undefined
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      // Reverse order; each step runs even if one before it failed.
      for (const step of steps.reverse()) {
        await step().catch((err: unknown) => note(`egress cleanup: ${errorMessage(err)}`))
      }
    })())
  const onSignal = (signal: NodeJS.Signals): void => {
    shutdown.inProgress = true
    note(`egress: ${signal}, cleaning up`)
    void cleanup().finally(() => process.exit(130)) // exits either way; cleanup logs its own failures
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  const figures: Figure[] = []
  try {
    const work = await mkdtemp(path.join('/var/tmp', 's0-bench-egress-'))
    defer(() => rm(work, { recursive: true, force: true }))
    await chmod(work, 0o755) // as root, the embedded Postgres runs as `postgres` and must enter it
    await mkdir(path.join(work, 'egress-state'), { recursive: true, mode: 0o700 })

    note('egress_policy_eval: compiled index vs linear scan')
    figures.push(await benchPolicyEval())

    const database = await benchDatabase(work, log, TEAM)
    defer(() => database.close())
    const events = new EventLog(database.db, log, 's0-bench-egress')
    defer(() => events.close())
    figures.push(...(await egressProxyFigures({ work, events, team: TEAM, log, defer })))
    note(`egress: ${events.written} network_audit events written, ${events.dropped} dropped`)

    figures.push(...(await egressTlsFigures()))
  } finally {
    await cleanup()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  return { suite: 'egress', commit: await gitCommit(), machine: machineInfo(), startedAt, figures }
}
