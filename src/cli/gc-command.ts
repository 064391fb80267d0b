// `s0 gc [--dry-run] [--grace-ms N]`: one GC pass over the configured store.
import { collectGarbage } from '../blockstore/gc.js'
import { volumeRoots } from '../snapshots/engine.js'
import { parseFlags } from './flags.js'
import { withChunkStore } from './offline.js'

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, { boolean: ['dry-run', 'json', 'help'], string: ['grace-ms'] })
  if (flags.help) {
    process.stdout.write('usage: s0 gc [--dry-run] [--grace-ms N] [--json]\n')
    return 0
  }
  const graceFlag = flags['grace-ms'] !== undefined ? Number(flags['grace-ms']) : undefined
  if (graceFlag !== undefined && (!Number.isSafeInteger(graceFlag) || graceFlag < 0)) {
    process.stderr.write('s0 gc: --grace-ms must be a non-negative integer\n')
    return 2
  }
  const report = await withChunkStore(({ config, store }) =>
    collectGarbage(store, {
      dryRun: flags['dry-run'] === true,
      gracePeriodMs: graceFlag ?? config.gcGracePeriodMs,
      roots: [volumeRoots],
    }),
  )
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
}
