// Egress end to end (official SDK and raw API, runc, the `default` template's python3 and curl):
// sandboxes on the sandbox network of a real server, an "upstream" network namespace standing in
// for the internet (HTTP, HTTPS, TCP, UDP echo servers and a DNS server, reached by names from a
// hosts file and S0_EGRESS_RESOLVER). Policies allow and deny by domain, suffix, CIDR and port,
// in rule order and by the legacy lists; denials are audited; every bypass we know of is tried
// from inside (raw addresses, fronting by Host and SNI, other DNS servers, DNS over TCP, UDP,
// IPv6, the metadata address, the host, another sandbox, raw sockets). Live updates, pause and
// resume, fork, template defaults, credential injection over HTTP and HTTPS (the sandbox trusts
// its own CA), and bad input.
import { execFileSync } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCa, issueLeaf } from '../../src/egress/tls/x509.js'
import { apiCall, startSandboxServer, type Json, type SandboxTestServer } from '../api/sandbox-fixture.js'
import { selfSignedCertificate, sshKeyPair } from '../support/credential-fixtures.js'
import { startSocks5Server } from '../support/socks5-server.js'
import { createUpstream, type Upstream, type UpstreamServer } from '../support/upstream.js'
import { generateEd25519 } from '../../src/core/ssh-keygen.js'

let up: Upstream
let server: SandboxTestServer
let client: Client
const servers: Record<string, UpstreamServer> = {}
let dir: string

const SECRET = 'tok-e2e-5f1c0b9a7d' // a credential value: must never be seen inside a sandbox
const SECRET2 = 'key-e2e-77aa01c3'
const clientCert = selfSignedCertificate('agent-client')
const PROBE = '/root/probe.py' // in the root file system: kept by pause and fork

const rulesPolicy = (other: string): Json => ({
  mode: 'block-all',
  egress: {
    trafficRules: [
      { name: 'no-blocked', action: 'deny', domains: ['blocked.test'] },
      { name: 'web', action: 'allow', domains: ['*.allowed.test'], ports: [{ port: 80 }, { port: 443 }] },
      { name: 'echo', action: 'allow', cidrs: [`${other}/32`], ports: [{ port: 7000 }] },
      { name: 'udp-echo', action: 'allow', cidrs: [`${other}/32`], ports: [{ port: 9000, protocol: 'udp' }] },
    ],
  },
})

beforeAll(async () => {
  up = await createUpstream()
  dir = path.dirname(up.hostsFile)
  // The destinations' own CA (the proxy trusts it through S0_EGRESS_CA_FILE); the sandbox never
  // sees it: it trusts only its own CA, which the proxy signs with.
  const upstreamCa = createCa('upstream test CA')
  const leaf = issueLeaf(upstreamCa, ['api.allowed.test', 'cdn.allowed.test', 'blocked.test', 'other.test'])
  await writeFile(path.join(dir, 'ca.pem'), upstreamCa.certPem)
  await writeFile(path.join(dir, 'leaf.pem'), leaf.certPem + leaf.keyPem)
  servers.http = await up.start('http-echo', { port: 80 })
  servers.https = await up.start('https-echo', { port: 443, args: [path.join(dir, 'leaf.pem')] })
  // mTLS: a client certificate signed by client.pem's (self-signed) key is required.
  await writeFile(path.join(dir, 'client.pem'), clientCert.certPem)
  servers.mtls = await up.start('https-echo', {
    port: 8443,
    args: [path.join(dir, 'leaf.pem'), path.join(dir, 'client.pem')],
  })
  servers.tcp = await up.start('tcp-echo', { port: 7000 })
  servers.tcp2 = await up.start('tcp-echo', { port: 7001 })
  servers.udp = await up.start('udp-echo', { port: 9000 })
  servers.udp2 = await up.start('udp-echo', { port: 9001 })
  servers.dns = await up.start('dns', { port: 53, args: [`dns-only.test=${up.address('other.test')}`] })
  server = await startSandboxServer({
    network: {
      hostsFile: up.hostsFile,
      resolver: `${up.address('other.test')}:53`,
      upstreamCaFile: path.join(dir, 'ca.pem'),
    },
  })
  client = new Client({ token: server.token, baseUrl: server.url })
}, 300_000)

afterAll(async () => {
  await server?.close()
  await up?.cleanup()
})

async function claim(network?: Json, template = 'default'): Promise<string> {
  const r = await apiCall(server, 'POST', '/sandboxes', {
    template,
    ...(network ? { config: { network } } : {}),
  })
  expect(r.status, JSON.stringify(r.json)).toBe(201)
  const id = r.json.data.sandbox_id as string
  await client.sandbox(id).writeFile(PROBE, await readFile(path.join(import.meta.dirname, 'probe.py')))
  return id
}

async function probe(id: string, ...args: string[]): Promise<Json> {
  const r = await client.sandbox(id).cmd(`python3 ${PROBE} ${args.join(' ')}`)
  const line = r.stdout.trim().split('\n').at(-1) ?? ''
  try {
    return JSON.parse(line)
  } catch {
    throw new Error(`probe ${args.join(' ')}: ${r.stdout} ${r.stderr}`)
  }
}

/** Connections the upstream servers saw from anything but the host's proxy / resolver address. */
function direct(): string[] {
  return Object.values(servers)
    .flatMap((s) => s.events)
    .filter((e) => e.remoteAddress !== up.hostAddress)
    .map((e) => `${e.kind} from ${e.remoteAddress}`)
}

async function audit(id: string): Promise<Json[]> {
  await server.events.flush()
  const r = await server.t.tdb.db.query(
    `SELECT action, outcome, attributes FROM sandbox_events WHERE sandbox_id = $1 AND event_type = 'network_audit' ORDER BY seq`,
    [id],
  )
  return r.rows
}

async function addressOf(id: string): Promise<string> {
  const att = server.egress?.network.attachmentOf(id)
  if (!att) throw new Error(`sandbox ${id} has no network`)
  return att.address
}

describe('egress policy end to end', () => {
  let a: string // rulesPolicy
  let b: string // allow-all with legacy denied lists
  let other: string
  let blocked: string
  let api: string

  beforeAll(async () => {
    other = up.address('other.test')
    blocked = up.address('blocked.test')
    api = up.address('api.allowed.test')
    a = await claim(rulesPolicy(other))
    b = await claim({
      mode: 'allow-all',
      egress: { deniedDomains: ['blocked.test'], deniedPorts: [{ port: 7001 }] },
    })
  }, 120_000)

  it('a sandbox without a policy has no network: names do not resolve, nothing connects', async () => {
    const c = await claim()
    expect(await probe(c, 'dns', 'api.allowed.test')).toEqual({ rcode: 3, ips: [] })
    expect((await probe(c, 'udp', up.address('other.test'), '9000')).error).toBe('timeout')
    expect((await probe(c, 'tcp', api, '80')).error).toBeDefined()
    expect((await probe(c, 'http', `http://${api}/`)).status ?? 0).not.toBe(200)
    expect(direct()).toEqual([])
    const events = await audit(c)
    expect(events.some((e) => e.outcome === 'denied' && e.action === 'connect')).toBe(true)
    expect(events.some((e) => e.outcome === 'denied' && e.action === 'dns_query')).toBe(true)
    await client.sandboxes.delete(c)
  })

  it('rules allow by suffix and port and by CIDR, deny first, and an HTTP denial names its rule', async () => {
    expect(await probe(a, 'dns', 'api.allowed.test')).toEqual({ rcode: 0, ips: [api] })
    expect(await probe(a, 'dns', 'blocked.test')).toEqual({ rcode: 3, ips: [] })
    const ok = await probe(a, 'http', 'http://api.allowed.test/x')
    expect(ok.status, JSON.stringify(ok)).toBe(200)
    expect(JSON.parse(ok.body)).toMatchObject({ path: '/x', headers: { host: 'api.allowed.test' } })
    expect((await probe(a, 'http', 'http://cdn.allowed.test/')).status).toBe(200)
    // Allowed names, not allowed ports; the CIDR rule's port only.
    expect((await probe(a, 'tcp', 'api.allowed.test', '7000')).error).toBeDefined()
    expect(await probe(a, 'tcp', other, '7000')).toEqual({ echo: 'ping\n' })
    expect((await probe(a, 'tcp', other, '7001')).error).toBeDefined()
    // blocked.test by its address and its own Host: the deny rule, named in a 403.
    const denied = await probe(a, 'raw_http', blocked, '80', 'blocked.test')
    expect(denied.response).toMatch(/^HTTP\/1\.1 403/)
    expect(denied.response).toContain('no-blocked')
    const events = await audit(a)
    expect(events).toContainEqual(
      expect.objectContaining({
        outcome: 'denied',
        attributes: expect.objectContaining({ rule: expect.stringContaining('no-blocked') }),
      }),
    )
    expect(events).toContainEqual(expect.objectContaining({ outcome: 'succeeded', action: 'connect' }))
    expect(direct()).toEqual([])
  })

  it('UDP other than DNS: forwarded where a rule allows it (replies come back), audited, else dropped', async () => {
    expect(await probe(a, 'udp', other, '9000')).toEqual({ echo: 'hello-udp' })
    expect((await probe(a, 'udp', other, '9001')).error).toBe('timeout')
    expect(servers.udp2?.events).toEqual([])
    const events = await audit(a)
    const udp = events.filter((e) => e.attributes.destination.transport === 'udp')
    expect(udp).toContainEqual(
      expect.objectContaining({
        outcome: 'succeeded',
        attributes: expect.objectContaining({ rule: expect.stringContaining('udp-echo') }),
      }),
    )
    expect(udp).toContainEqual(expect.objectContaining({ outcome: 'denied' }))
    expect(direct()).toEqual([])
  })

  it('the legacy lists: allow-all minus denied domains and ports', async () => {
    expect((await probe(b, 'http', 'http://api.allowed.test/')).status).toBe(200)
    expect(await probe(b, 'tcp', other, '7000')).toEqual({ echo: 'ping\n' })
    expect((await probe(b, 'tcp', other, '7001')).error).toBeDefined()
    expect((await probe(b, 'raw_http', blocked, '80', 'blocked.test')).response).toMatch(/^HTTP\/1\.1 403/)
    // Names the hosts file does not know go to S0_EGRESS_RESOLVER.
    expect(await probe(b, 'dns', 'dns-only.test')).toEqual({ rcode: 0, ips: [other] })
  })

  it('no bypass: fronting, raw addresses, other resolvers, DNS over TCP, UDP, IPv6, raw sockets', async () => {
    const before = servers.http?.events.length ?? 0
    // An allowed Host or SNI on a connection to a denied address fronts for it: refused.
    const fronted = await probe(a, 'raw_http', blocked, '80', 'api.allowed.test')
    expect(fronted.response ?? fronted.error).not.toContain('"host":"api.allowed.test"')
    expect(fronted.response ?? '').not.toMatch(/^HTTP\/1\.1 200/)
    expect((await probe(a, 'tls_sni', blocked, '443', 'api.allowed.test')).response ?? '').not.toMatch(/200/)
    expect(servers.http?.events.length).toBe(before)
    // Any DNS server a sandbox names is ours: the same policy answers.
    expect(await probe(a, 'dns', 'blocked.test', '203.0.113.53')).toEqual({ rcode: 3, ips: [] })
    expect(await probe(a, 'dns', 'api.allowed.test', '203.0.113.53')).toEqual({ rcode: 0, ips: [api] })
    // DNS over TCP to the real server is a TCP connection like any other: not allowed here.
    expect((await probe(a, 'dns', 'dns-only.test', other, 'tcp')).error).toBeDefined()
    // IPv6 is not routed; no raw sockets.
    expect((await probe(b, 'tcp6', '2001:db8::1', '80')).error).toBeDefined()
    expect((await probe(a, 'raw_socket')).error).toBe('Operation not permitted')
    expect(direct()).toEqual([])
  })

  it('even allow-all never reaches the metadata address, the host, or another sandbox', async () => {
    const apiPort = new URL(server.url).port
    const gateway = server.egress?.network.attachmentOf(b)?.gateway as string
    for (const [host, port] of [
      ['169.254.169.254', '80'],
      [gateway, apiPort],
      [up.hostAddress, apiPort],
      [await addressOf(a), '22'],
    ]) {
      const r = await probe(b, 'tcp', host as string, port as string)
      expect(r.error, `${host}:${port}`).toBeDefined()
    }
    // Its own loopback is its own: the host's API port is not there.
    expect((await probe(b, 'tcp', '127.0.0.1', apiPort)).error).toBe('refused')
  })

  it('a live update applies to new connections at once and resets open ones it now denies', async () => {
    const c = await claim(rulesPolicy(other))
    const sb = client.sandbox(c)
    await sb.cmd(`sh -c 'nohup python3 ${PROBE} hold ${other} 7000 /tmp/hold.log >/dev/null 2>&1 &'`)
    expect(await probe(c, 'udp', other, '9000')).toEqual({ echo: 'hello-udp' }) // a UDP flow, open
    const log = async (): Promise<string> => (await sb.cmd('cat /tmp/hold.log')).stdout
    // Until one echo came back: the proxy has decided (allowed) and the flow is open.
    for (let i = 0; i < 50 && !(await log()).includes('echoed'); i++) await sleep(100)
    expect(await log()).toBe('connected\nechoed\n')
    const next = {
      mode: 'block-all',
      egress: { trafficRules: [{ name: 'web', action: 'allow', domains: ['*.allowed.test'] }] },
    }
    const updated = await sb.updateNetworkPolicy(next as never)
    expect(updated).toMatchObject(next)
    expect(await sb.getNetworkPolicy()).toMatchObject(next)
    const t0 = Date.now()
    for (let i = 0; i < 30 && !/ended|closed/.test(await log()); i++) await sleep(100)
    expect(await log()).toMatch(/^connected\nechoed\n(ended reset|ended timeout|closed)\n$/)
    expect(Date.now() - t0).toBeLessThan(3_000)
    expect((await probe(c, 'tcp', other, '7000')).error).toBeDefined()
    expect((await probe(c, 'http', 'http://api.allowed.test/')).status).toBe(200)
    // The UDP flow the first policy allowed ended with the change, audited with its bytes.
    const revoked = (await audit(c)).filter((e) => e.action === 'revoke')
    expect(revoked).toContainEqual(
      expect.objectContaining({
        attributes: expect.objectContaining({
          destination: expect.objectContaining({ transport: 'udp' }),
          bytes_out: 9,
          bytes_in: 9,
        }),
      }),
    )
    expect(revoked).toContainEqual(
      expect.objectContaining({
        attributes: expect.objectContaining({ destination: expect.objectContaining({ transport: 'tcp' }) }),
      }),
    )
    await client.sandboxes.delete(c)
  })

  it('bad input changes nothing: an invalid policy, a binding to no source', async () => {
    const bad = await apiCall(server, 'PUT', `/sandboxes/${a}/network`, { mode: 'allow-some' })
    expect(bad.status).toBe(400)
    const noSource = await apiCall(server, 'PUT', `/sandboxes/${a}/network`, {
      mode: 'allow-all',
      credentialBindings: [
        {
          ref: 'x',
          sourceRef: 'no-such-source',
          projection: {
            type: 'http_headers',
            httpHeaders: { headers: [{ name: 'X', valueTemplate: '{{ .v }}' }] },
          },
        },
      ],
    })
    expect(noSource.status).toBe(400)
    expect(noSource.json.error.message).toContain('no-such-source')
    for (const [policy, field] of [
      [{ mode: 'block-all', egress: { allowedCidrs: ['10.0.0.0/33'] } }, 'allowedCidrs[0]'],
      [
        {
          mode: 'block-all',
          egress: { allowedDomains: ['a.test'], trafficRules: [{ action: 'allow', domains: ['b.test'] }] },
        },
        'trafficRules',
      ],
      [
        {
          mode: 'allow-all',
          credentialBindings: [{ ref: 'x', sourceRef: 'api-token', projection: { type: 'magic' } }],
        },
        'projection',
      ],
    ] as const) {
      const r = await apiCall(server, 'PUT', `/sandboxes/${a}/network`, policy)
      expect(r.status, JSON.stringify(policy)).toBe(400)
      expect(r.json.error.message).toContain(field)
    }
    expect((await apiCall(server, 'GET', `/sandboxes/${a}/network`)).json.data).toEqual(rulesPolicy(other))
    expect((await probe(a, 'http', 'http://api.allowed.test/')).status).toBe(200)
  })

  it('the template gives the default, a claim overrides it, pause/resume and fork keep it', async () => {
    await client.templates.create({
      templateId: 'net-default',
      spec: {
        mainContainer: { image: 's0/default', resources: { memory: '512Mi' } },
        network: { mode: 'block-all', egress: { allowedDomains: ['cdn.allowed.test'] } },
      } as never,
    })
    const t = await claim(undefined, 'net-default')
    expect((await client.sandbox(t).getNetworkPolicy()).egress?.allowedDomains).toEqual(['cdn.allowed.test'])
    expect((await probe(t, 'http', 'http://cdn.allowed.test/')).status).toBe(200)
    expect((await probe(t, 'http', 'http://api.allowed.test/')).error).toBeDefined()
    const o = await claim(
      { mode: 'block-all', egress: { allowedDomains: ['api.allowed.test'] } },
      'net-default',
    )
    expect((await probe(o, 'http', 'http://api.allowed.test/')).status).toBe(200)
    expect((await probe(o, 'http', 'http://cdn.allowed.test/')).error).toBeDefined()

    await client.sandboxes.pauseAndWait(o)
    await client.sandboxes.resumeAndWait(o)
    expect((await probe(o, 'http', 'http://api.allowed.test/')).status).toBe(200)
    expect((await probe(o, 'http', 'http://cdn.allowed.test/')).error).toBeDefined()
    const forked = await client.sandboxes.fork(o)
    const f = forked.sandbox.id
    expect((await client.sandbox(f).getNetworkPolicy()).egress?.allowedDomains).toEqual(['api.allowed.test'])
    expect((await probe(f, 'http', 'http://api.allowed.test/')).status).toBe(200)
    expect((await probe(f, 'http', 'http://cdn.allowed.test/')).error).toBeDefined()
    for (const id of [t, o, f]) await client.sandboxes.delete(id)
  })
})

describe('credentials are injected outside the sandbox', () => {
  it('headers over HTTP and HTTPS (terminated with the sandbox CA); the secret never enters', async () => {
    await client.credentialSources.create({
      name: 'api-token',
      resolverKind: 'static_headers',
      spec: { staticHeaders: { values: { token: SECRET } } },
    })
    const id = await claim({
      mode: 'block-all',
      egress: {
        trafficRules: [{ name: 'web', action: 'allow', domains: ['*.allowed.test'] }],
        credentialRules: [
          { name: 'inject-http', credentialRef: 'tok', protocol: 'http', domains: ['api.allowed.test'] },
          {
            name: 'inject-https',
            credentialRef: 'tok',
            protocol: 'https',
            tlsMode: 'terminate-reoriginate',
            domains: ['api.allowed.test'],
          },
        ],
      },
      credentialBindings: [
        {
          ref: 'tok',
          sourceRef: 'api-token',
          projection: {
            type: 'http_headers',
            httpHeaders: { headers: [{ name: 'Authorization', valueTemplate: 'Bearer {{ .token }}' }] },
          },
        },
      ],
    })
    const plain = await probe(id, 'http', 'http://api.allowed.test/')
    expect(JSON.parse(plain.body).headers.authorization).toBe(`Bearer ${SECRET}`)
    // curl and python trust the sandbox's CA through the bundle and the variables it got.
    const sb = client.sandbox(id)
    const curl = await sb.cmd('curl -sS https://api.allowed.test/tls')
    expect(curl.stderr).toBe('')
    expect(JSON.parse(curl.stdout)).toMatchObject({
      path: '/tls',
      headers: { authorization: `Bearer ${SECRET}` },
    })
    const py = await probe(id, 'http', 'https://api.allowed.test/py')
    expect(JSON.parse(py.body).headers.authorization).toBe(`Bearer ${SECRET}`)
    // Not injected where no rule says so.
    expect(
      JSON.parse((await probe(id, 'http', 'http://cdn.allowed.test/')).body).headers.authorization,
    ).toBeUndefined()
    // Nowhere inside: not in the environment, not in any file the sandbox can read.
    const found = await sb.cmd(
      `sh -c 'cat /proc/1/environ /proc/self/environ | tr "\\0" "\\n" | grep -c ${SECRET}; grep -rl --exclude-dir=proc --exclude-dir=sys ${SECRET} / 2>/dev/null | head -3'`,
    )
    expect(found.stdout.trim()).toBe('0')
    await client.sandboxes.delete(id)
  })
})

describe('protocol rules see the requests', () => {
  it('HTTP methods and paths, MCP tools: denied ones get a 403 naming the rule', async () => {
    const id = await claim({
      mode: 'block-all',
      egress: {
        trafficRules: [{ name: 'web', action: 'allow', domains: ['*.allowed.test'] }],
        protocolRules: [
          {
            name: 'read-only',
            protocol: 'http',
            domains: ['api.allowed.test'],
            http: { methods: { denied: ['DELETE'] }, paths: { deniedPrefixes: ['/admin'] } },
          },
          {
            name: 'mcp-tools',
            protocol: 'mcp',
            domains: ['cdn.allowed.test'],
            mcp: { tools: { denied: ['delete_repo'] } },
          },
        ],
      },
    })
    expect((await probe(id, 'request', 'GET', 'http://api.allowed.test/ok')).status).toBe(200)
    const admin = await probe(id, 'request', 'GET', 'http://api.allowed.test/admin/x')
    expect(admin.status).toBe(403)
    expect(admin.body).toContain('read-only')
    expect((await probe(id, 'request', 'DELETE', 'http://api.allowed.test/x')).status).toBe(403)
    const call = (name: string): string =>
      `'${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: {} } })}'`
    const denied = await probe(id, 'request', 'POST', 'http://cdn.allowed.test/mcp', call('delete_repo'))
    expect(denied.status).toBe(403)
    expect(denied.body).toContain('mcp-tools')
    const ok = await probe(id, 'request', 'POST', 'http://cdn.allowed.test/mcp', call('list_repos'))
    expect(ok.status).toBe(200)
    expect(JSON.parse(JSON.parse(ok.body).body).params.name).toBe('list_repos')
    await client.sandboxes.delete(id)
  })
})

describe('more credential kinds: client certificates, placeholders, a SOCKS5 upstream with a login', () => {
  it('each is applied by the proxy; the sandbox holds only placeholders', async () => {
    await client.credentialSources.create({
      name: 'mtls',
      resolverKind: 'static_tls_client_certificate',
      spec: {
        staticTLSClientCertificate: { certificatePem: clientCert.certPem, privateKeyPem: clientCert.keyPem },
      },
    } as never)
    await client.credentialSources.create({
      name: 'api-key',
      resolverKind: 'static_headers',
      spec: { staticHeaders: { values: { key: SECRET2 } } },
    })
    await client.credentialSources.create({
      name: 'socks-login',
      resolverKind: 'static_username_password',
      spec: { staticUsernamePassword: { username: 'agent', password: 'pw-socks-1' } },
    })
    const socks = await startSocks5Server({
      host: '127.0.0.1',
      auth: { username: 'agent', password: 'pw-socks-1' },
    })
    try {
      const web = [{ name: 'web', action: 'allow', domains: ['*.allowed.test'] }]
      const bindings = [
        {
          ref: 'cert',
          sourceRef: 'mtls',
          projection: { type: 'tls_client_certificate', tlsClientCertificate: {} },
        },
        {
          ref: 'ph',
          sourceRef: 'api-key',
          projection: {
            type: 'placeholder_substitution',
            placeholderSubstitution: {
              replacements: [
                { placeholder: '__S0_KEY__', valueTemplate: '{{ .key }}', locations: ['header', 'query'] },
              ],
            },
          },
        },
      ]
      const id = await claim({
        mode: 'block-all',
        egress: {
          trafficRules: web,
          credentialRules: [
            {
              name: 'client-cert',
              credentialRef: 'cert',
              protocol: 'tls',
              tlsMode: 'terminate-reoriginate',
              domains: ['cdn.allowed.test'],
              ports: [{ port: 8443 }],
            },
            { name: 'key', credentialRef: 'ph', protocol: 'http', domains: ['api.allowed.test'] },
          ],
        },
        credentialBindings: bindings,
      })
      const sb = client.sandbox(id)
      // The destination demands a client certificate: only the proxy has it.
      const mtls = await sb.cmd('curl -sS https://cdn.allowed.test:8443/m')
      expect(mtls.stderr).toBe('')
      expect(JSON.parse(mtls.stdout)).toMatchObject({ path: '/m', clientCert: 'agent-client' })
      // Placeholders are swapped in the headers and the query the sandbox wrote.
      const ph = await probe(id, 'http', 'http://api.allowed.test/q?k=__S0_KEY__', 'X-Key:__S0_KEY__')
      expect(JSON.parse(ph.body)).toMatchObject({ path: `/q?k=${SECRET2}`, headers: { 'x-key': SECRET2 } })

      // Through an upstream SOCKS5 proxy that wants a login (from the source, never the sandbox).
      await sb.updateNetworkPolicy({
        mode: 'block-all',
        egress: {
          trafficRules: web,
          proxy: { type: 'socks5', address: `127.0.0.1:${socks.port}`, credentialRef: 'login' },
        },
        credentialBindings: [
          {
            ref: 'login',
            sourceRef: 'socks-login',
            projection: { type: 'username_password', usernamePassword: {} },
          },
        ],
      } as never)
      const via = await probe(id, 'http', 'http://api.allowed.test/socks')
      expect(via.status).toBe(200)
      expect(socks.requests.at(-1)).toMatchObject({ method: 2, username: 'agent', reply: 0 })
      const leaked = await sb.cmd(
        `sh -c 'grep -rl --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr -e ${SECRET2} -e pw-socks-1 -e "BEGIN PRIVATE KEY" / 2>/dev/null | head -3'`,
      )
      expect(leaked.stdout).toBe('')
      await client.sandboxes.delete(id)
    } finally {
      await socks.close()
    }
  })
})

describe('SSH re-origination', () => {
  it('the sandbox logs in with its own key; the proxy logs in upstream with the real one', async () => {
    const real = sshKeyPair() // the secret: only the credential source has its private half
    const host = generateEd25519()
    await writeFile(path.join(dir, 'ssh-host-key'), host.private)
    const ssh = await up.start('ssh', {
      port: 22,
      args: [path.join(dir, 'ssh-host-key'), real.publicKey, 'git'],
    })
    servers.ssh = ssh
    const sandboxKey = generateEd25519()
    await client.credentialSources.create({
      name: 'git-ssh',
      resolverKind: 'static_ssh_private_key',
      spec: { staticSSHPrivateKey: { privateKeyPem: real.privateKey } },
    } as never)
    const cdn = up.address('cdn.allowed.test')
    const id = await claim({
      mode: 'block-all',
      egress: {
        trafficRules: [
          { name: 'git', action: 'allow', domains: ['cdn.allowed.test'], ports: [{ port: 22 }] },
        ],
        credentialRules: [
          { name: 'git-login', credentialRef: 'ssh', protocol: 'ssh', domains: ['cdn.allowed.test'] },
        ],
      },
      credentialBindings: [
        {
          ref: 'ssh',
          sourceRef: 'git-ssh',
          projection: {
            type: 'ssh_proxy',
            sshProxy: {
              sandboxPublicKeys: [sandboxKey.public],
              upstreamUsername: 'git',
              knownHosts: [`cdn.allowed.test,${cdn} ${host.public}`],
            },
          },
        },
      ],
    })
    const sb = client.sandbox(id)
    // ssh2 (pure JS) and its dependencies, copied in as a tarball.
    const modules = path.join(import.meta.dirname, '..', '..', 'node_modules')
    const tar = execFileSync('tar', [
      '-C',
      modules,
      '-cz',
      'ssh2',
      'asn1',
      'bcrypt-pbkdf',
      'tweetnacl',
      'safer-buffer',
    ])
    await sb.mkdir('/root/ssh/node_modules', true)
    await sb.writeFile('/root/ssh/m.tgz', tar)
    await sb.cmd('tar -C /root/ssh/node_modules -xzf /root/ssh/m.tgz')
    await sb.writeFile(
      '/root/ssh/client.cjs',
      await readFile(path.join(import.meta.dirname, 'ssh-client.cjs')),
    )
    await sb.writeFile('/root/ssh/id', sandboxKey.private)
    const r = await sb.cmd(
      'node /root/ssh/client.cjs cdn.allowed.test 22 me /root/ssh/id "echo hello from upstream"',
    )
    const got = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}')
    expect(got, r.stderr).toMatchObject({ stdout: 'hello from upstream\n', code: 0 })
    // The sandbox saw the proxy's host key, not the upstream's; upstream saw the real key.
    expect(got.hostKey).not.toBe(host.public.split(' ')[1])
    expect(ssh.messages).toContainEqual({
      ssh: expect.objectContaining({ type: 'login', detail: expect.objectContaining({ username: 'git' }) }),
    })
    // A key the binding does not list is refused before anything upstream happens.
    const stranger = generateEd25519()
    await sb.writeFile('/root/ssh/other', stranger.private)
    const before = ssh.events.length
    const refused = await sb.cmd('node /root/ssh/client.cjs cdn.allowed.test 22 me /root/ssh/other true')
    expect(JSON.parse(refused.stdout.trim()).error).toBeDefined()
    expect(ssh.events.length).toBe(before)
    const leaked = await sb.cmd(
      `sh -c 'grep -rlF --exclude-dir=proc --exclude-dir=sys --exclude-dir=usr --exclude-dir=ssh "${real.privateKey.split('\n')[1]}" / 2>/dev/null | head -3'`,
    )
    expect(leaked.stdout).toBe('')
    await client.sandboxes.delete(id)
  })
})

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
