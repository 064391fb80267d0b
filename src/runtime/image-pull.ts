// Registry image pulls: skopeo's `docker://` transport into ONE shared OCI layout (`<dir>/oci`), so
// a layer blob is stored once by its digest whatever images use it and skopeo skips blobs the
// layout already has (the same image, or a shared base layer, is not fetched twice); then umoci
// unpacks the image into `<dir>/rootfs/<digest hex>/rootfs`, the read-only lower layer of the
// overlay of its sandboxes. A tag is resolved to the digest of the manifest the registry serves
// first, and the pull names that digest: what was resolved is what is unpacked.
//
// Credentials reach skopeo in a 0600 --authfile in a 0700 temporary directory, removed after the
// call: never on argv (visible in ps) and never in a log line.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readdir, rename, rm, writeFile, access } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { S0Error, isS0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { silentLogger, type Logger } from '../core/log.js'
import { runCli, runCliOk } from './cli.js'
import { formatImageRef, type ImageRef } from './image-ref.js'
import { acquireLock, addMountPoints } from './templates.js'

export interface RegistryAuth {
  username: string
  password: string
}

export interface PullOptions {
  auth?: RegistryAuth | undefined
  /** Plain http / unverified TLS (loopback and S0_REGISTRY_INSECURE_HOSTS registries only). */
  insecure: boolean
}

/** Why a pull failed, for `status.creation.reason` (the message carries skopeo's words). */
export type PullFailure = 'Unauthorized' | 'ManifestUnknown' | 'RegistryUnreachable' | 'PullFailed'

export class ImagePullError extends S0Error {
  constructor(
    readonly reason: PullFailure,
    message: string,
  ) {
    super('template_build_failed', message)
  }
}

const DIGEST = /^sha256:([a-f0-9]{64})$/

export class ImagePuller {
  readonly dir: string
  private readonly log: Logger
  private queue: Promise<unknown> = Promise.resolve()

  constructor(opts: { dir: string; log?: Logger }) {
    this.dir = path.resolve(opts.dir)
    this.log = opts.log ?? silentLogger
  }

  /** The shared OCI layout (blobs stored once by digest). */
  get layoutDir(): string {
    return path.join(this.dir, 'oci')
  }

  rootfsPath(digest: string): string {
    return path.join(this.dir, 'rootfs', digestHex(digest), 'rootfs')
  }

  async isPulled(digest: string): Promise<boolean> {
    return exists(path.join(this.dir, 'rootfs', digestHex(digest), '.ready'))
  }

  /** The digest the registry serves for the reference (a pinned digest is returned as is). */
  async resolve(ref: ImageRef, o: PullOptions): Promise<string> {
    if (ref.digest) return ref.digest
    const raw = await this.skopeo(['inspect', '--raw', ...tlsArgs('--tls-verify', o)], ref, o, 'inspect')
    return `sha256:${createHash('sha256').update(raw, 'utf8').digest('hex')}`
  }

  /** The unpacked root file system of `ref` at `digest`, pulled (and unpacked) if not yet here. */
  async pull(ref: ImageRef, digest: string, o: PullOptions): Promise<string> {
    const hex = digestHex(digest)
    const run = async (): Promise<string> => {
      if (await this.isPulled(digest)) return this.rootfsPath(digest)
      await mkdir(this.dir, { recursive: true })
      const release = await acquireLock(path.join(this.dir, '.lock'))
      try {
        if (await this.isPulled(digest)) return this.rootfsPath(digest)
        const started = Date.now()
        const tag = `sha256-${hex}`
        await this.skopeo(
          ['copy', '--insecure-policy', ...tlsArgs('--src-tls-verify', o)],
          { ...ref, tag: undefined, digest },
          o,
          'copy',
          `oci:${this.layoutDir}:${tag}`,
        )
        const scratch = path.join(
          this.dir,
          'rootfs',
          `.build-${hex.slice(0, 16)}-${randomBytes(4).toString('hex')}`,
        )
        await mkdir(scratch, { recursive: true })
        try {
          const bundle = path.join(scratch, 'bundle')
          await runCliOk('umoci', ['unpack', '--image', `${this.layoutDir}:${tag}`, bundle], {
            timeoutMs: limits.templateImportTimeoutMs,
          })
          await rename(path.join(bundle, 'rootfs'), path.join(scratch, 'rootfs'))
          await rm(bundle, { recursive: true, force: true })
          await addMountPoints(path.join(scratch, 'rootfs'))
          await writeFile(path.join(scratch, '.ready'), `${formatImageRef(ref, { digest })}\n`)
          const target = path.join(this.dir, 'rootfs', hex)
          await rm(target, { recursive: true, force: true }) // a half-made one from a crash
          await rename(scratch, target)
        } catch (err) {
          await rm(scratch, { recursive: true, force: true })
          if (err instanceof ImagePullError) throw err
          throw new ImagePullError(
            'PullFailed',
            `unpacking ${formatImageRef(ref, { digest })} failed: ${String(err)}`,
          )
        }
        this.log.info('image pulled', { image: formatImageRef(ref, { digest }), ms: Date.now() - started })
        return this.rootfsPath(digest)
      } finally {
        await release()
      }
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined) // the queue only orders pulls
    return p
  }

  /** Blobs in the shared layout (tests: a second pull of the same image adds none). */
  async blobCount(): Promise<number> {
    const names = await readdir(path.join(this.layoutDir, 'blobs', 'sha256')).catch(() => [])
    return names.length
  }

  private async skopeo(
    args: string[],
    ref: ImageRef,
    o: PullOptions,
    what: string,
    dest?: string,
  ): Promise<string> {
    const src = `docker://${formatImageRef(ref)}`
    let authDir: string | undefined
    try {
      const authArgs: string[] = []
      if (o.auth) {
        authDir = await mkdtemp(path.join(tmpdir(), 's0-registry-auth-'))
        const file = path.join(authDir, 'auth.json')
        const token = Buffer.from(`${o.auth.username}:${o.auth.password}`).toString('base64')
        await writeFile(file, JSON.stringify({ auths: { [ref.registry]: { auth: token } } }), { mode: 0o600 })
        authArgs.push(what === 'copy' ? '--src-authfile' : '--authfile', file)
      } else {
        // Without credentials of the team, no ambient ones of the host (~/.docker, $REGISTRY_AUTH_FILE).
        authArgs.push(what === 'copy' ? '--src-no-creds' : '--no-creds')
      }
      const r = await runCli('skopeo', [...args, ...authArgs, src, ...(dest ? [dest] : [])], {
        timeoutMs: limits.templateImportTimeoutMs,
        outputBytesMax: limits.templateManifestBytesMax,
      }).catch((err: unknown) => {
        if (isS0Error(err, 'timeout'))
          throw new ImagePullError('RegistryUnreachable', `skopeo ${what} ${src} timed out`)
        throw err
      })
      if (r.code !== 0) throw pullError(src, what, r.stderr)
      return r.stdout
    } finally {
      if (authDir) await rm(authDir, { recursive: true, force: true })
    }
  }
}

function tlsArgs(flag: string, o: PullOptions): string[] {
  return o.insecure ? [`${flag}=false`] : []
}

/** skopeo's stderr → a reason the SDK can show (unauthorized, manifest unknown, unreachable). */
function pullError(src: string, what: string, stderr: string): ImagePullError {
  const text = stderr.trim().split('\n').slice(-3).join(' ').slice(0, 1000)
  const lower = text.toLowerCase()
  const reason: PullFailure =
    lower.includes('unauthorized') || lower.includes('authentication required') || lower.includes('denied')
      ? 'Unauthorized'
      : lower.includes('manifest unknown') || lower.includes('name unknown') || lower.includes('not found')
        ? 'ManifestUnknown'
        : lower.includes('connection refused') ||
            lower.includes('no such host') ||
            lower.includes('i/o timeout') ||
            lower.includes('pinging container registry')
          ? 'RegistryUnreachable'
          : 'PullFailed'
  return new ImagePullError(reason, `pulling ${src} failed (${what}): ${reason}: ${text}`)
}

function digestHex(digest: string): string {
  const m = DIGEST.exec(digest)
  if (!m?.[1]) throw new S0Error('invalid_request', `not a sha256 digest: ${JSON.stringify(digest)}`)
  return m[1]
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  )
}
