// Registry image pulls: skopeo's `docker://` transport into ONE shared OCI layout (`<dir>/oci`), so
// a layer blob is stored once by its digest whatever images use it and skopeo skips blobs the
// layout already has (the same image, or a shared base layer, is not fetched twice); then umoci
// unpacks the image into `<dir>/rootfs/<digest hex>/rootfs`, the read-only lower layer of the
// overlay of its sandboxes. A tag is resolved to the digest of the manifest the registry serves
// first, and the pull names that digest: what was resolved is what is unpacked.
//
// With a store (sandboxes/image-volumes.ts: a volume of the chunk engine per digest), an unpacked
// image is also imported there, and a host lacking the unpacked directory writes it back from
// the store before it asks the registry: a new host fetches only the chunks it lacks, and a
// registry that is gone no longer breaks templates already pulled once.
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

/** Where unpacked images are kept beyond this host (the chunk engine), by manifest digest. */
export interface ImageRootfsStore {
  has(digest: string): Promise<boolean>
  /** Stores an unpacked root file system (nothing writes it meanwhile); idempotent per digest. */
  save(digest: string, rootfs: string): Promise<void>
  /** Writes the stored root file system into `into` (not existing yet); false if none is stored. */
  restore(digest: string, into: string): Promise<boolean>
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

  readonly store: ImageRootfsStore | undefined

  constructor(opts: { dir: string; log?: Logger; store?: ImageRootfsStore | undefined }) {
    this.dir = path.resolve(opts.dir)
    this.log = opts.log ?? silentLogger
    this.store = opts.store
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

  /**
   * The unpacked root file system of `ref` at `digest`: here already, else written back from the
   * store, else pulled (and unpacked, and stored). Built in a scratch directory renamed into
   * place, under the images lock: a crash leaves no half-made image.
   */
  async pull(ref: ImageRef, digest: string, o: PullOptions): Promise<string> {
    const hex = digestHex(digest)
    const run = async (): Promise<string> => {
      if (await this.isPulled(digest)) return this.rootfsPath(digest)
      await mkdir(path.join(this.dir, 'rootfs'), { recursive: true })
      const release = await acquireLock(path.join(this.dir, '.lock'))
      try {
        if (await this.isPulled(digest)) return this.rootfsPath(digest)
        const started = Date.now()
        const image = formatImageRef(ref, { digest })
        const scratch = path.join(
          this.dir,
          'rootfs',
          `.build-${hex.slice(0, 16)}-${randomBytes(4).toString('hex')}`,
        )
        await mkdir(scratch, { recursive: true })
        try {
          const from = (await this.fromStore(digest, path.join(scratch, 'rootfs')))
            ? 'chunk store'
            : await this.fromRegistry(ref, digest, o, scratch)
          await writeFile(path.join(scratch, '.ready'), `${image}\n`)
          const target = path.join(this.dir, 'rootfs', hex)
          await rm(target, { recursive: true, force: true }) // a half-made one from a crash
          await rename(scratch, target)
          this.log.info('image pulled', { image, from, ms: Date.now() - started })
        } catch (err) {
          await rm(scratch, { recursive: true, force: true })
          if (err instanceof ImagePullError) throw err
          throw new ImagePullError('PullFailed', `unpacking ${image} failed: ${String(err)}`)
        }
        return this.rootfsPath(digest)
      } finally {
        await release()
      }
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined) // the queue only orders pulls
    return p
  }

  /** Writes the image back from the store; false (and nothing left in `into`) if it cannot. */
  private async fromStore(digest: string, into: string): Promise<boolean> {
    if (!this.store) return false
    try {
      return await this.store.restore(digest, into)
    } catch (err) {
      // The registry may still have it: a broken store entry costs a pull, not the claim.
      this.log.warn('image not materialized from the chunk store; pulling it', { digest, err })
      await rm(into, { recursive: true, force: true })
      return false
    }
  }

  /** skopeo copy into the shared layout, umoci unpack into `<scratch>/rootfs`, then stored. */
  private async fromRegistry(
    ref: ImageRef,
    digest: string,
    o: PullOptions,
    scratch: string,
  ): Promise<string> {
    const tag = `sha256-${digestHex(digest)}`
    await this.skopeo(
      ['copy', '--insecure-policy', ...tlsArgs('--src-tls-verify', o)],
      { ...ref, tag: undefined, digest },
      o,
      'copy',
      `oci:${this.layoutDir}:${tag}`,
    )
    const bundle = path.join(scratch, 'bundle')
    await runCliOk('umoci', ['unpack', '--image', `${this.layoutDir}:${tag}`, bundle], {
      timeoutMs: limits.templateImportTimeoutMs,
    })
    const rootfs = path.join(scratch, 'rootfs')
    await rename(path.join(bundle, 'rootfs'), rootfs)
    await rm(bundle, { recursive: true, force: true })
    await addMountPoints(rootfs)
    // Usable here even if the store fails; the template build stores it again (ensureStored).
    await this.store
      ?.save(digest, rootfs)
      .catch((err: unknown) => this.log.warn('image not stored in the chunk store', { digest, err }))
    return 'registry'
  }

  /**
   * Makes sure the store has the image pulled here (a template build calls it: an image pulled
   * before there was a store, or whose import failed, is stored now). Throws if it cannot.
   */
  async ensureStored(digest: string): Promise<void> {
    if (!this.store || (await this.store.has(digest))) return
    if (!(await this.isPulled(digest)))
      throw new ImagePullError('PullFailed', `image ${digest} is not unpacked on this host`)
    try {
      await this.store.save(digest, this.rootfsPath(digest))
    } catch (err) {
      throw new ImagePullError(
        'PullFailed',
        `storing image ${digest} in the chunk store failed: ${(err as Error).message}`,
      )
    }
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
