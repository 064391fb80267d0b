// Table-driven POSIX conformance: test/fuse/conformance.py runs as an unprivileged user (uid 1000,
// groups 1000 and 2000) in a directory of the host's file system and in our mount, prepared alike
// by root; every check's outcome must agree. The fuse-native transport cannot see the caller or
// keep nanoseconds: conformance.fuse-native.test.ts runs the same table and names those
// differences exactly (docs/ARCHITECTURE.md, "FUSE transports").
import { execFile } from 'node:child_process'
import * as fs from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mountTestVolume, type MountedVolume } from './support.js'

const run = promisify(execFile)
const SCRIPT = new URL('./conformance.py', import.meta.url)

let m: MountedVolume
let work: string
let host: string
let script: string
beforeAll(async () => {
  m = await mountTestVolume()
  work = await fs.mkdtemp(join(tmpdir(), 's0-conformance-'))
  await fs.chmod(work, 0o755)
  host = join(work, 'host')
  await fs.mkdir(host)
  // Where uid 1000 can read it (the checkout may be under a private home).
  script = join(work, 'conformance.py')
  await fs.copyFile(SCRIPT, script)
  await fs.chmod(script, 0o644)
})
afterAll(async () => {
  await m?.close()
  if (work) await fs.rm(work, { recursive: true, force: true })
})

/** What root prepares in both places before the unprivileged checks run. */
async function prepare(dir: string): Promise<void> {
  await fs.chmod(dir, 0o777)
  await fs.writeFile(join(dir, 'rootfile'), 'owned by root')
  await fs.chmod(join(dir, 'rootfile'), 0o644)
  await fs.mkdir(join(dir, 'sticky'))
  await fs.chmod(join(dir, 'sticky'), 0o1777)
  await fs.writeFile(join(dir, 'sticky', 'rootowned'), 'x')
  await fs.mkdir(join(dir, 'private'), { mode: 0o700 })
}

/** The checks' outcomes in `dir`, as uid 1000 (async: this process serves the mount). */
export async function conformance(dir: string): Promise<Record<string, unknown>> {
  // The system's python: a per-user one (pyenv) is not the unprivileged user's to run.
  const out = await run('setpriv', [
    '--reuid=1000',
    '--regid=1000',
    '--groups=1000,2000',
    '/usr/bin/python3',
    script,
    dir,
  ])
  return JSON.parse(out.stdout) as Record<string, unknown>
}

export async function bothSides(): Promise<{
  host: Record<string, unknown>
  mount: Record<string, unknown>
}> {
  await prepare(host)
  await prepare(m.dir)
  return { host: await conformance(host), mount: await conformance(m.dir) }
}

/**
 * Where fuse-native differs from the host, all from one limit of FUSE 2 through that binding: it
 * does not pass the caller, so what the unprivileged caller makes belongs to the mount's owner
 * (0:0) and every later step on its own files is refused or differs.
 */
export const FUSE_NATIVE_DIFFERENCES = new Set([
  'owner_file',
  'owner_dir',
  'owner_symlink',
  'chmod_own',
  'chown_own_group',
  'ctime_on_chmod',
  'truncate_own',
  'link_own',
  'link_same_ino',
  'dir_nlink',
  'sticky_unlink_own',
  'setgid_file_group',
  'setgid_dir_group',
  'setgid_dir_bit',
  'utime_ns_exact',
  'utime_omit_mtime',
  'utime_omit_atime',
  'utime_now',
  'unlink_open_file',
  'read_mode_000',
  'write_clears_setuid',
  'rename_hardlink_pair',
  'rmdir_nonempty',
  'prep_r2x',
  'prep_sg_chmod',
  'prep_sg_chown',
  'prep_sg_dir',
  'prep_sg_file',
  'prep_t_utime',
  'prep_touch_a',
  'prep_touch_m',
  'rename_dir_over_nonempty',
  'unlink_dir',
])

describe('POSIX conformance as an unprivileged user', () => {
  it('agrees with the host file system on every check', async () => {
    if (process.env.S0_FUSE_TRANSPORT === 'fuse-native') {
      const { host: h, mount: f } = await bothSides()
      const differing = Object.keys(h).filter((k) => JSON.stringify(h[k]) !== JSON.stringify(f[k]))
      // Exactly the named limitations of FUSE 2 differ; everything else agrees.
      expect(differing.sort()).toEqual([...FUSE_NATIVE_DIFFERENCES].sort())
      return
    }
    const { host: h, mount: f } = await bothSides()
    expect(f).toEqual(h)
    // The table checks something: spot-check outcomes that must hold on any POSIX system.
    expect(h).toMatchObject({
      owner_file: true,
      chown_foreign_group: 'EPERM',
      link_foreign_protected: 'EPERM',
      name_too_long: 'ENAMETOOLONG',
      o_excl_existing: 'EEXIST',
      setgid_file_group: 2000,
      setgid_dir_bit: '0o42755',
      utime_ns_exact: ['1000000000123456789', '1100000000987654321'],
      utime_omit_mtime: ['1200000000000000000', '1100000000987654321'],
      utime_omit_atime: ['1200000000000000000', '1300000000000000000'],
      unlink_open_file: [0, 'abcXYZ', false],
      read_mode_000: 'EACCES',
      write_clears_setuid: '0o100755',
      ls_a_root: ['.', '..'],
    })
  })
})
