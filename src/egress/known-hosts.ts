// OpenSSH known_hosts lines, as an ssh_proxy binding's `knownHosts` carries them: host patterns
// (comma lists, `*` / `?` wildcards, `!` negation, `[host]:port`, hashed `|1|salt|hash`
// entries), `@revoked` markers, and — as an s0 convenience — a bare `keytype base64` line that
// trusts the key for whatever host the binding is used for. `@cert-authority` lines are not
// supported and are ignored (so they trust nothing).
import { createHash, createHmac } from 'node:crypto'
import { limits } from '../core/limits.js'

export type KnownHostVerdict = 'trusted' | 'revoked' | 'unknown-key' | 'unknown-host'

export interface KnownHostCheck {
  verdict: KnownHostVerdict
  /** `SHA256:…` of the key the server presented (as OpenSSH prints it). */
  fingerprint: string
}

interface Entry {
  revoked: boolean
  /** null: a bare key line, for any host. */
  patterns: string[] | null
  blob: Buffer
}

const KEY_TYPE = /^(ssh-|ecdsa-|sk-)/
const LINE_CHARS_MAX = 16 * 1024

export function sshFingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
}

/** The key type a public-key blob names (its first SSH string), or undefined. */
function blobType(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined
  const len = blob.readUInt32BE(0)
  if (len === 0 || 4 + len > blob.length) return undefined
  return blob.subarray(4, 4 + len).toString('latin1')
}

function parseLine(line: string): Entry | undefined {
  const text = line.trim()
  if (text === '' || text.startsWith('#') || text.length > LINE_CHARS_MAX) return undefined
  const tokens = text.split(/\s+/)
  let revoked = false
  if (tokens[0]?.startsWith('@')) {
    const marker = tokens.shift()
    if (marker !== '@revoked') return undefined // @cert-authority: not supported
    revoked = true
  }
  let patterns: string[] | null = null
  if (!KEY_TYPE.test(tokens[0] ?? ''))
    patterns = (tokens.shift() as string).split(',').filter((p) => p !== '')
  const [type, b64] = tokens
  if (!type || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined
  const blob = Buffer.from(b64, 'base64')
  if (blobType(blob) !== type) return undefined
  return { revoked, patterns, blob }
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  return new RegExp(`^${body}$`, 'i')
}

function patternMatches(pattern: string, candidate: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|')
    if (!salt || !hash) return false
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(candidate).digest()
    return mac.equals(Buffer.from(hash, 'base64'))
  }
  return globToRegExp(pattern).test(candidate)
}

/** OpenSSH: some positive pattern matches and no negated one does. */
function hostMatches(patterns: string[] | null, candidates: string[]): boolean {
  if (patterns === null) return true
  return candidates.some((c) => {
    let positive = false
    for (const p of patterns) {
      if (p.startsWith('!')) {
        if (patternMatches(p.slice(1), c)) return false
      } else if (patternMatches(p, c)) positive = true
    }
    return positive
  })
}

/**
 * What `lines` say of `keyBlob` (the raw public key an SSH server presented) for a server known
 * by `names` (host name or address, and aliases) on `port`.
 */
export function checkKnownHost(
  lines: readonly string[],
  names: readonly string[],
  port: number,
  keyBlob: Buffer,
): KnownHostCheck {
  const fingerprint = sshFingerprint(keyBlob)
  const candidates = names.map((n) => (port === 22 ? n : `[${n}]:${port}`))
  const entries = lines
    .slice(0, limits.sshKnownHostsLinesMax)
    .map(parseLine)
    .filter((e): e is Entry => e !== undefined && hostMatches(e.patterns, candidates))
  if (entries.some((e) => e.revoked && e.blob.equals(keyBlob))) return { verdict: 'revoked', fingerprint }
  const listed = entries.filter((e) => !e.revoked)
  if (listed.some((e) => e.blob.equals(keyBlob))) return { verdict: 'trusted', fingerprint }
  return { verdict: listed.length > 0 ? 'unknown-key' : 'unknown-host', fingerprint }
}
