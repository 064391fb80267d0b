// Template root file systems, built once and cached under `<dir>/<name>/rootfs` (read-only
// lower layers for every sandbox's overlay). A template is ready when its `.ready` marker exists
// (and, for a built-in, when its `.spec` matches what this code would build: a changed package
// list rebuilds it); builds happen in a scratch dir renamed into place, one at a time.
import { createHash, randomBytes } from 'node:crypto'
import {
  access,
  chmod,
  mkdir,
  open,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { silentLogger, type Logger } from '../core/log.js'
import { runCliOk } from './cli.js'

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian'
export const DEBIAN_PACKAGES = [
  'python3',
  'bash',
  'coreutils',
  'git',
  'curl',
  'ca-certificates',
  // The node REPL context (Debian's nodejs 18, ~60 MB with its libraries).
  'nodejs',
] as const
const BUSYBOX_BIN = '/bin/busybox'
const TEMPLATE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/

export type BuiltinTemplate = 'busybox' | 'default'

/**
 * What each built-in is built from. Its hash is stored in `<dir>/<name>/.spec`; a cached copy
 * whose hash differs (or that has none) is stale and rebuilt by ensure(). Bump the version when
 * a builder changes in a way the inputs below do not show.
 */
const BUILTIN_INPUTS: Record<BuiltinTemplate, string> = {
  busybox: 'busybox-static v1',
  default: `mmdebstrap bookworm --variant=apt v1 include=${DEBIAN_PACKAGES.join(',')}`,
}

export function builtinSpecHash(name: BuiltinTemplate): string {
  return createHash('sha256').update(BUILTIN_INPUTS[name]).digest('hex').slice(0, 32)
}

export interface TemplateStoreOptions {
  /** Cache directory (one subdirectory per template). */
  dir: string
  mirror?: string
  log?: Logger
}

export class TemplateStore {
  readonly dir: string
  readonly mirror: string
  private readonly log: Logger
  private queue: Promise<unknown> = Promise.resolve()

  constructor(opts: TemplateStoreOptions) {
    this.dir = path.resolve(opts.dir)
    this.mirror = opts.mirror ?? DEFAULT_MIRROR
    this.log = opts.log ?? silentLogger
  }

  rootfsPath(name: string): string {
    checkName(name)
    return path.join(this.dir, name, 'rootfs')
  }

  /** Built and, for a built-in, built from the current inputs (see BUILTIN_INPUTS). */
  async isReady(name: string): Promise<boolean> {
    const dir = path.join(this.dir, checkName(name))
    if (!(await exists(path.join(dir, '.ready')))) return false
    if (!isBuiltin(name)) return true
    // No .spec: built by an older builder, so stale.
    const stored = await readFile(path.join(dir, '.spec'), 'utf8').catch(() => '')
    return stored.trim() === builtinSpecHash(name)
  }

  /** The template's rootfs, building a built-in one if it is missing, stale (or if `rebuild`). */
  async ensure(name: BuiltinTemplate, opts: { rebuild?: boolean } = {}): Promise<string> {
    if (!opts.rebuild && (await this.isReady(name))) return this.rootfsPath(name)
    return this.build(name, opts.rebuild ?? false, async (rootfs) => {
      if (name === 'busybox') await buildBusybox(rootfs)
      else await this.buildDebian(rootfs)
    })
  }

  /** A template's rootfs that must already exist (built-in or imported). */
  async get(name: string): Promise<string> {
    if (!(await this.isReady(name))) throw new S0Error('template_not_found', `no template ${name}`)
    return this.rootfsPath(name)
  }

  /**
   * Imports an image as a template: `source` is a skopeo reference (`oci-archive:/x.tar`,
   * `docker-archive:/x.tar`, `oci:/layout:tag`); skopeo copies it to an OCI layout and umoci
   * unpacks its layers into the rootfs.
   */
  async importImage(name: string, source: string, opts: { rebuild?: boolean } = {}): Promise<string> {
    if (!opts.rebuild && (await this.isReady(name))) return this.rootfsPath(name)
    return this.build(name, opts.rebuild ?? false, async (rootfs) => {
      const work = path.dirname(rootfs)
      const layout = path.join(work, 'oci')
      const t = { timeoutMs: limits.templateImportTimeoutMs }
      await runCliOk('skopeo', ['copy', '--insecure-policy', source, `oci:${layout}:import`], t)
      const bundle = path.join(work, 'bundle')
      await runCliOk('umoci', ['unpack', '--image', `${layout}:import`, bundle], t)
      await rename(path.join(bundle, 'rootfs'), rootfs)
      await rm(bundle, { recursive: true, force: true })
      await rm(layout, { recursive: true, force: true })
      await addMountPoints(rootfs)
    })
  }

  /** Builds into a scratch dir, then swaps it in; serialised in-process and across processes. */
  private async build(
    name: string,
    rebuild: boolean,
    fill: (rootfs: string) => Promise<void>,
  ): Promise<string> {
    checkName(name)
    const run = async (): Promise<string> => {
      await mkdir(this.dir, { recursive: true })
      const release = await acquireLock(path.join(this.dir, '.lock'))
      try {
        if (!rebuild && (await this.isReady(name))) return this.rootfsPath(name)
        const started = Date.now()
        const scratch = path.join(this.dir, `.build-${name}-${randomBytes(4).toString('hex')}`)
        await mkdir(path.join(scratch, 'rootfs'), { recursive: true })
        try {
          await fill(path.join(scratch, 'rootfs'))
          if (isBuiltin(name)) await writeFile(path.join(scratch, '.spec'), builtinSpecHash(name) + '\n')
          await writeFile(path.join(scratch, '.ready'), new Date().toISOString() + '\n')
          const target = path.join(this.dir, name)
          // Running sandboxes keep their overlay on the old lower dir (held open by the mount);
          // it is moved aside, not deleted under them.
          if (await exists(target)) await rename(target, path.join(this.dir, `.old-${name}-${Date.now()}`))
          await rename(scratch, target)
          await this.pruneOld()
        } catch (err) {
          await rm(scratch, { recursive: true, force: true })
          if (err instanceof S0Error && err.code !== 'runtime_failed' && err.code !== 'timeout') throw err
          throw new S0Error('template_build_failed', `building template ${name} failed: ${String(err)}`, {
            cause: err,
          })
        }
        this.log.info('template built', { name, ms: Date.now() - started })
        return this.rootfsPath(name)
      } finally {
        await release()
      }
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined) // the queue only orders builds; the caller gets p's error
    return p
  }

  /**
   * Removes replaced templates no overlay still uses as its lower dir. An overlay's options keep
   * the path it was mounted with, i.e. `<dir>/<name>/rootfs` even after that directory was moved
   * to `.old-<name>-*`: so while any overlay names `<name>`, its old copies stay (the next build
   * prunes them).
   */
  private async pruneOld(): Promise<void> {
    const mounts = await readFile('/proc/self/mounts', 'utf8')
    const real = await realpath(this.dir)
    for (const e of await readdir(this.dir)) {
      const m = /^\.old-(.+)-\d+$/.exec(e)
      if (!m) continue
      const old = path.join(real, e)
      if (mounts.includes(`lowerdir=${old}/`) || mounts.includes(`lowerdir=${path.join(real, m[1] ?? '')}/`))
        continue
      await rm(old, { recursive: true, force: true })
    }
  }

  private async buildDebian(rootfs: string): Promise<void> {
    const tar = `${rootfs}.tar`
    const args = ['--variant=apt', `--include=${DEBIAN_PACKAGES.join(',')}`, 'bookworm', tar, this.mirror]
    await runCliOk('mmdebstrap', args, {
      timeoutMs: limits.templateDebianBuildTimeoutMs,
      outputBytesMax: limits.templateDebianOutputBytesMax,
    })
    await runCliOk('tar', ['-C', rootfs, '--numeric-owner', '-xpf', tar], {
      timeoutMs: limits.templateUnpackTimeoutMs,
    })
    await rm(tar, { force: true })
    await rm(path.join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true })
    await mkdir(path.join(rootfs, 'var/lib/apt/lists/partial'), { recursive: true })
    await rm(path.join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true })
    await mkdir(path.join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true })
    // runsc 20221219 rejects coreutils 9.1's statx(AT_NO_AUTOMOUNT): `ls PATH` and `stat` fail
    // inside it. busybox versions on PATH first make both work under every runtime.
    await mkdir(path.join(rootfs, 'usr/local/bin'), { recursive: true })
    await copyBusybox(path.join(rootfs, 'usr/local/bin/busybox'))
    for (const tool of ['ls', 'stat']) await symlink('busybox', path.join(rootfs, 'usr/local/bin', tool))
    await addMountPoints(rootfs)
  }
}

/** busybox-static and its applet links: a 2 MB rootfs in ~0.1 s, no network. */
async function buildBusybox(rootfs: string): Promise<void> {
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'var/tmp']) {
    await mkdir(path.join(rootfs, d), { recursive: true })
  }
  await copyBusybox(path.join(rootfs, 'bin/busybox'))
  await runCliOk('chroot', [rootfs, '/bin/busybox', '--install', '-s'], {
    timeoutMs: limits.templateBusyboxBuildTimeoutMs,
  })
  await writeFile(
    path.join(rootfs, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
  )
  await writeFile(path.join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n')
  await writeFile(path.join(rootfs, 'etc/hosts'), '127.0.0.1 localhost\n')
  await addMountPoints(rootfs)
}

async function copyBusybox(to: string): Promise<void> {
  if (!(await exists(BUSYBOX_BIN))) {
    throw new S0Error('runtime_unavailable', `${BUSYBOX_BIN} missing (apt-get install busybox-static)`)
  }
  await runCliOk('cp', [BUSYBOX_BIN, to])
  await chmod(to, 0o755)
}

/**
 * Runtimes create missing mount points inside the rootfs; with a shared lower dir they would
 * land in the template itself, so every mount point the bundle uses exists up front.
 */
export async function addMountPoints(rootfs: string): Promise<void> {
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'run', 'etc'])
    await mkdir(path.join(rootfs, d), { recursive: true })
  await chmod(path.join(rootfs, 'tmp'), 0o1777)
  for (const f of ['etc/hostname', 'etc/resolv.conf']) {
    if (!(await exists(path.join(rootfs, f)))) await writeFile(path.join(rootfs, f), '')
  }
}

/** True if the mirror answers within `timeoutMs` (the Debian build needs it). */
export async function mirrorReachable(
  mirror: string = DEFAULT_MIRROR,
  timeoutMs: number = limits.templateMirrorProbeTimeoutMs,
): Promise<boolean> {
  try {
    const res = await fetch(`${mirror}/dists/bookworm/Release`, {
      method: 'HEAD',
      signal: AbortSignal.timeout(timeoutMs),
    })
    return res.ok
  } catch {
    return false // DNS, refused, timeout: all mean the build could not fetch
  }
}

function isBuiltin(name: string): name is BuiltinTemplate {
  return Object.hasOwn(BUILTIN_INPUTS, name)
}

function checkName(name: string): string {
  if (!TEMPLATE_NAME.test(name))
    throw new S0Error('invalid_request', `invalid template name ${JSON.stringify(name)}`)
  return name
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  )
}

/**
 * A lock file holding the owner's pid: O_EXCL create, stale if that pid is gone. Good enough
 * between s0 processes on one host (the only writers of the cache).
 */
export async function acquireLock(file: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + limits.templateLockWaitMs
  while (true) {
    try {
      const fh = await open(file, 'wx')
      await fh.writeFile(String(process.pid))
      await fh.close()
      return () => rm(file, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    // Released between our open and this read: NaN, and the next round takes it.
    const owner = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10)
    if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
      await rm(file, { force: true })
      continue
    }
    if (Date.now() > deadline) throw new S0Error('timeout', `template lock ${file} held by pid ${owner}`)
    await new Promise((r) => setTimeout(r, limits.templateLockPollMs))
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
