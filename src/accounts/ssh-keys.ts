// SSH public keys of a team (`/users/me/ssh-keys`, `s0 ssh-key`): the keys that log in to the
// team's sandboxes through the server's SSH endpoint. Only public keys are stored, in their
// canonical `type base64` form, with OpenSSH's SHA-256 fingerprint (unique per team).
import { createHash } from 'node:crypto'
import ssh2 from 'ssh2'
import type { ParsedKey } from 'ssh2'
import type { Db } from '../core/db.js'
import { S0Error } from '../core/errors.js'
import { randomHexId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'

export interface SshKeyInfo {
  id: string
  teamId: TeamId
  name: string
  /** `ssh-ed25519 AAAA…` (no comment). */
  publicKey: string
  keyType: string
  /** As `ssh-keygen -l` prints it: `SHA256:` and unpadded base64. */
  fingerprintSha256: string
  comment: string | null
  createdAt: Date
  updatedAt: Date
}

interface SshKeyRow {
  id: string
  team_id: string
  name: string
  key_type: string
  public_key: string
  fingerprint_sha256: string
  comment: string | null
  created_at: Date
  updated_at: Date
}

const COLUMNS = 'id, team_id, name, key_type, public_key, fingerprint_sha256, comment, created_at, updated_at'
const SSH_KEY_ID = /^sshkey-[0-9a-f]{16}$/

/** A parsed public key line. */
export interface PublicKeyLine {
  key: ParsedKey
  keyType: string
  /** `type base64`. */
  canonical: string
  fingerprintSha256: string
  comment: string | null
}

/** OpenSSH's fingerprint of a key blob (the wire form of the public key). */
export function sshFingerprintSha256(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

/** Parses one OpenSSH public key line (`type base64 [comment]`); private keys are refused. */
export function parsePublicKeyLine(text: string): PublicKeyLine {
  const line = text.trim()
  if (line === '') throw new S0Error('invalid_request', 'public_key is empty')
  if (Buffer.byteLength(line) > limits.sshPublicKeyBytesMax)
    throw new S0Error('invalid_request', `public_key is longer than ${limits.sshPublicKeyBytesMax} bytes`)
  if (line.includes('\n'))
    throw new S0Error('invalid_request', 'public_key must be one key (one line of a .pub file)')
  if (/PRIVATE KEY/.test(line))
    throw new S0Error('invalid_request', 'public_key holds a private key: send the .pub file instead')
  const parsed = ssh2.utils.parseKey(line)
  const key = Array.isArray(parsed) ? parsed[0] : parsed
  if (!key || key instanceof Error || key.isPrivateKey())
    throw new S0Error(
      'invalid_request',
      'public_key is not an OpenSSH public key (expected "ssh-ed25519 AAAA... comment", the content of a .pub file)',
    )
  const blob = key.getPublicSSH()
  const comment = line.split(/\s+/).slice(2).join(' ')
  return {
    key,
    keyType: key.type,
    canonical: `${key.type} ${blob.toString('base64')}`,
    fingerprintSha256: sshFingerprintSha256(blob),
    comment: comment === '' ? null : comment,
  }
}

function toInfo(r: SshKeyRow): SshKeyInfo {
  return {
    id: r.id,
    teamId: r.team_id as TeamId,
    name: r.name,
    publicKey: r.public_key,
    keyType: r.key_type,
    fingerprintSha256: r.fingerprint_sha256,
    comment: r.comment,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }
}

/** Registers a key for the team; the same key twice is a 409 `conflict`. */
export async function addSshKey(
  db: Db,
  teamId: TeamId,
  req: { name: string; publicKey: string },
): Promise<SshKeyInfo> {
  const name = req.name.trim()
  if (name.length === 0 || name.length > 200)
    throw new S0Error('invalid_request', 'name must be 1 to 200 characters')
  const k = parsePublicKeyLine(req.publicKey)
  return db.tx(async (c) => {
    // Locking the team row serialises concurrent adds, so the per-team bound holds.
    const team = await c.query('SELECT id FROM teams WHERE id = $1 FOR UPDATE', [teamId])
    if (team.rowCount === 0) throw new S0Error('not_found', `team ${teamId} not found`)
    const { rows: count } = await c.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM ssh_keys WHERE team_id = $1',
      [teamId],
    )
    if ((count[0]?.n ?? 0) >= limits.sshKeysPerTeamMax)
      throw new S0Error('quota_exceeded', `a team may register at most ${limits.sshKeysPerTeamMax} SSH keys`)
    const { rows } = await c.query<SshKeyRow>(
      `INSERT INTO ssh_keys (id, team_id, name, key_type, public_key, fingerprint_sha256, comment)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (team_id, fingerprint_sha256) DO NOTHING
       RETURNING ${COLUMNS}`,
      [`sshkey-${randomHexId(8)}`, teamId, name, k.keyType, k.canonical, k.fingerprintSha256, k.comment],
    )
    const row = rows[0]
    if (!row)
      throw new S0Error('conflict', `this key (${k.fingerprintSha256}) is already registered for the team`)
    return toInfo(row)
  })
}

/** The team's keys, oldest first. */
export async function listSshKeys(db: Db, teamId: TeamId): Promise<SshKeyInfo[]> {
  const { rows } = await db.query<SshKeyRow>(
    `SELECT ${COLUMNS} FROM ssh_keys WHERE team_id = $1 ORDER BY created_at, id`,
    [teamId],
  )
  return rows.map(toInfo)
}

/** Removes a key of the team (another team's key is `not_found`). Logins with it stop at once. */
export async function deleteSshKey(db: Db, teamId: TeamId, id: string): Promise<void> {
  const res = SSH_KEY_ID.test(id)
    ? await db.query('DELETE FROM ssh_keys WHERE team_id = $1 AND id = $2', [teamId, id])
    : { rowCount: 0 }
  if (res.rowCount === 0) throw new S0Error('not_found', `SSH key ${id} not found`)
}

/**
 * The team's key that matches an offered public key (algorithm and blob), or undefined. The
 * caller still verifies the signature with the returned key.
 */
export async function findTeamSshKey(
  db: Db,
  teamId: TeamId,
  offered: { algo: string; data: Buffer },
): Promise<ParsedKey | undefined> {
  const { rows } = await db.query<{ public_key: string }>(
    'SELECT public_key FROM ssh_keys WHERE team_id = $1 AND fingerprint_sha256 = $2',
    [teamId, sshFingerprintSha256(offered.data)],
  )
  const row = rows[0]
  if (!row) return undefined
  const parsed = ssh2.utils.parseKey(row.public_key)
  const key = Array.isArray(parsed) ? parsed[0] : parsed
  if (!key || key instanceof Error || !key.getPublicSSH().equals(offered.data)) return undefined
  return key
}
