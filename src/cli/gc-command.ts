// `s0 gc [--dry-run] [--grace-ms N]`: one GC pass over the configured store.
import { loadConfig } from '../core/config.js'
import { openDatabase } from '../core/database.js'
import { createLogger } from '../core/log.js'
import { openChunkStore } from '../blockstore/open.js'
import { collectGarbage } from '../blockstore/gc.js'
import { volumeRoots } from '../snapshots/engine.js'
import { parseFlags } from './flags.js'

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, { boolean: ['dry-run', 'json', 'help'], string: ['grace-ms'] })
  if (flags.help) {
    process.stdout.write('usage: s0 gc [--dry-run] [--grace-ms N] [--json]\n')
    return 0
  }
  const config = loadConfig()
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel)
  const database = await openDatabase(config, log)
  try {
    const store = await openChunkStore(config, database.db, log)
    const graceMs = flags['grace-ms'] !== undefined ? Number(flags['grace-ms']) : config.gcGracePeriodMs
    if (!Number.isSafeInteger(graceMs) || graceMs < 0) {
      process.stderr.write('s0 gc: --grace-ms must be a non-negative integer\n')
      return 2
    }
    const report = await collectGarbage(store, {
      dryRun: flags['dry-run'] === true,
      gracePeriodMs: graceMs,
      roots: [volumeRoots],
    })
    await store.close()
    if (flags.json) process.stdout.write(JSON.stringify(report) + '\n')
    else {
      const verb = report.dryRun ? 'would free' : 'freed'
      process.stdout.write(
        `gc: marked ${report.markedChunks} chunks; ${verb} ${report.sweptChunks} chunks (${report.sweptBytes} bytes); ` +
          `repacked ${report.repackedPacks} packs; deleted ${report.deletedPacks} packs (${report.deletedBytes} bytes) ` +
          `and ${report.orphanObjects} orphan objects (${report.orphanBytes} bytes)\n`,
      )
    }
    return 0
  } finally {
    await database.close({ stopServer: 'if-started' })
  }
}
