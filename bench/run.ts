// Bench entry point: `npm run bench` runs every suite, `npm run bench -- <suite>...` the named ones.
// Each suite writes bench/results/<suite>.json, appends a table to bench/results/<suite>.md and
// prints which figures meet their targets. Figures never fail the run; errors of a suite do.
import { runBlockstoreSuite } from './blockstore/suite.js'
import { runVolumesSuite } from './volumes.js'
import { runSandboxesSuite } from './sandboxes.js'
import { runFuseSuite } from './fuse.js'
import { runEgressSuite } from './egress/suite.js'
import { runSyncSuite } from './sync.js'
import { runServicesSuite } from './services.js'
import { runObservabilitySuite } from './observability.js'
import { runScaleSuite } from './scale.js'
import { note, printTargets, shutdown, writeResults, type SuiteResult } from './lib.js'

const SUITES: Record<string, () => Promise<SuiteResult>> = {
  blockstore: runBlockstoreSuite,
  volumes: runVolumesSuite,
  sandboxes: runSandboxesSuite,
  fuse: runFuseSuite,
  egress: runEgressSuite,
  sync: runSyncSuite,
  services: runServicesSuite,
  observability: runObservabilitySuite,
  scale: runScaleSuite,
}

async function main(): Promise<number> {
  const args = process.argv.slice(2).filter((a) => a !== '--')
  const unknown = args.filter((a) => !(a in SUITES))
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown suite(s): ${unknown.join(', ')}; known: ${Object.keys(SUITES).join(', ')}\n`,
    )
    return 2
  }
  const names = args.length > 0 ? args : Object.keys(SUITES)
  for (const name of names) {
    const suite = SUITES[name]
    if (!suite) continue
    note(`suite ${name}`)
    const result = await suite()
    const { json, md } = await writeResults(result)
    printTargets(result)
    process.stdout.write(`wrote ${json} and appended to ${md}\n`)
  }
  return 0
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (shutdown.inProgress) return // the suite's signal handler cleans up and exits
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
