// What the runtime remembers of one sandbox: the record (also `<sandbox dir>/sandbox.json`, so
// reconcile finds it after a crash), and the checks on what goes into it (id, environment).
import { readFile, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from '../core/errors.js'
import { ENV_NAME_PATTERN, isSandboxId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { SandboxAttachment } from './network.js'
import { legacySandboxView, type SandboxView } from './view.js'

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export interface SandboxRecord {
  id: string
  driver: string
  dir: string
  rootfs: string
  upperDir: string
  netns: string
  cgroupsPath: string
  /** Host pid of the container's init (runsc: of the sandbox process); 0 until started. */
  initPid: number
  /** The init's environment: every exec starts from it (crun's --env replaces, runc's appends). */
  env: Record<string, string>
  /** Where each path of the sandbox is on the host (view.ts); set once its mounts are made. */
  view: SandboxView
  /** Its place on the sandbox network, when it has one (network.ts). */
  network?: SandboxAttachment
  createdAt: string
}

/** The record of a sandbox not started yet (or whose record was lost): where its parts would be. */
export function newRecord(o: {
  id: string
  driver: string
  sandboxesDir: string
  netnsPrefix: string
  cgroupPrefix: string
  env?: Record<string, string>
  createdAt?: string
}): SandboxRecord {
  const dir = path.join(o.sandboxesDir, o.id)
  const rootfs = path.join(dir, 'rootfs', 'merged')
  return {
    id: o.id,
    driver: o.driver,
    dir,
    rootfs,
    upperDir: '',
    netns: `${o.netnsPrefix}${o.id}`,
    cgroupsPath: `/${o.cgroupPrefix}/${o.id}`,
    initPid: 0,
    env: o.env ?? {},
    view: legacySandboxView(rootfs),
    createdAt: o.createdAt ?? '',
  }
}

/** Written to a temp file and renamed: a crash leaves the old record or the new one. */
export async function writeRecord(rec: SandboxRecord): Promise<void> {
  const file = path.join(rec.dir, 'sandbox.json')
  await writeFile(`${file}.tmp`, JSON.stringify(rec))
  await rename(`${file}.tmp`, file)
}

/**
 * undefined when the id is not one of ours or it has no readable record (reconcile then
 * cleans up where a record would point: newRecord's paths).
 */
export async function readRecord(sandboxesDir: string, id: string): Promise<SandboxRecord | undefined> {
  if (!isSandboxId(id)) return undefined
  let text: string
  try {
    text = await readFile(path.join(sandboxesDir, id, 'sandbox.json'), 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    throw err
  }
  let rec: SandboxRecord
  try {
    rec = JSON.parse(text) as SandboxRecord
  } catch {
    return undefined // cut short by a crash of a server without atomic writes: as if absent
  }
  // Records written before the view existed: /tmp and /dev/shm were the container's own tmpfs.
  rec.view ??= legacySandboxView(rec.rootfs)
  return rec
}

export function checkId(id: string): void {
  if (!isSandboxId(id)) throw new S0Error('invalid_request', `invalid sandbox id ${JSON.stringify(id)}`)
}

/** The environment every process of a sandbox starts from. */
export function baseEnv(hostname: string, env: Record<string, string> = {}): Record<string, string> {
  return { PATH: DEFAULT_PATH, HOME: '/root', HOSTNAME: hostname, ...env }
}

/** `KEY=value` entries, validated (names, NUL bytes, count). */
export function toEnvList(env: Record<string, string>): string[] {
  const entries = Object.entries(env)
  if (entries.length > limits.sandboxEnvEntriesMax)
    throw new S0Error('invalid_request', 'too many environment variables')
  return entries.map(([k, v]) => {
    if (!ENV_NAME_PATTERN.test(k) || v.includes('\0')) {
      throw new S0Error('invalid_request', `invalid environment variable ${JSON.stringify(k)}`)
    }
    return `${k}=${v}`
  })
}
