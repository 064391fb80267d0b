// Small-file harness, run as a child process against a directory (native or a mount): the
// process serving a FUSE mount must not also load it. Modes:
//   v2 <root> <files> <threads> <perDir>: Sandbox0's V2 standard: write N × 4 KiB files with T
//     workers, P per directory; read them back and verify; list every directory and stat every
//     file; remove them. Ops/s and p50/p95 per phase.
//   meta <root> <files>: one thread: create empty files, stat them, delete them (mdtest-like).
// Prints one JSON object.
import { createHash } from 'node:crypto'
import * as fs from 'node:fs/promises'
import path from 'node:path'
import { performance } from 'node:perf_hooks'

const [mode, root, filesArg, threadsArg, perDirArg] = process.argv.slice(2)
const FILES = Number(filesArg)
const THREADS = Number(threadsArg ?? 1)
const PER_DIR = Number(perDirArg ?? 128)

function content(i) {
  const b = Buffer.alloc(4096)
  for (let k = 0; k < 4096; k += 32) createHash('sha256').update(`${i}:${k}`).digest().copy(b, k)
  return b
}
const fileOf = (i) => path.join(root, `d${Math.floor(i / PER_DIR)}`, `f${i}`)
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(s.length * p) - 1)]
}

async function phase(count, threads, fn) {
  const lat = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: threads }, async () => {
      for (;;) {
        const i = next++
        if (i >= count) return
        const s = performance.now()
        await fn(i)
        lat.push(performance.now() - s)
      }
    }),
  )
  const seconds = (performance.now() - t0) / 1000
  return { ops: count, seconds, opsPerSec: count / seconds, p50Ms: pct(lat, 0.5), p95Ms: pct(lat, 0.95) }
}

const out = {}
if (mode === 'v2') {
  const dirs = Math.ceil(FILES / PER_DIR)
  for (let d = 0; d < dirs; d++) await fs.mkdir(path.join(root, `d${d}`), { recursive: true })
  const sums = new Array(FILES)
  out.write = await phase(FILES, THREADS, async (i) => {
    const b = content(i)
    sums[i] = createHash('sha256').update(b).digest('hex')
    await fs.writeFile(fileOf(i), b)
  })
  let bad = 0
  out.verifiedRead = await phase(FILES, THREADS, async (i) => {
    if (
      createHash('sha256')
        .update(await fs.readFile(fileOf(i)))
        .digest('hex') !== sums[i]
    )
      bad++
  })
  out.badFiles = bad
  // One op per file: a directory listing counts for the files it returns, plus a stat each.
  out.listStat = await phase(dirs, THREADS, async (d) => {
    const dir = path.join(root, `d${d}`)
    for (const name of await fs.readdir(dir)) await fs.stat(path.join(dir, name))
  })
  out.listStat.opsPerSec = FILES / out.listStat.seconds
  out.remove = await phase(FILES, THREADS, (i) => fs.unlink(fileOf(i)))
} else if (mode === 'meta') {
  await fs.mkdir(path.join(root, 'm'), { recursive: true })
  const f = (i) => path.join(root, 'm', `e${i}`)
  out.create = await phase(FILES, 1, async (i) => (await fs.open(f(i), 'wx')).close())
  out.stat = await phase(FILES, 1, (i) => fs.stat(f(i)))
  out.delete = await phase(FILES, 1, (i) => fs.unlink(f(i)))
} else {
  throw new Error(`unknown mode ${mode}`)
}
process.stdout.write(JSON.stringify(out) + '\n')
