// `s0 fsck [--rebuild-index]`: verify every chunk and the index, or rebuild the index from packs.
import { fsck, rebuildIndex } from '../blockstore/fsck.js'
import { parseFlags } from './flags.js'
import { withChunkStore } from './offline.js'

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, { boolean: ['rebuild-index', 'json', 'help'], string: [] })
  if (flags.help) {
    process.stdout.write('usage: s0 fsck [--rebuild-index] [--json]\n')
    return 0
  }
  const report = await withChunkStore(({ store }) =>
    flags['rebuild-index'] ? rebuildIndex(store) : fsck(store),
  )
  if (flags.json) process.stdout.write(JSON.stringify(report) + '\n')
  else {
    process.stdout.write(
      `fsck: ${report.packsChecked} packs, ${report.chunksChecked} chunks, ${report.bytesChecked} bytes checked\n`,
    )
    if (report.rebuilt) process.stdout.write(`rebuilt: ${JSON.stringify(report.rebuilt)}\n`)
    for (const p of report.problems) process.stdout.write(`${p.kind}\t${p.objectKey}\t${p.detail}\n`)
  }
  // Orphan objects are harmless (GC removes them); anything else is damage.
  const damage = report.problems.filter((p) => p.kind !== 'orphan_object').length
  if (!flags.json) process.stdout.write(damage === 0 ? 'fsck: clean\n' : `fsck: ${damage} problems\n`)
  return damage === 0 ? 0 : 1
}
