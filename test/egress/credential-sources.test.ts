// Credential sources on real Postgres: versions sealed at rest, team scoping, roles, validation
// (nothing stored on a bad write), and resolution through the bounded cache.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isS0Error, type ErrorCode } from '../../src/core/errors.js'
import { asTeamId } from '../../src/core/ids.js'
import { limits } from '../../src/core/limits.js'
import { silentLogger } from '../../src/core/log.js'
import { CredentialSourceService, SecretKey } from '../../src/egress/credentials/index.js'
import type { CredentialSourceWrite } from '../../src/egress/policy/types.js'
import { selfSignedCertificate, sshKeyPair } from '../support/credential-fixtures.js'
import { freshDb, type TestDb } from '../support/db.js'

const TEAM = asTeamId('team-cred-a')
const OTHER = asTeamId('team-cred-b')
const ADMIN = { role: 'admin' } as const
const MEMBER = { role: 'member' } as const

let tdb: TestDb
let key: SecretKey
let clockMs = 0
let svc: CredentialSourceService

function service(k = key): CredentialSourceService {
  return new CredentialSourceService({ db: tdb.db, key: k, log: silentLogger, cache: { now: () => clockMs } })
}

beforeAll(async () => {
  tdb = await freshDb()
  await tdb.db.query(`INSERT INTO teams (id, name) VALUES ($1, 'a'), ($2, 'b')`, [TEAM, OTHER])
  key = SecretKey.generate()
  svc = service()
})

afterAll(async () => {
  await tdb?.drop()
})

async function code(p: Promise<unknown>): Promise<ErrorCode | 'no error'> {
  try {
    await p
    return 'no error'
  } catch (err) {
    if (!isS0Error(err)) throw err
    return err.code
  }
}

const headers = (name: string, token: string): CredentialSourceWrite => ({
  name,
  resolverKind: 'static_headers',
  spec: { staticHeaders: { values: { token } } },
})

async function rowCounts(): Promise<{ sources: number; versions: number }> {
  const s = await tdb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM credential_sources')
  const v = await tdb.db.query<{ n: number }>('SELECT count(*)::int AS n FROM credential_source_versions')
  return { sources: s.rows[0]?.n ?? -1, versions: v.rows[0]?.n ?? -1 }
}

describe('credential sources', () => {
  it('create, get, list, update (new version) and delete', async () => {
    const created = await svc.create(TEAM, headers('gh', 'tok-v1'), ADMIN)
    expect(created).toMatchObject({
      name: 'gh',
      resolverKind: 'static_headers',
      currentVersion: 1,
      status: 'active',
    })
    expect(created.createdAt).toBeInstanceOf(Date)
    expect(await svc.get(TEAM, 'gh')).toEqual(created)
    expect((await svc.list(TEAM)).map((s) => s.name)).toContain('gh')

    const updated = await svc.update(TEAM, 'gh', headers('ignored-name', 'tok-v2'), ADMIN)
    expect(updated).toMatchObject({ name: 'gh', currentVersion: 2 })
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime())
    expect((await svc.resolve(TEAM, 'gh')).fields).toEqual({ token: 'tok-v2' })

    await svc.delete(TEAM, 'gh', ADMIN)
    expect(await code(svc.get(TEAM, 'gh'))).toBe('credential_source_not_found')
    expect(await code(svc.resolve(TEAM, 'gh'))).toBe('credential_source_not_found')
    const left = await tdb.db.query(
      `SELECT 1 FROM credential_source_versions WHERE team_id = $1 AND name = 'gh'`,
      [TEAM],
    )
    expect(left.rowCount).toBe(0)
  })

  it('stores only ciphertext: the secret is nowhere in the rows', async () => {
    const secret = 'sk-live-plaintext-needle-0123456789'
    await svc.create(TEAM, headers('needle', secret), ADMIN)
    const { rows } = await tdb.db.query<{ dump: string }>(
      `SELECT row_to_json(v)::text || row_to_json(s)::text AS dump, encode(v.ciphertext, 'escape') AS c
       FROM credential_source_versions v JOIN credential_sources s USING (team_id, name) WHERE name = 'needle'`,
    )
    expect(rows).toHaveLength(1)
    expect(JSON.stringify(rows)).not.toContain(secret)
    expect(JSON.stringify(rows)).not.toContain(Buffer.from(secret).toString('hex'))
    await svc.delete(TEAM, 'needle', ADMIN)
  })

  it('keeps a bounded number of versions', async () => {
    await svc.create(TEAM, headers('rot', 'v1'), ADMIN)
    for (let i = 2; i <= limits.credentialVersionsKept + 3; i++)
      await svc.update(TEAM, 'rot', headers('rot', `v${i}`), ADMIN)
    const { rows } = await tdb.db.query<{ version: number }>(
      `SELECT version FROM credential_source_versions WHERE name = 'rot' ORDER BY version`,
    )
    const current = limits.credentialVersionsKept + 3
    expect(rows.map((r) => r.version)).toEqual(
      Array.from(
        { length: limits.credentialVersionsKept },
        (_, i) => current - limits.credentialVersionsKept + 1 + i,
      ),
    )
    expect((await svc.resolve(TEAM, 'rot')).version).toBe(current)
    await svc.delete(TEAM, 'rot', ADMIN)
  })

  it('is team-scoped: another team sees, changes and resolves nothing', async () => {
    await svc.create(TEAM, headers('mine', 'tok'), ADMIN)
    expect(await code(svc.get(OTHER, 'mine'))).toBe('credential_source_not_found')
    expect(await code(svc.update(OTHER, 'mine', headers('mine', 'x'), ADMIN))).toBe(
      'credential_source_not_found',
    )
    expect(await code(svc.delete(OTHER, 'mine', ADMIN))).toBe('credential_source_not_found')
    expect(await code(svc.resolve(OTHER, 'mine'))).toBe('credential_source_not_found')
    expect((await svc.list(OTHER)).map((s) => s.name)).not.toContain('mine')
    // The same name in another team is another source.
    await svc.create(OTHER, headers('mine', 'theirs'), ADMIN)
    expect((await svc.resolve(TEAM, 'mine')).fields).toEqual({ token: 'tok' })
    expect((await svc.resolve(OTHER, 'mine')).fields).toEqual({ token: 'theirs' })
    await svc.delete(TEAM, 'mine', ADMIN)
    await svc.delete(OTHER, 'mine', ADMIN)
  })

  it('create of an existing name is a conflict; update of a missing one is not found', async () => {
    await svc.create(TEAM, headers('dup', 'a'), ADMIN)
    expect(await code(svc.create(TEAM, headers('dup', 'b'), ADMIN))).toBe('conflict')
    expect((await svc.resolve(TEAM, 'dup')).fields).toEqual({ token: 'a' })
    expect(await code(svc.update(TEAM, 'nope', headers('nope', 'b'), ADMIN))).toBe(
      'credential_source_not_found',
    )
    await svc.delete(TEAM, 'dup', ADMIN)
  })

  it('member keys read but do not write', async () => {
    await svc.create(TEAM, headers('roles', 'a'), ADMIN)
    expect(await code(svc.create(TEAM, headers('roles2', 'a'), MEMBER))).toBe('forbidden')
    expect(await code(svc.update(TEAM, 'roles', headers('roles', 'b'), MEMBER))).toBe('forbidden')
    expect(await code(svc.delete(TEAM, 'roles', MEMBER))).toBe('forbidden')
    expect((await svc.get(TEAM, 'roles')).currentVersion).toBe(1)
    await svc.delete(TEAM, 'roles', ADMIN)
  })

  it('the resolver kind is immutable', async () => {
    await svc.create(TEAM, headers('kind', 'a'), ADMIN)
    const write: CredentialSourceWrite = {
      name: 'kind',
      resolverKind: 'static_username_password',
      spec: { staticUsernamePassword: { username: 'u', password: 'p' } },
    }
    const err = await svc.update(TEAM, 'kind', write, ADMIN).catch((e: unknown) => e as Error)
    expect(isS0Error(err, 'invalid_request')).toBe(true)
    expect((err as Error).message).toMatch(/^resolverKind: is immutable/)
    expect((await svc.get(TEAM, 'kind')).currentVersion).toBe(1)
    await svc.delete(TEAM, 'kind', ADMIN)
  })

  it('accepts each kind, and offers its fields to templates', async () => {
    const tls = selfSignedCertificate()
    const ca = selfSignedCertificate('ca.test')
    const ssh = sshKeyPair({ passphrase: 'open sesame' })
    const writes: CredentialSourceWrite[] = [
      {
        name: 'k-up',
        resolverKind: 'static_username_password',
        spec: { staticUsernamePassword: { username: 'u', password: 'p' } },
      },
      {
        name: 'k-tls',
        resolverKind: 'static_tls_client_certificate',
        spec: {
          staticTLSClientCertificate: {
            certificatePem: tls.certPem,
            privateKeyPem: tls.keyPem,
            caPem: ca.certPem,
          },
        },
      },
      {
        name: 'k-ssh',
        resolverKind: 'static_ssh_private_key',
        spec: { staticSSHPrivateKey: { privateKeyPem: ssh.privateKey, passphrase: 'open sesame' } },
      },
      {
        name: 'k-ssh-plain',
        resolverKind: 'static_ssh_private_key',
        spec: { staticSSHPrivateKey: { privateKeyPem: sshKeyPair({ type: 'ecdsa' }).privateKey } },
      },
    ]
    for (const w of writes) await svc.create(TEAM, w, ADMIN)
    expect((await svc.resolve(TEAM, 'k-up')).fields).toEqual({ username: 'u', password: 'p' })
    expect((await svc.resolve(TEAM, 'k-tls')).fields).toEqual({
      certificatePem: tls.certPem,
      privateKeyPem: tls.keyPem,
      caPem: ca.certPem,
    })
    const r = await svc.resolve(TEAM, 'k-ssh')
    expect(r).toMatchObject({ kind: 'static_ssh_private_key', version: 1 })
    expect(r.fields).toEqual({ privateKeyPem: ssh.privateKey, passphrase: 'open sesame' })
    for (const w of writes) await svc.delete(TEAM, w.name, ADMIN)
  })

  it('refuses bad writes with the field named, storing nothing', async () => {
    const tls = selfSignedCertificate()
    const other = selfSignedCertificate('other.test')
    const ssh = sshKeyPair({ passphrase: 'right' })
    const cases: Array<[unknown, RegExp]> = [
      [{ ...headers('Bad_Name', 'x') }, /^name:/],
      [{ ...headers('x'.repeat(64), 'x') }, /^name:/],
      [{ name: 'a', resolverKind: 'static_vault', spec: {} }, /^resolverKind:/],
      [{ name: 'a', resolverKind: 'static_headers', spec: {} }, /^spec:/],
      [
        {
          name: 'a',
          resolverKind: 'static_headers',
          spec: { staticHeaders: { values: {} }, staticUsernamePassword: { username: 'u', password: 'p' } },
        },
        /^spec:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_headers',
          spec: { staticUsernamePassword: { username: 'u', password: 'p' } },
        },
        /^spec:/,
      ],
      [
        { name: 'a', resolverKind: 'static_headers', spec: { staticHeaders: { values: { t: 'a\r\nb' } } } },
        /^spec\.staticHeaders\.values\.t:/,
      ],
      [
        { name: 'a', resolverKind: 'static_headers', spec: { staticHeaders: { values: { t: 1 } } } },
        /^spec\.staticHeaders\.values\.t:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_headers',
          spec: { staticHeaders: { values: { 'bad key': 'v' } } },
        },
        /^spec\.staticHeaders\.values:/,
      ],
      [
        { name: 'a', resolverKind: 'static_headers', spec: { staticHeaders: { extra: 1 } } },
        /^spec\.staticHeaders\.extra:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_username_password',
          spec: { staticUsernamePassword: { username: 'u', password: '' } },
        },
        /^spec\.staticUsernamePassword\.password:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_username_password',
          spec: { staticUsernamePassword: { username: 'u'.repeat(256), password: 'p' } },
        },
        /^spec\.staticUsernamePassword\.username:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_tls_client_certificate',
          spec: { staticTLSClientCertificate: { certificatePem: 'not a pem', privateKeyPem: tls.keyPem } },
        },
        /^spec\.staticTLSClientCertificate\.certificatePem:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_tls_client_certificate',
          spec: {
            staticTLSClientCertificate: {
              certificatePem: tls.certPem.replace(/[A-Za-z]{8}\n/, 'AAAAAAAA\n'),
              privateKeyPem: tls.keyPem,
            },
          },
        },
        /^spec\.staticTLSClientCertificate\.certificatePem:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_tls_client_certificate',
          spec: { staticTLSClientCertificate: { certificatePem: tls.certPem, privateKeyPem: 'garbage' } },
        },
        /^spec\.staticTLSClientCertificate\.privateKeyPem:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_tls_client_certificate',
          spec: { staticTLSClientCertificate: { certificatePem: tls.certPem, privateKeyPem: other.keyPem } },
        },
        /^spec\.staticTLSClientCertificate\.privateKeyPem: does not match/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_tls_client_certificate',
          spec: {
            staticTLSClientCertificate: {
              certificatePem: tls.certPem,
              privateKeyPem: tls.keyPem,
              caPem: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----',
            },
          },
        },
        /^spec\.staticTLSClientCertificate\.caPem:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_ssh_private_key',
          spec: { staticSSHPrivateKey: { privateKeyPem: ssh.privateKey } },
        },
        /^spec\.staticSSHPrivateKey\.privateKeyPem:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_ssh_private_key',
          spec: { staticSSHPrivateKey: { privateKeyPem: ssh.privateKey, passphrase: 'wrong' } },
        },
        /^spec\.staticSSHPrivateKey\.privateKeyPem:/,
      ],
      [
        {
          name: 'a',
          resolverKind: 'static_ssh_private_key',
          spec: { staticSSHPrivateKey: { privateKeyPem: ssh.publicKey } },
        },
        /^spec\.staticSSHPrivateKey\.privateKeyPem:/,
      ],
    ]
    const before = await rowCounts()
    for (const [write, field] of cases) {
      const err = await svc.create(TEAM, write, ADMIN).catch((e: unknown) => e as Error)
      expect(
        isS0Error(err, 'invalid_request'),
        `${String(err)} for ${JSON.stringify(write).slice(0, 120)}`,
      ).toBe(true)
      expect((err as Error).message).toMatch(field)
      // Nothing secret is quoted back.
      for (const secret of [tls.keyPem, ssh.privateKey, 'a\r\nb', 'wrong'])
        expect((err as Error).message).not.toContain(secret)
    }
    expect(await rowCounts()).toEqual(before)
  })

  it('a source sealed under another key says so when resolved', async () => {
    await svc.create(TEAM, headers('keyed', 'tok'), ADMIN)
    const stranger = service(SecretKey.generate())
    expect(await code(stranger.resolve(TEAM, 'keyed'))).toBe('credential_decrypt_failed')
    // Metadata needs no key.
    expect((await stranger.get(TEAM, 'keyed')).currentVersion).toBe(1)
    await svc.delete(TEAM, 'keyed', ADMIN)
  })

  it('a sealed version copied onto another row does not open', async () => {
    await svc.create(TEAM, headers('src-a', 'secret-a'), ADMIN)
    await svc.create(TEAM, headers('src-b', 'secret-b'), ADMIN)
    await tdb.db.query(
      `UPDATE credential_source_versions v SET nonce = a.nonce, ciphertext = a.ciphertext, tag = a.tag
       FROM credential_source_versions a
       WHERE a.team_id = $1 AND a.name = 'src-a' AND v.team_id = $1 AND v.name = 'src-b'`,
      [TEAM],
    )
    const fresh = service()
    expect(await code(fresh.resolve(TEAM, 'src-b'))).toBe('credential_decrypt_failed')
    expect((await fresh.resolve(TEAM, 'src-a')).fields).toEqual({ token: 'secret-a' })
    await svc.delete(TEAM, 'src-a', ADMIN)
    await svc.delete(TEAM, 'src-b', ADMIN)
  })
})

describe('resolution cache', () => {
  it('a write or delete in this process takes effect on the next resolve', async () => {
    await svc.create(TEAM, headers('live', 'one'), ADMIN)
    expect((await svc.resolve(TEAM, 'live', { ttl: '5m' })).fields['token']).toBe('one')
    await svc.update(TEAM, 'live', headers('live', 'two'), ADMIN)
    const r = await svc.resolve(TEAM, 'live', { ttl: '5m' })
    expect(r).toMatchObject({ version: 2, fields: { token: 'two' } })
    await svc.delete(TEAM, 'live', ADMIN)
    expect(await code(svc.resolve(TEAM, 'live', { ttl: '5m' }))).toBe('credential_source_not_found')
  })

  it("another process's change is seen once the TTL (capped by the server) has passed", async () => {
    const writer = service()
    const reader = service()
    await writer.create(TEAM, headers('shared', 'one'), ADMIN)
    clockMs = 1_000_000
    expect((await reader.resolve(TEAM, 'shared', { ttl: '30s' })).fields['token']).toBe('one')
    await writer.update(TEAM, 'shared', headers('shared', 'two'), ADMIN)
    clockMs += 29_000
    expect((await reader.resolve(TEAM, 'shared', { ttl: '30s' })).fields['token']).toBe('one')
    clockMs += 1_001
    expect((await reader.resolve(TEAM, 'shared', { ttl: '30s' })).fields['token']).toBe('two')

    // A TTL beyond the server's cap is cut to the cap.
    await writer.update(TEAM, 'shared', headers('shared', 'three'), ADMIN)
    clockMs += limits.credentialCacheTtlMsMax
    expect((await reader.resolve(TEAM, 'shared', { ttl: '24h' })).fields['token']).toBe('three')
    // No cachePolicy: the default; `0` never reuses.
    await writer.update(TEAM, 'shared', headers('shared', 'four'), ADMIN)
    expect((await reader.resolve(TEAM, 'shared', { ttl: '0s' })).fields['token']).toBe('four')
    await writer.update(TEAM, 'shared', headers('shared', 'five'), ADMIN)
    expect((await reader.resolve(TEAM, 'shared')).fields['token']).toBe('four')
    clockMs += limits.credentialCacheTtlMsDefault
    expect((await reader.resolve(TEAM, 'shared')).fields['token']).toBe('five')

    await writer.delete(TEAM, 'shared', ADMIN)
    clockMs += limits.credentialCacheTtlMsDefault
    expect(await code(reader.resolve(TEAM, 'shared'))).toBe('credential_source_not_found')
  })

  it('a resolve in flight during a write does not cache the old version', async () => {
    await svc.create(TEAM, headers('race', 'old'), ADMIN)
    const inFlight = svc.resolve(TEAM, 'race', { ttl: '5m' })
    await svc.update(TEAM, 'race', headers('race', 'new'), ADMIN)
    await inFlight // whatever it read, it must not be remembered
    expect((await svc.resolve(TEAM, 'race', { ttl: '5m' })).fields['token']).toBe('new')
    await svc.delete(TEAM, 'race', ADMIN)
  })

  it('concurrent resolves share one load, and the cache is bounded', async () => {
    const small = new CredentialSourceService({
      db: tdb.db,
      key,
      log: silentLogger,
      cache: { entriesMax: 2, now: () => clockMs },
    })
    for (const n of ['c1', 'c2', 'c3']) await small.create(TEAM, headers(n, n), ADMIN)
    const [a, b] = await Promise.all([small.resolve(TEAM, 'c1'), small.resolve(TEAM, 'c1')])
    expect(a).toBe(b)
    await small.resolve(TEAM, 'c2')
    await small.resolve(TEAM, 'c3')
    expect(small.resolver.size).toBe(2)
    expect(Object.isFrozen(a.fields)).toBe(true)
    for (const n of ['c1', 'c2', 'c3']) await small.delete(TEAM, n, ADMIN)
  })

  it('resolveBinding projects the current version', async () => {
    await svc.create(TEAM, headers('bound', 'tok-1'), ADMIN)
    const binding = {
      ref: 'gh',
      sourceRef: 'bound',
      projection: {
        type: 'http_headers' as const,
        httpHeaders: { headers: [{ name: 'Authorization', valueTemplate: 'Bearer {{ .token }}' }] },
      },
      cachePolicy: { ttl: '1m' },
    }
    expect((await svc.resolveBinding(TEAM, binding)).projection).toEqual({
      type: 'http_headers',
      headers: [{ name: 'Authorization', value: 'Bearer tok-1' }],
    })
    await svc.update(TEAM, 'bound', headers('bound', 'tok-2'), ADMIN)
    const { credential, projection } = await svc.resolveBinding(TEAM, binding)
    expect(credential.version).toBe(2)
    expect(projection).toMatchObject({ headers: [{ value: 'Bearer tok-2' }] })
    expect(await code(svc.resolveBinding(TEAM, { ...binding, cachePolicy: { ttl: 'soon' } }))).toBe(
      'invalid_request',
    )
    await svc.delete(TEAM, 'bound', ADMIN)
  })
})
