// The SSH endpoint's host key: one ed25519 key per server, generated on first start into
// `<stateDir>/ssh/ssh_host_ed25519_key` (OpenSSH format, mode 0600, a wider mode is refused),
// so clients see the same key across restarts; in a cluster, one key for all (loadClusterSshHostKey).
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { readOrCreatePrivateFile } from '../../egress/credentials/key.js'
import { generateEd25519 } from '../../core/ssh-keygen.js'
import ssh2 from 'ssh2'
import type { Db } from '../../core/db.js'
import { S0Error } from '../../core/errors.js'
import type { SecretKey } from '../../egress/credentials/key.js'
import { openBytes, sealBytes } from '../../egress/credentials/seal.js'

export const SSH_HOST_KEY_FILE = 'ssh_host_ed25519_key'

export async function loadSandboxSshHostKey(stateDir: string): Promise<string> {
  const dir = path.join(stateDir, 'ssh')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const bytes = await readOrCreatePrivateFile(path.join(dir, SSH_HOST_KEY_FILE), () =>
    Buffer.from(generateEd25519({ comment: 's0 sandbox ssh' }).private),
  )
  return bytes.toString('utf8')
}

/**
 * The host key of a cluster (`s0 api` and `s0 agent`, docs/DEPLOY.md): one key for every replica,
 * so that a client behind any load balancer sees the same host, and for every agent, so that a
 * replica knows it hands the cluster token to an agent and not to whoever took its address. It
 * lives in Postgres, which every process shares already, sealed with S0_SECRET_KEY (which they
 * share too, for credential sources): nothing more to distribute. The first process to start
 * generates it; the others read the winner's (INSERT ... ON CONFLICT DO NOTHING).
 */
export async function loadClusterSshHostKey(db: Db, key: SecretKey): Promise<string> {
  const fresh = sealBytes(
    key,
    Buffer.from(generateEd25519({ comment: 's0 cluster ssh' }).private),
    CLUSTER_HOST_KEY_CONTEXT,
  )
  await db.query(
    `INSERT INTO cluster_secrets (name, key_id, nonce, ciphertext, tag) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (name) DO NOTHING`,
    [CLUSTER_HOST_KEY_NAME, fresh.keyId, fresh.nonce, fresh.ciphertext, fresh.tag],
  )
  const { rows } = await db.query<{ key_id: string; nonce: Buffer; ciphertext: Buffer; tag: Buffer }>(
    'SELECT key_id, nonce, ciphertext, tag FROM cluster_secrets WHERE name = $1',
    [CLUSTER_HOST_KEY_NAME],
  )
  const row = rows[0]
  if (!row) throw new S0Error('internal_error', 'the cluster SSH host key vanished as it was written')
  try {
    const sealed = { keyId: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext, tag: row.tag }
    return openBytes(key, sealed, CLUSTER_HOST_KEY_CONTEXT).toString('utf8')
  } catch (err) {
    throw new S0Error(
      'config_invalid',
      'the cluster SSH host key in the database does not open with this S0_SECRET_KEY: every replica and agent needs the same one',
      { cause: err },
    )
  }
}

const CLUSTER_HOST_KEY_NAME = 'ssh_host_key'
const CLUSTER_HOST_KEY_CONTEXT = ['s0-cluster-secret', CLUSTER_HOST_KEY_NAME] as const

/** The OpenSSH public key line of a private host key (what a relay expects of an agent). */
export function publicHostKey(privateKey: string): Buffer {
  const parsed = ssh2.utils.parseKey(privateKey)
  if (parsed instanceof Error) throw parsed
  const k = Array.isArray(parsed) ? parsed[0] : parsed
  if (!k) throw new S0Error('internal_error', 'no key in the host key')
  return k.getPublicSSH()
}
