// Template figures of the sandboxes bench: building the busybox template through TemplateStore
// (lock, scratch dir, applets, mount points, .spec, rename into place) vs the same rootfs made by
// hand with the shell commands of the runtime recipes, in the same run.
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { TemplateStore } from '../src/runtime/templates.js'
import { ms, stats, timeProcess } from './sandbox-api.js'
import { figure, median, round, type Figure } from './lib.js'

const RUNS = Number(process.env['S0_BENCH_TEMPLATE_RUNS'] ?? 7)

/** The recipe by hand: dirs, busybox copied in, its applet links, passwd and group. */
const BARE_BUSYBOX = [
  'set -e',
  'R="$1"',
  'mkdir -p "$R"/bin "$R"/sbin "$R"/usr/bin "$R"/usr/sbin "$R"/etc "$R"/proc "$R"/sys "$R"/dev "$R"/tmp "$R"/root',
  'cp /bin/busybox "$R"/bin/',
  'chroot "$R" /bin/busybox --install -s',
  'echo \'root:x:0:0:root:/root:/bin/sh\' > "$R"/etc/passwd',
  'echo \'root:x:0:\' > "$R"/etc/group',
  'echo done',
].join('\n')

export async function benchTemplateBuild(work: string): Promise<Figure> {
  const dir = await mkdtemp(path.join(work, 'templates-'))
  const ours: number[] = []
  const bare: number[] = []
  try {
    // Interleaved, so load from other work on the host falls on both sides alike.
    for (let i = 0; i < RUNS; i++) {
      const store = new TemplateStore({ dir: path.join(dir, `store-${i}`) })
      const t0 = process.hrtime.bigint()
      await store.ensure('busybox')
      ours.push(ms(t0))
      const root = path.join(dir, `bare-${i}`)
      await mkdir(root)
      bare.push((await timeProcess(['sh', '-c', BARE_BUSYBOX, 'sh', root], { expect: 'done' })).exitMs)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const b = round(median(bare))
  return figure({
    name: 'template_build_busybox',
    value: median(ours),
    unit: 'ms',
    baseline: {
      name: 'the same rootfs by hand (mkdir, cp, busybox --install -s) in sh',
      value: b,
      unit: 'ms',
    },
    higherIsBetter: false,
    // Was a test's `< 5 s`; what we add over the shell (lock, .spec, rename, mount points) is small.
    target: { ratio: 3 },
    detail: { ours: stats(ours), bare: stats(bare) },
  })
}
