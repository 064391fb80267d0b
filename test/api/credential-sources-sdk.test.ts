// End to end with the official SDK (npm sandbox0@0.9.5, unchanged) against a listening server:
// client.credentialSources create/list/get/update/delete, roles, team scoping, bad input (400
// naming the field, nothing stored), and the secrets never coming back out: not in any response
// body or header, not in any log line (captured at debug level).
import { rm } from 'node:fs/promises'
import type { FastifyInstance } from 'fastify'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiKey } from '../../src/accounts/index.js'
import { buildServer } from '../../src/api/server.js'
import { loadConfig } from '../../src/core/config.js'
import { asTeamId } from '../../src/core/ids.js'
import { createLogger } from '../../src/core/log.js'
import { CredentialSourceService, loadSecretKey } from '../../src/egress/credentials/index.js'
import { selfSignedCertificate, sshKeyPair } from '../support/credential-fixtures.js'
import { sdkError } from '../support/sdk.js'
import { bootstrappedStateDir } from '../support/server.js'
import { openTestStore, type TestStore } from '../support/store.js'

let t: TestStore
let app: FastifyInstance
let stateDir: string
let url: string
let admin: Client
let member: Client
let stranger: Client
const logLines: string[] = []
/** Every response the clients received, headers and body, as text. */
const seen: string[] = []

const tls = selfSignedCertificate('mtls.client.test')
const ssh = sshKeyPair({ passphrase: 'ssh-passphrase-needle-77' })
const SECRETS = {
  token: 'ghp_needleTokenValue0123456789abcdef',
  rotated: 'ghp_rotatedNeedle9876543210fedcba',
  password: 'socks-password-needle-4242',
  passphrase: 'ssh-passphrase-needle-77',
}

async function recordingFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const res = await fetch(input, init)
  seen.push(JSON.stringify([...res.headers.entries()]) + (await res.clone().text()))
  return res
}

function client(token: string): Client {
  return new Client({ token, baseUrl: url, fetch: recordingFetch })
}

beforeAll(async () => {
  t = await openTestStore({ store: { diskCacheBytes: 0 } })
  const boot = await bootstrappedStateDir(t.tdb.db, 's0-cred-sdk-')
  stateDir = boot.stateDir
  const log = createLogger('debug', {}, (line) => void logLines.push(line))
  app = buildServer({
    db: t.tdb.db,
    chunkStore: t.store,
    credentials: new CredentialSourceService({ db: t.tdb.db, key: await loadSecretKey({ stateDir }), log }),
    config: loadConfig({ S0_STATE_DIR: stateDir }),
    log,
  })
  url = await app.listen({ host: '127.0.0.1', port: 0 })
  admin = client(boot.token)
  const { rows } = await t.tdb.db.query<{ team_id: string }>('SELECT team_id FROM api_keys LIMIT 1')
  const teamId = asTeamId((rows[0] as { team_id: string }).team_id)
  member = client((await createApiKey(t.tdb.db, { teamId, name: 'reader', role: 'member' })).key)
  const otherTeam = asTeamId('team-stranger')
  await t.tdb.db.query(`INSERT INTO teams (id, name) VALUES ($1, 'stranger')`, [otherTeam])
  stranger = client((await createApiKey(t.tdb.db, { teamId: otherTeam, name: 'x', role: 'admin' })).key)
})

afterAll(async () => {
  await app?.close()
  await t?.close()
  if (stateDir) await rm(stateDir, { recursive: true, force: true })
})

async function stored(): Promise<number> {
  const { rows } = await t.tdb.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM credential_source_versions',
  )
  return rows[0]?.n ?? -1
}

describe('sandbox0 SDK 0.9.5: credential sources', () => {
  it('create, list, get, update and delete every kind', async () => {
    const gh = await admin.credentialSources.create({
      name: 'github',
      resolverKind: 'static_headers',
      spec: { staticHeaders: { values: { token: SECRETS.token } } },
    })
    expect(gh).toMatchObject({
      name: 'github',
      resolverKind: 'static_headers',
      currentVersion: 1,
      status: 'active',
    })
    expect(gh.createdAt).toBeInstanceOf(Date)
    expect(Number.isNaN(gh.updatedAt?.getTime())).toBe(false)
    await admin.credentialSources.create({
      name: 'socks',
      resolverKind: 'static_username_password',
      spec: { staticUsernamePassword: { username: 'agent', password: SECRETS.password } },
    })
    await admin.credentialSources.create({
      name: 'mtls',
      resolverKind: 'static_tls_client_certificate',
      spec: { staticTLSClientCertificate: { certificatePem: tls.certPem, privateKeyPem: tls.keyPem } },
    })
    await admin.credentialSources.create({
      name: 'git-ssh',
      resolverKind: 'static_ssh_private_key',
      spec: { staticSSHPrivateKey: { privateKeyPem: ssh.privateKey, passphrase: SECRETS.passphrase } },
    })

    const list = await admin.credentialSources.list()
    expect(list.map((s) => `${s.name}:${s.resolverKind}:${s.currentVersion}`).sort()).toEqual([
      'git-ssh:static_ssh_private_key:1',
      'github:static_headers:1',
      'mtls:static_tls_client_certificate:1',
      'socks:static_username_password:1',
    ])
    for (const s of list)
      expect(Object.keys(s).sort()).toEqual([
        'createdAt',
        'currentVersion',
        'name',
        'resolverKind',
        'status',
        'updatedAt',
      ])
    expect((await admin.credentialSources.get('mtls')).resolverKind).toBe('static_tls_client_certificate')

    // The SDK forces the body's name to the path's.
    const rotated = await admin.credentialSources.update('github', {
      name: 'anything',
      resolverKind: 'static_headers',
      spec: { staticHeaders: { values: { token: SECRETS.rotated } } },
    })
    expect(rotated).toMatchObject({ name: 'github', currentVersion: 2 })
    expect((await admin.credentialSources.get('github')).currentVersion).toBe(2)

    const del = await admin.credentialSources.delete('socks')
    expect(del.data).toMatchObject({ message: expect.stringContaining('socks') })
    const gone = await sdkError(admin.credentialSources.get('socks'))
    expect(gone.statusCode).toBe(404)
    expect(gone.code).toBe('credential_source_not_found')
    expect((await admin.credentialSources.list()).map((s) => s.name)).not.toContain('socks')
  })

  it('a name taken is 409; a source of another team is 404 for every call', async () => {
    const dup = await sdkError(
      admin.credentialSources.create({
        name: 'github',
        resolverKind: 'static_headers',
        spec: { staticHeaders: { values: { token: 'x' } } },
      }),
    )
    expect(dup.statusCode).toBe(409)
    expect((await stranger.credentialSources.list()).map((s) => s.name)).toEqual([])
    expect((await sdkError(stranger.credentialSources.get('github'))).statusCode).toBe(404)
    const write = {
      name: 'github',
      resolverKind: 'static_headers' as const,
      spec: { staticHeaders: { values: {} } },
    }
    expect((await sdkError(stranger.credentialSources.update('github', write))).statusCode).toBe(404)
    expect((await sdkError(stranger.credentialSources.delete('github'))).statusCode).toBe(404)
    expect((await admin.credentialSources.get('github')).currentVersion).toBe(2)
  })

  it('member keys read the metadata but cannot write', async () => {
    expect((await member.credentialSources.list()).length).toBeGreaterThan(0)
    expect((await member.credentialSources.get('github')).name).toBe('github')
    const write = {
      name: 'm',
      resolverKind: 'static_headers' as const,
      spec: { staticHeaders: { values: {} } },
    }
    for (const call of [
      () => member.credentialSources.create(write),
      () => member.credentialSources.update('github', { ...write, name: 'github' }),
      () => member.credentialSources.delete('github'),
    ]) {
      const err = await sdkError(call())
      expect(err.statusCode).toBe(403)
      expect(err.code).toBe('forbidden')
    }
    expect((await admin.credentialSources.get('github')).currentVersion).toBe(2)
  })

  it('bad input is a 400 naming the field, and nothing is stored', async () => {
    const before = await stored()
    // Thunks: each call starts only when its turn comes.
    const cases: Array<[() => Promise<unknown>, RegExp]> = [
      [
        () =>
          admin.credentialSources.create({
            name: 'bad-kind',
            resolverKind: 'static_vault' as never,
            spec: { staticHeaders: { values: {} } },
          }),
        /resolverKind/,
      ],
      [
        () =>
          admin.credentialSources.create({
            name: 'two-members',
            resolverKind: 'static_headers',
            spec: {
              staticHeaders: { values: { token: 'x' } },
              staticUsernamePassword: { username: 'u', password: 'p' },
            },
          }),
        /spec/,
      ],
      [
        () =>
          admin.credentialSources.create({
            name: 'wrong-member',
            resolverKind: 'static_headers',
            spec: { staticUsernamePassword: { username: 'u', password: 'p' } },
          }),
        /spec\.staticHeaders/,
      ],
      [
        () =>
          admin.credentialSources.create({
            name: 'bad-pem',
            resolverKind: 'static_tls_client_certificate',
            spec: {
              staticTLSClientCertificate: {
                certificatePem: '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n',
                privateKeyPem: tls.keyPem,
              },
            },
          }),
        /spec\.staticTLSClientCertificate\.certificatePem/,
      ],
      [
        () =>
          admin.credentialSources.create({
            name: 'bad-key',
            resolverKind: 'static_ssh_private_key',
            spec: { staticSSHPrivateKey: { privateKeyPem: ssh.privateKey, passphrase: 'not-it' } },
          }),
        /spec\.staticSSHPrivateKey\.privateKeyPem/,
      ],
      [
        () =>
          admin.credentialSources.update('github', {
            name: 'github',
            resolverKind: 'static_username_password',
            spec: { staticUsernamePassword: { username: 'u', password: 'p' } },
          }),
        /resolverKind/,
      ],
      [
        () =>
          admin.credentialSources.create({
            name: 'Not A Label',
            resolverKind: 'static_headers',
            spec: { staticHeaders: { values: {} } },
          }),
        /name/,
      ],
    ]
    for (const [call, field] of cases) {
      const err = await sdkError(call())
      expect(err.statusCode, err.message).toBe(400)
      expect(['bad_request', 'invalid_request']).toContain(err.code)
      expect(err.message).toMatch(field)
    }
    expect(await stored()).toBe(before)
    expect((await admin.credentialSources.get('github')).currentVersion).toBe(2)
  })

  it('no secret ever comes back: not in a response, not in a log line', async () => {
    expect(seen.length).toBeGreaterThan(20)
    expect(logLines.length).toBeGreaterThan(20)
    expect(logLines.some((l) => l.includes('credential source created'))).toBe(true)
    const needles = [
      ...Object.values(SECRETS),
      tls.keyPem,
      ssh.privateKey,
      // The PEM bodies without their armour, and a line of each, in case something reformats them.
      ...[tls.keyPem, ssh.privateKey].map((p) => p.split('\n')[1] as string),
    ]
    for (const needle of needles) {
      for (const r of seen)
        expect(r.includes(needle), `response holds a secret: ${r.slice(0, 200)}`).toBe(false)
      for (const l of logLines)
        expect(l.includes(needle), `log line holds a secret: ${l.slice(0, 200)}`).toBe(false)
    }
  })
})
