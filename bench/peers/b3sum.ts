// The b3sum peer: BLAKE3 of the same bytes by the reference implementation, one thread, process
// start included (the chunk-and-hash figures' baseline).
import { mustSucceed, runCmd } from '../lib.js'

export async function b3sumFiles(root: string, rel: readonly string[]): Promise<number> {
  // Batches keep each command line well under ARG_MAX; batches run one after another.
  const BATCH = 4000
  let seconds = 0
  for (let i = 0; i < rel.length; i += BATCH) {
    const r = mustSucceed(
      await runCmd('b3sum', ['--num-threads', '1', '--no-names', ...rel.slice(i, i + BATCH)], {
        cwd: root,
        stdoutMaxBytes: 1024,
      }),
      'b3sum',
    )
    seconds += r.seconds
  }
  return seconds
}

/** Seconds b3sum takes over one file. */
export async function b3sumFile(file: string): Promise<number> {
  return mustSucceed(await runCmd('b3sum', ['--num-threads', '1', '--no-names', file]), 'b3sum').seconds
}
