// OpenSSH key pairs for our SSH endpoints (the egress SSH proxy's host key, the sandbox SSH
// server's) and for tests. ssh2 1.17's generateKeyPairSync('ed25519') writes a key whose 32-byte
// public point starts with a zero byte as 31 bytes (about 1 key in 200), which nothing, ssh2
// itself included, can parse afterwards: a server starting with such a host key fails. So a
// pair is only handed out once both halves parse; a fresh one is drawn otherwise.
import ssh2 from 'ssh2'
import { assert } from './assert.js'

export interface SshKeyPair {
  /** OpenSSH private key (PEM-like `-----BEGIN OPENSSH PRIVATE KEY-----`). */
  private: string
  /** `ssh-ed25519 AAAA...` (with the comment, if any). */
  public: string
}

const ATTEMPTS_MAX = 16

export function generateEd25519(opts: { comment?: string; passphrase?: string } = {}): SshKeyPair {
  for (let i = 0; i < ATTEMPTS_MAX; i++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', {
      ...(opts.comment !== undefined ? { comment: opts.comment } : {}),
      ...(opts.passphrase !== undefined
        ? { passphrase: opts.passphrase, cipher: 'aes256-ctr', rounds: 4 }
        : {}),
    })
    const pub = ssh2.utils.parseKey(pair.public)
    const priv = ssh2.utils.parseKey(pair.private, opts.passphrase)
    if (!(pub instanceof Error) && !(priv instanceof Error)) return pair
  }
  // 16 malformed keys in a row: ~1e-37 by chance; a changed ssh2 that never works.
  assert(false, `ssh2 produced ${ATTEMPTS_MAX} unparsable ed25519 keys in a row`)
}
