// crun 1.8: the fastest runtime here (exec ~25 ms vs runc ~60 ms), same bundles as runc.
// Quirk: it refuses hybrid cgroups while hugetlb sits on cgroup2; prepareCrunHost() moves it to v1.
import { access, mkdir, readFile } from 'node:fs/promises'
import { S0Error } from '../core/errors.js'
import { runCliOk } from './cli.js'
import { CliDriver, type CliDriverOptions } from './cli-driver.js'

const UNIFIED_CONTROLLERS = '/sys/fs/cgroup/unified/cgroup.controllers'
const HUGETLB_V1 = '/sys/fs/cgroup/hugetlb'

/** Exec as runc (CliDriver's defaults); its `exec -t` does not pass window resizes on. */
export class CrunDriver extends CliDriver {
  readonly name = 'crun' as const

  constructor(opts: CliDriverOptions) {
    super(opts, 'crun')
  }
}

/**
 * crun needs every controller on one side when cgroup v1 is in use. On hosts where cgroup2
 * (`/sys/fs/cgroup/unified`) holds hugetlb, mount hugetlb as a v1 hierarchy: host-wide,
 * idempotent, harmless to runc and runsc. Returns what it did, for the log.
 */
export async function prepareCrunHost(): Promise<'not_needed' | 'mounted'> {
  // No cgroup2 mount there: nothing sits on the unified side, nothing to move.
  const controllers = await readFile(UNIFIED_CONTROLLERS, 'utf8').catch(() => '')
  if (controllers.trim() === '') return 'not_needed'
  if (
    !controllers
      .split(/\s+/)
      .filter(Boolean)
      .every((c) => c === 'hugetlb')
  ) {
    throw new S0Error(
      'runtime_unavailable',
      `crun: cgroup2 holds controllers other than hugetlb (${controllers.trim()}); hybrid cgroups unsupported`,
    )
  }
  await mkdir(HUGETLB_V1, { recursive: true })
  const alreadyMounted = await access(`${HUGETLB_V1}/cgroup.procs`).then(
    () => true,
    () => false,
  )
  if (!alreadyMounted) await runCliOk('mount', ['-t', 'cgroup', '-o', 'hugetlb', 'cgroup', HUGETLB_V1])
  return 'mounted'
}
