// The certificates TLS interception presents: structure (Node's parser and openssl's), the chain
// to the per-sandbox CA, and a real handshake that succeeds for the name and fails for another.
import { execFile } from 'node:child_process'
import crypto from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { limits } from '../../src/core/limits.js'
import * as der from '../../src/egress/tls/der.js'
import { LeafCache } from '../../src/egress/tls/leaf-cache.js'
import { createCa, ipv6Bytes, issueLeaf, loadCa, parseServerName } from '../../src/egress/tls/x509.js'

const execFileAsync = promisify(execFile)

describe('DER encoding', () => {
  it('encodes lengths, integers and OIDs as X.690 says', () => {
    expect(der.tlv(0x04, Buffer.alloc(3)).subarray(0, 2)).toEqual(Buffer.from([0x04, 3]))
    expect(der.tlv(0x04, Buffer.alloc(200)).subarray(0, 3)).toEqual(Buffer.from([0x04, 0x81, 200]))
    expect(der.tlv(0x04, Buffer.alloc(70_000)).subarray(0, 5)).toEqual(
      Buffer.from([0x04, 0x83, 0x01, 0x11, 0x70]),
    )
    expect(der.integer(0)).toEqual(Buffer.from([0x02, 1, 0]))
    expect(der.integer(128)).toEqual(Buffer.from([0x02, 2, 0, 0x80]))
    expect(der.integer(Buffer.from([0, 0, 5]))).toEqual(Buffer.from([0x02, 1, 5]))
    expect(der.oid('1.2.840.10045.4.3.2')).toEqual(Buffer.from('06082a8648ce3d040302', 'hex'))
    expect(der.time(new Date('2026-01-02T03:04:05.678Z')).toString('latin1')).toBe('\x17\x0d260102030405Z')
    expect(der.time(new Date('2050-01-01T00:00:00Z')).toString('latin1')).toBe('\x18\x0f20500101000000Z')
    const seq = der.sequence(der.integer(1), der.octetString(Buffer.from('ab')))
    const kids = der.children(seq, der.readTlv(seq, 0))
    expect(kids.map((k) => k.tag)).toEqual([der.TAG.INTEGER, der.TAG.OCTET_STRING])
    expect(() => der.readTlv(Buffer.from([0x30, 0x05, 0x01]), 0)).toThrow(der.DerError)
  })

  it('parses server names and refuses what no certificate can carry', () => {
    expect(parseServerName('API.Example.COM.')).toEqual({ kind: 'dns', name: 'api.example.com' })
    expect(parseServerName('*.example.com')).toEqual({ kind: 'dns', name: '*.example.com' })
    expect(parseServerName('10.1.2.3')).toMatchObject({ kind: 'ip', bytes: Buffer.from([10, 1, 2, 3]) })
    expect(parseServerName('[::1]')).toMatchObject({ kind: 'ip', name: '::1' })
    expect(ipv6Bytes('2001:db8::ffff:1.2.3.4')?.toString('hex')).toBe('20010db8000000000000ffff01020304')
    expect(ipv6Bytes('fe80::1%eth0')).toBeUndefined()
    for (const bad of [
      '',
      'a b',
      'exa mple.com',
      'x'.repeat(64) + '.com',
      '*.com',
      'a.*.com',
      '1.2.3',
      'caf\u00e9.com',
      'a/b',
    ]) {
      expect(() => parseServerName(bad), bad).toThrow(
        expect.objectContaining({ code: 'egress_tls_name_invalid' }),
      )
    }
  })
})

describe('X.509 certificates', () => {
  const ca = createCa('s0 sandbox sb-test CA')
  const caCert = new crypto.X509Certificate(ca.certPem)
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 's0-x509-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('makes a self-signed P-256 CA, valid for ten years, that signs leaves only', () => {
    expect(caCert.ca).toBe(true)
    expect(caCert.verify(caCert.publicKey)).toBe(true)
    expect(caCert.subject).toContain('CN=s0 sandbox sb-test CA')
    expect(caCert.issuer).toBe(caCert.subject)
    expect(caCert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    const lifetimeMs = new Date(caCert.validTo).getTime() - new Date(caCert.validFrom).getTime()
    expect(lifetimeMs).toBe(limits.egressCaValidityMs + limits.egressCertBackdateMs)
    expect(caCert.checkPrivateKey(crypto.createPrivateKey(ca.keyPem))).toBe(true)
  })

  it('issues leaves chained to the CA, for DNS names and IP addresses, short-lived', () => {
    const leaf = issueLeaf(ca, ['api.example.com', '*.cdn.example.com', '10.0.0.7', '::1'])
    const cert = new crypto.X509Certificate(leaf.certPem)
    expect(cert.verify(caCert.publicKey)).toBe(true)
    expect(cert.checkIssued(caCert)).toBe(true)
    expect(cert.ca).toBe(false)
    expect(cert.subjectAltName).toBe(
      'DNS:api.example.com, DNS:*.cdn.example.com, IP Address:10.0.0.7, IP Address:0:0:0:0:0:0:0:1',
    )
    expect(cert.checkHost('api.example.com')).toBe('api.example.com')
    expect(cert.checkHost('img.cdn.example.com')).toBe('*.cdn.example.com')
    expect(cert.checkHost('other.example.com')).toBeUndefined()
    expect(cert.checkIP('10.0.0.7')).toBe('10.0.0.7')
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1'])
    const lifetimeMs = new Date(cert.validTo).getTime() - new Date(cert.validFrom).getTime()
    expect(lifetimeMs).toBe(limits.egressLeafValidityMs + limits.egressCertBackdateMs)
    expect(cert.checkPrivateKey(crypto.createPrivateKey(leaf.keyPem))).toBe(true)
    // Random positive 128-bit serials, never repeated.
    const serials = new Set(
      Array.from(
        { length: 20 },
        () => new crypto.X509Certificate(issueLeaf(ca, ['a.test']).certPem).serialNumber,
      ),
    )
    expect(serials.size).toBe(20)
    for (const s of serials) expect(s.length).toBeLessThanOrEqual(32)
  })

  it('is what openssl expects: strict verification for TLS servers and every extension', async () => {
    const leaf = issueLeaf(ca, ['api.example.com', '192.0.2.1'])
    const caFile = path.join(dir, 'ca.pem')
    const leafFile = path.join(dir, 'leaf.pem')
    await writeFile(caFile, ca.certPem)
    await writeFile(leafFile, leaf.certPem)
    const verify = await execFileAsync('openssl', [
      'verify',
      '-x509_strict',
      '-purpose',
      'sslserver',
      '-CAfile',
      caFile,
      leafFile,
    ])
    expect(verify.stdout.trim()).toBe(`${leafFile}: OK`)
    const text = (await execFileAsync('openssl', ['x509', '-noout', '-text', '-in', leafFile])).stdout
    expect(text).toContain('Version: 3 (0x2)')
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256')
    expect(text).toContain('NIST CURVE: P-256')
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/)
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature/)
    expect(text).toMatch(/X509v3 Extended Key Usage:\s+TLS Web Server Authentication/)
    expect(text).toMatch(/X509v3 Subject Alternative Name:\s+DNS:api.example.com, IP Address:192.0.2.1/)
    expect(text).toContain('X509v3 Subject Key Identifier')
    const caText = (await execFileAsync('openssl', ['x509', '-noout', '-text', '-in', caFile])).stdout
    expect(caText).toMatch(/X509v3 Basic Constraints: critical\s+CA:TRUE, pathlen:0/)
    expect(caText).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign/)
    // The leaf's authority key id is the CA's subject key id.
    const caSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(caText)?.[1]
    expect(caSki).toBeDefined()
    expect(text).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${caSki}`))
  })

  it('gives a leaf a long name its SAN only (no CN over 64 characters)', () => {
    const long = `${'a'.repeat(60)}.example.com`
    const cert = new crypto.X509Certificate(issueLeaf(ca, [long]).certPem)
    expect(cert.subject).not.toContain('CN=')
    expect(cert.checkHost(long)).toBe(long)
  })

  it('refuses a CA it cannot sign with', () => {
    const other = createCa('other CA')
    const code = (f: () => unknown): string | undefined => {
      try {
        f()
        return undefined
      } catch (err) {
        return isS0Error(err) ? err.code : 'not an S0Error'
      }
    }
    expect(code(() => loadCa({ certPem: ca.certPem, keyPem: other.keyPem }))).toBe('egress_tls_ca_invalid')
    expect(code(() => loadCa({ certPem: 'junk', keyPem: ca.keyPem }))).toBe('egress_tls_ca_invalid')
    const leaf = issueLeaf(ca, ['leaf.test'])
    expect(code(() => loadCa(leaf))).toBe('egress_tls_ca_invalid') // not a CA
    const expired = new Date(Date.now() + limits.egressCaValidityMs + 86_400_000)
    expect(code(() => loadCa(ca, expired))).toBe('egress_tls_ca_invalid')
  })

  it('completes a real TLS handshake for the name, and fails it for another or without the CA', async () => {
    const leaves = new LeafCache(ca)
    const context = await leaves.secureContext('svc.example.com')
    const server = tls.createServer({ SNICallback: (_name, cb) => cb(null, context) }, (s) => s.end('hi'))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const connect = (servername: string, trust: string | undefined): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = tls.connect({
          host: '127.0.0.1',
          port,
          servername,
          ...(trust === undefined ? {} : { ca: trust }),
        })
        s.once('secureConnect', () => {
          let text = ''
          s.setEncoding('utf8')
          s.on('data', (d: string) => (text += d))
          s.on('end', () => resolve(text))
        })
        s.once('error', reject)
      })
    try {
      expect(await connect('svc.example.com', ca.certPem)).toBe('hi')
      await expect(connect('other.example.com', ca.certPem)).rejects.toMatchObject({
        code: 'ERR_TLS_CERT_ALTNAME_INVALID',
      })
      await expect(connect('svc.example.com', undefined)).rejects.toMatchObject({
        code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      })
      await expect(connect('svc.example.com', createCa('another CA').certPem)).rejects.toMatchObject({
        code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
      })
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

describe('leaf cache', () => {
  it('issues once per name (concurrent callers share), bounded, and refuses invalid names', async () => {
    const ca = createCa('cache CA')
    const leaves = new LeafCache(ca, { entriesMax: 3 })
    const [a1, a2] = await Promise.all([leaves.leaf('a.test'), leaves.leaf('A.test.')])
    expect(a1).toBe(a2)
    expect(await leaves.leaf('a.test')).toBe(a1)
    const cert = new crypto.X509Certificate(a1.certPem)
    expect(cert.verify(new crypto.X509Certificate(ca.certPem).publicKey)).toBe(true)
    expect(cert.checkHost('a.test')).toBe('a.test')
    for (const n of ['b.test', 'c.test', 'd.test', '10.9.8.7']) await leaves.leaf(n)
    expect(leaves.size).toBe(3)
    expect(await leaves.leaf('a.test')).not.toBe(a1) // evicted, issued again
    await expect(leaves.leaf('bad name')).rejects.toMatchObject({ code: 'egress_tls_name_invalid' })
    const ipLeaf = new crypto.X509Certificate((await leaves.leaf('10.9.8.7')).certPem)
    expect(ipLeaf.checkIP('10.9.8.7')).toBe('10.9.8.7')
  })
})
