// The sandbox side of egress: each sandbox's own CA (made the first time it starts, kept sealed in
// Postgres for its life, so a resumed sandbox trusts the same one), the files and variables that
// make software inside trust it, and the egress directory entry (team, compiled policy, CA) the
// proxy and resolver find the sandbox by. The CA's key never enters the sandbox: only the
// certificate is bound in and appended to the root's trust bundles.
import { constants } from 'node:fs'
import { lstat, mkdir, open, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { Db } from '../core/db.js'
import type { SandboxId, TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { SecretKey } from '../egress/credentials/key.js'
import { openBytes, sealBytes } from '../egress/credentials/seal.js'
import { compilePolicy } from '../egress/policy/compile.js'
import { DEFAULT_NETWORK_POLICY, type SandboxNetworkPolicy } from '../egress/policy/types.js'
import type { EgressDirectory } from '../egress/proxy/directory.js'
import { systemTrustBundle } from '../egress/tls/intercept.js'
import { LeafCache } from '../egress/tls/leaf-cache.js'
import { createCa, type CertificatePem } from '../egress/tls/x509.js'
import type { FileBind } from '../runtime/sandbox-runtime.js'

/** The sandbox's CA alone (NODE_EXTRA_CA_CERTS adds it to Node's own roots). */
export const SANDBOX_CA_PATH = '/etc/s0/egress-ca.pem'
/** The root's (or, without one, the host's) trust bundle with the CA: what the variables name. */
export const SANDBOX_BUNDLE_PATH = '/etc/s0/ca-bundle.pem'

/** Variables read by OpenSSL, Go, curl, git, Python requests, the AWS SDKs; Node reads its own. */
const BUNDLE_VARIABLES = [
  'SSL_CERT_FILE',
  'REQUESTS_CA_BUNDLE',
  'CURL_CA_BUNDLE',
  'GIT_SSL_CAINFO',
  'AWS_CA_BUNDLE',
]

/** Where distributions keep the bundle that OpenSSL-based software reads by default. */
const ROOT_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Alpine, Arch
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // Fedora, RHEL (ca-bundle.crt links here)
  '/etc/ssl/ca-bundle.pem', // openSUSE
]
/** Where update-ca-certificates / update-ca-trust look for local anchors (so a rebuild keeps ours). */
const ROOT_ANCHOR_DIRS = ['/usr/local/share/ca-certificates', '/etc/pki/ca-trust/source/anchors']
const ANCHOR_FILE = 's0-egress-ca.crt'

export interface SandboxEgressOptions {
  db: Db
  key: SecretKey
  directory: EgressDirectory
  /** Host files bound into sandboxes: `<stateDir>/<sandbox id>/`. */
  stateDir: string
  log: Logger
}

/** What a sandbox's start needs for egress. */
export interface EgressStart {
  files: FileBind[]
  env: Record<string, string>
  /** Runs on the mounted root before the container starts (appends the CA to its bundles). */
  prepareRoot(root: string): Promise<void>
}

export class SandboxEgress {
  constructor(private readonly o: SandboxEgressOptions) {}

  /**
   * The sandbox's CA (made now if it has none), its files on the host, and its directory entry:
   * from here on its packets find their policy. `templateDir`'s bundle is the base of the bound one.
   */
  async prepare(
    row: { id: SandboxId; teamId: TeamId; network: SandboxNetworkPolicy | undefined },
    templateDir: string,
  ): Promise<EgressStart> {
    const ca = await this.caOf(row.id, row.teamId)
    const dir = path.join(this.o.stateDir, row.id)
    await mkdir(dir, { recursive: true, mode: 0o755 })
    const caFile = path.join(dir, 'egress-ca.pem')
    const bundleFile = path.join(dir, 'ca-bundle.pem')
    const base = (await templateBundle(templateDir)) ?? (await systemTrustBundle()) ?? ''
    await writeFile(caFile, ca.certPem, { mode: 0o644 })
    await writeFile(bundleFile, withCa(base, ca.certPem), { mode: 0o644 })
    this.o.directory.set({
      sandboxId: row.id,
      teamId: row.teamId,
      policy: compilePolicy(row.network ?? DEFAULT_NETWORK_POLICY),
      ca: new LeafCache(ca),
    })
    const env = this.env()
    return {
      files: [
        { containerPath: SANDBOX_CA_PATH, hostPath: caFile },
        { containerPath: SANDBOX_BUNDLE_PATH, hostPath: bundleFile },
      ],
      env,
      prepareRoot: (root) => installTrust(root, ca.certPem, this.o.log.child({ sandboxId: row.id })),
    }
  }

  /** The variables that make software inside trust the sandbox's CA (the same for every sandbox). */
  env(): Record<string, string> {
    const env: Record<string, string> = { NODE_EXTRA_CA_CERTS: SANDBOX_CA_PATH }
    for (const v of BUNDLE_VARIABLES) env[v] = SANDBOX_BUNDLE_PATH
    return env
  }

  /** The sandbox was claimed from a warm pool: its team and policy are the claim's now. */
  claimed(id: SandboxId, teamId: TeamId, network: SandboxNetworkPolicy | undefined): void {
    const e = this.o.directory.get(id)
    if (!e) return
    this.o.directory.set({ ...e, teamId, policy: compilePolicy(network ?? DEFAULT_NETWORK_POLICY) })
  }

  /** A live change: new connections and DNS queries follow it; open ones it denies are reset. */
  policyChanged(id: SandboxId, policy: SandboxNetworkPolicy): void {
    this.o.directory.setPolicy(id, compilePolicy(policy))
  }

  /** The sandbox stopped: its address may go to another one. */
  stopped(id: SandboxId): void {
    this.o.directory.remove(id)
  }

  /** The sandbox is gone for good: its CA and files too. */
  async forget(id: SandboxId): Promise<void> {
    this.o.directory.remove(id)
    await this.o.db.query('DELETE FROM sandbox_cas WHERE sandbox_id = $1', [id])
    await rm(path.join(this.o.stateDir, id), { recursive: true, force: true })
  }

  /** The stored CA, or a new one stored first (two starts racing keep the first). */
  private async caOf(id: SandboxId, teamId: TeamId): Promise<CertificatePem> {
    const found = await this.loadCa(id)
    if (found) return found
    const made = createCa(`s0 egress CA for sandbox ${id}`)
    const sealed = sealBytes(this.o.key, Buffer.from(made.keyPem), caContext(id))
    await this.o.db.query(
      `INSERT INTO sandbox_cas (sandbox_id, team_id, cert_pem, key_id, key_nonce, key_ciphertext, key_tag)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sandbox_id) DO NOTHING`,
      [id, teamId, made.certPem, sealed.keyId, sealed.nonce, sealed.ciphertext, sealed.tag],
    )
    return (await this.loadCa(id)) ?? made
  }

  private async loadCa(id: SandboxId): Promise<CertificatePem | undefined> {
    const { rows } = await this.o.db.query<{
      cert_pem: string
      key_id: string
      key_nonce: Buffer
      key_ciphertext: Buffer
      key_tag: Buffer
    }>('SELECT cert_pem, key_id, key_nonce, key_ciphertext, key_tag FROM sandbox_cas WHERE sandbox_id = $1', [
      id,
    ])
    const r = rows[0]
    if (!r) return undefined
    const keyPem = openBytes(
      this.o.key,
      { keyId: r.key_id, nonce: r.key_nonce, ciphertext: r.key_ciphertext, tag: r.key_tag },
      caContext(id),
    ).toString('utf8')
    return { certPem: r.cert_pem, keyPem }
  }
}

/** What a sealed CA key is bound to: a key moved to another sandbox's row does not open. */
function caContext(id: SandboxId): string[] {
  return ['s0-sandbox-ca', id]
}

function withCa(bundle: string, caPem: string): string {
  if (bundle.includes(caPem.trim())) return bundle
  const sep = bundle === '' || bundle.endsWith('\n') ? '' : '\n'
  return `${bundle}${sep}# s0 egress CA of this sandbox\n${caPem.trim()}\n`
}

/** The template's own trust bundle (the template tree is ours: read as it is). */
async function templateBundle(templateDir: string): Promise<string | undefined> {
  for (const p of ROOT_BUNDLES) {
    const text = await readFile(path.join(templateDir, p), 'utf8').catch(() => undefined) // absent: the next
    if (text !== undefined && text.includes('BEGIN CERTIFICATE')) return text
  }
  return undefined
}

/**
 * Appends the CA to each trust bundle the root has and drops it into the anchor directories (so
 * update-ca-certificates keeps it). The root may hold anything a sandbox wrote before (it comes
 * from a checkpoint), so no path is followed through a symlink and only regular files of a sane
 * size are touched; the container is not running, so nothing changes them meanwhile.
 */
async function installTrust(root: string, caPem: string, log: Logger): Promise<void> {
  const ca = caPem.trim()
  for (const p of ROOT_BUNDLES) {
    const file = await plainPath(root, p, 'file')
    if (!file) continue
    const st = await lstat(file)
    if (st.size > limits.sandboxTrustBundleBytesMax) {
      log.warn('trust bundle too large to extend', { path: p, bytes: st.size })
      continue
    }
    const text = await readFile(file, 'utf8')
    if (text.includes(ca)) continue
    const fh = await open(file, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW)
    try {
      await fh.write(withCa(text, caPem).slice(text.length))
    } finally {
      await fh.close()
    }
  }
  for (const d of ROOT_ANCHOR_DIRS) {
    const dir = await plainPath(root, d, 'dir')
    if (!dir) continue
    const fh = await open(
      path.join(dir, ANCHOR_FILE),
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o644,
    )
    try {
      await fh.write(`${ca}\n`)
    } finally {
      await fh.close()
    }
  }
}

/** `root + abs` when every component exists, none is a symlink, and the last is a `kind`. */
async function plainPath(root: string, abs: string, kind: 'file' | 'dir'): Promise<string | undefined> {
  let p = root
  const parts = abs.split('/').filter(Boolean)
  for (const [i, part] of parts.entries()) {
    p = path.join(p, part)
    const st = await lstat(p).catch(() => undefined) // absent: not there
    if (!st) return undefined
    const last = i === parts.length - 1
    if (!last && !st.isDirectory()) return undefined
    if (last && !(kind === 'file' ? st.isFile() : st.isDirectory())) return undefined
  }
  return p
}
