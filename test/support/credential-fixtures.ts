// Key material for credential tests: X.509 certificates and keys made with the openssl CLI (Node
// has no certificate builder), and SSH key pairs made with ssh2 (OpenSSH format).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import ssh2 from 'ssh2'
import { generateEd25519 } from '../../src/core/ssh-keygen.js'

export interface CertAndKey {
  certPem: string
  keyPem: string
}

/** A self-signed EC P-256 certificate for `cn` and its PKCS#8 key. */
export function selfSignedCertificate(cn = 'client.test'): CertAndKey {
  const dir = mkdtempSync(path.join(os.tmpdir(), 's0-cert-'))
  try {
    const key = path.join(dir, 'key.pem')
    const cert = path.join(dir, 'cert.pem')
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '2',
        '-subj',
        `/CN=${cn}`,
      ],
      { stdio: 'ignore' },
    )
    return { certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export interface SshKeyPair {
  /** OpenSSH private key (encrypted when a passphrase is given). */
  privateKey: string
  /** `ssh-ed25519 AAAA... comment` */
  publicKey: string
}

export function sshKeyPair(opts: { passphrase?: string; type?: 'ed25519' | 'ecdsa' } = {}): SshKeyPair {
  const type = opts.type ?? 'ed25519'
  const enc = opts.passphrase ? { passphrase: opts.passphrase, cipher: 'aes256-ctr', rounds: 4 } : undefined
  let pair: { private: string; public: string }
  if (type === 'ecdsa') pair = ssh2.utils.generateKeyPairSync('ecdsa', { bits: 256, ...(enc ?? {}) })
  else pair = generateEd25519(opts.passphrase ? { passphrase: opts.passphrase } : {})
  return { privateKey: pair.private, publicKey: pair.public }
}
