// The sandbox API's edges against a real server and real sandboxes (runc, busybox template):
// bad input, team scoping, file-path escapes, templates CRUD, TTL expiry and reconcile at start.
import { randomBytes } from 'node:crypto'
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiKey } from '../../src/accounts/index.js'
import { SandboxService } from '../../src/sandboxes/index.js'
import { asTeamId, type SandboxId } from '../../src/core/ids.js'
import { listNetns } from '../../src/runtime/netns.js'
import { runCliOk } from '../../src/runtime/cli.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import path from 'node:path'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'
import { startSandboxServer, type SandboxTestServer } from './sandbox-fixture.js'
import { sdkError } from '../support/sdk.js'

let server: SandboxTestServer
let client: Client
let other: Client
let otherKey: string

beforeAll(async () => {
  server = await startSandboxServer({ sweepIntervalMs: 100 })
  client = new Client({ token: server.token, baseUrl: server.url })
  await server.t.tdb.db.query(`INSERT INTO teams (id, name) VALUES ('team-other', 'other')`)
  otherKey = (
    await createApiKey(server.t.tdb.db, { teamId: asTeamId('team-other'), name: 'o', role: 'member' })
  ).key
  other = new Client({ token: otherKey, baseUrl: server.url })
})

afterAll(async () => {
  await server?.close()
})

async function api(
  method: string,
  url: string,
  body?: unknown,
  opts: { token?: string; raw?: string | Buffer; type?: string } = {},
): Promise<{
  status: number
  json: { success: boolean; data?: unknown; error?: { code: string; message: string } }
}> {
  const headers: Record<string, string> = { authorization: `Bearer ${opts.token ?? server.token}` }
  let payload: string | Buffer | undefined
  if (opts.raw !== undefined) {
    payload = opts.raw
    headers['content-type'] = opts.type ?? 'application/octet-stream'
  } else if (body !== undefined) {
    payload = JSON.stringify(body)
    headers['content-type'] = 'application/json'
  }
  const res = await fetch(server.url + url, {
    method,
    headers,
    ...(payload !== undefined ? { body: payload } : {}),
  })
  return { status: res.status, json: (await res.json()) as never }
}

describe('sandbox API edges', () => {
  it('refuses bad input with clear 4xx errors', async () => {
    const cases: [unknown, number, string][] = [
      [{ template: 'no-such-template' }, 404, 'template_not_found'],
      [{ template: 'busybox', config: { resources: { memory: '1Ki' } } }, 400, 'invalid_request'],
      [{ template: 'busybox', config: { resources: { memory: 'lots' } } }, 400, 'invalid_request'],
      [{ template: 'busybox', config: { resources: { memory: '64Gi' } } }, 400, 'invalid_request'],
      [{ template: 'busybox', config: { ttl: -1 } }, 400, 'bad_request'],
      [{ template: 'busybox', config: { env_vars: { 'BAD-NAME': 'x' } } }, 400, 'bad_request'],
      [{ template: 'busybox', surprise: true }, 400, 'bad_request'],
      [{}, 400, 'bad_request'],
      [{ template: 'busybox', snapshot_id: 'x' }, 404, 'not_found'],
      [{ template: 'busybox', snapshot_id: 'rootfs-snapshot-0000000000' }, 404, 'not_found'],
    ]
    for (const [body, status, code] of cases) {
      const r = await api('POST', '/api/v1/sandboxes', body)
      expect({ body, status: r.status, code: r.json.error?.code }).toEqual({ body, status, code })
    }
    expect((await api('GET', '/api/v1/sandboxes/NOT..valid')).json.error?.code).toBe('not_found')
    expect((await api('GET', `/api/v1/sandboxes/${'a'.repeat(100)}`)).status).toBe(400)
    expect((await api('GET', '/api/v1/sandboxes/sb-000000000000')).status).toBe(404)
    expect((await api('GET', '/api/v1/sandboxes', undefined, { token: 's0_' + 'x'.repeat(43) })).status).toBe(
      401,
    )
    expect((await api('GET', '/api/v1/sandboxes?limit=100000')).status).toBe(400)
    const huge = {
      template: 'busybox',
      config: { env_vars: Object.fromEntries(Array.from({ length: 1001 }, (_, i) => [`V${i}`, 'x'])) },
    }
    expect((await api('POST', '/api/v1/sandboxes', huge)).status).toBe(400)

    const sb = await client.sandboxes.claim('busybox')
    const base = `/api/v1/sandboxes/${sb.id}`
    expect((await api('POST', `${base}/contexts/ctx-00000000/exec`, { data: 'x' })).json.error?.code).toBe(
      'context_not_found',
    )
    const ctx = await sb.createContext({ type: 'cmd', cmd: { command: ['cat'] }, waitUntilDone: false })
    const big = await api('POST', `${base}/contexts/${ctx.id}/exec`, { data: 'x'.repeat(2 * 1024 * 1024) })
    expect(big.status).toBe(400)
    expect((await api('POST', `${base}/contexts/${ctx.id}/signal`, { signal: 'NOPE' })).status).toBe(400)
    expect((await api('POST', `${base}/contexts/${ctx.id}/resize`, { rows: 0, cols: 5 })).status).toBe(400)
    expect(
      (await api('POST', `${base}/contexts`, { type: 'repl', repl: { alias: 'cobol' } })).json.error?.code,
    ).toBe('invalid_request')
    expect((await api('POST', `${base}/contexts`, { type: 'cmd' })).status).toBe(400)
    // An interpreter the template lacks: the context reports the crash instead of hanging.
    const node = await api('POST', `${base}/contexts`, { type: 'repl', repl: { alias: 'node' } })
    expect(node.status).toBe(201)
    expect(node.json.data).toMatchObject({ running: false, state: 'crashed' })
    await client.sandboxes.delete(sb.id)
  })

  it("another team's sandbox is a 404 everywhere", async () => {
    const sb = await client.sandboxes.claim('busybox')
    const h = other.sandbox(sb.id)
    const calls: (() => Promise<unknown>)[] = [
      () => other.sandboxes.get(sb.id),
      () => other.sandboxes.status(sb.id),
      () => other.sandboxes.refresh(sb.id),
      () => other.sandboxes.delete(sb.id),
      () => h.cmd('echo hi'),
      () => h.readFile('/etc/passwd'),
      () => h.writeFile('/x', 'y'),
      () => h.listContexts(),
    ]
    for (const call of calls) expect((await sdkError(call())).statusCode).toBe(404)
    expect((await other.sandboxes.list()).sandboxes).toEqual([])
    expect((await client.sandboxes.get(sb.id)).status).toBe('running')
    await client.sandboxes.delete(sb.id)
  })

  it('updates memory live, env_vars for new processes, and ttl from now', async () => {
    const sb = await client.sandboxes.claim('busybox', { envVars: { A: '1' } })
    const limitFile = `/sys/fs/cgroup/memory/${server.cgroupPrefix}-runc/${sb.id}/memory.limit_in_bytes`
    expect(Number(await readFile(limitFile, 'utf8'))).toBe(256 * 1024 * 1024)
    const up = await client.sandboxes.updateMemory(sb.id, '512Mi')
    expect(up.resources?.memory).toBe('512Mi')
    expect(Number(await readFile(limitFile, 'utf8'))).toBe(512 * 1024 * 1024)
    await client.sandboxes.updateMemory(sb.id, '192Mi')
    expect(Number(await readFile(limitFile, 'utf8'))).toBe(192 * 1024 * 1024)
    expect((await sdkError(client.sandboxes.updateMemory(sb.id, '1Mi'))).statusCode).toBe(400)
    expect((await sb.cmd('sh -c "echo A=$A B=$B"')).stdout).toBe('A=1 B=\n')
    await client.sandboxes.update(sb.id, { config: { envVars: { B: '2' }, ttl: 300 } })
    expect((await sb.cmd('sh -c "echo B=$B"')).stdout).toBe('B=2\n')
    const got = await client.sandboxes.get(sb.id)
    expect(got.expiresAt.getTime()).toBeGreaterThan(Date.now() + 250_000)
    // No hard ttl: the required timestamp carries the zero value ("not set" in the contract).
    expect(got.hardExpiresAt.toISOString()).toBe('0001-01-01T00:00:00.000Z')
    await client.sandboxes.delete(sb.id)
  })

  it('keeps file paths inside the sandbox root file system', async () => {
    const sb = await client.sandboxes.claim('busybox')
    const base = `/api/v1/sandboxes/${sb.id}/files`
    const hostDir = `/var/s0-escape-${randomBytes(4).toString('hex')}`
    // A host file this test makes, so the links below point at something that exists on the host:
    // a 404 then proves the path was resolved inside the sandbox, not that the target is missing.
    const secretDir = await mkdtemp(path.join(os.tmpdir(), 's0-escape-'))
    const secret = path.join(secretDir, 'secret.txt')
    await writeFile(secret, 'host secret')
    expect(await readFile(secret, 'utf8')).toBe('host secret')
    const rel = '../'.repeat(16) + secret.slice(1)
    const setup = await sb.cmd(
      `sh -c "ln -s ${secret} /root/abs && ln -s ${rel} /root/rel && ln -s / /root/top && ln -s ${hostDir} /root/d && mknod /root/null c 1 3 && mkfifo /root/fifo && echo ok"`,
    )
    expect(setup.stdout).toBe('ok\n')
    for (const p of ['/../etc/passwd', '/root/../../etc/passwd', 'a/../../b']) {
      const r = await api('GET', `${base}?path=${encodeURIComponent(p)}`)
      expect({ p, status: r.status, code: r.json.error?.code }).toEqual({
        p,
        status: 400,
        code: 'invalid_path',
      })
    }
    for (const p of ['/root/abs', '/root/rel']) {
      const err = await sdkError(sb.readFile(p))
      expect({ p, status: err.statusCode, code: err.code }).toEqual({
        p,
        status: 404,
        code: 'file_not_found',
      })
    }
    // The sandbox's /proc is its own kernel file system: not reachable, and said so.
    for (const p of ['/proc/self/root/etc/passwd', '/root/top/proc/1/root/etc/hostname']) {
      const err = await sdkError(sb.readFile(p))
      expect({ p, status: err.statusCode, code: err.code }).toEqual({ p, status: 501, code: 'not_supported' })
    }
    // Symlinks resolve inside the sandbox: "/" is the sandbox's root, never the host's.
    const passwd = Buffer.from(await sb.readFile('/root/top/etc/passwd')).toString()
    expect(passwd).toBe('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n')
    await sb.writeFile('/root/d/x.txt', 'contained')
    await expect(access(hostDir)).rejects.toThrow()
    expect((await sb.cmd(`cat ${hostDir}/x.txt`)).stdout).toBe('contained')
    // Only regular files are opened: a device node or a FIFO made inside is refused, not read.
    expect((await sdkError(sb.readFile('/root/null'))).code).toBe('path_not_file')
    expect((await sdkError(sb.readFile('/root/fifo'))).code).toBe('path_not_file')
    expect((await sdkError(sb.writeFile('/root', 'x'))).code).toBe('path_not_file')
    expect((await sdkError(sb.deleteFile('/'))).statusCode).toBe(400)
    const tooBig = await api('POST', `${base}?path=/root/big.bin`, undefined, {
      raw: Buffer.alloc(101 * 1024 * 1024),
    })
    expect({ status: tooBig.status, code: tooBig.json.error?.code }).toEqual({
      status: 413,
      code: 'file_too_large',
    })
    expect(
      (await sb.listFiles('/root'))
        .map((f) => f.name ?? '')
        .filter((n) => n.startsWith('.s0-upload') || n === 'big.bin'),
    ).toEqual([])
    const link = await sb.statFile('/root/abs')
    expect(link).toMatchObject({ type: 'symlink', isLink: true, linkTarget: secret })
    await client.sandboxes.delete(sb.id)
    await rm(secretDir, { recursive: true, force: true })
  })

  it('serves templates: built-ins read-only, team templates private, claims from them', async () => {
    const list = await client.templates.list()
    expect(list.map((t) => t.templateId)).toEqual(expect.arrayContaining(['default', 'busybox']))
    const def = await client.templates.get('default')
    expect(def.scope).toBe('public')
    expect(def.spec.volumeMounts?.map((m) => m.mountPath)).toContain('/workspace/data')
    expect((await sdkError(client.templates.delete('default'))).statusCode).toBe(403)

    const created = await client.templates.create({
      templateId: 'tiny',
      spec: {
        displayName: 'Tiny',
        mainContainer: { image: 's0/busybox', resources: { memory: '128Mi' } },
        envVars: { GREETING: 'hi' },
      },
    })
    expect(created.scope).toBe('team')
    expect((await sdkError(client.templates.create({ templateId: 'tiny', spec: {} }))).statusCode).toBe(409)
    const badMem = client.templates.create({
      templateId: 'bad',
      spec: { mainContainer: { image: 's0/busybox', resources: { memory: '12' } } },
    })
    expect((await sdkError(badMem)).statusCode).toBe(400)
    const badImage = client.templates.create({
      templateId: 'bad',
      // A malformed reference (registry images are pulled: test/templates/registry-images.test.ts).
      spec: { mainContainer: { image: 'docker.io/library/Ubuntu', resources: { memory: '1Gi' } } },
    })
    expect((await sdkError(badImage)).statusCode).toBe(400)
    expect((await sdkError(other.templates.get('tiny'))).statusCode).toBe(404)
    expect((await sdkError(other.sandboxes.claim('tiny'))).code).toBe('template_not_found')

    const sb = await client.sandboxes.claim('tiny')
    expect((await sb.cmd('sh -c "echo $GREETING"')).stdout).toBe('hi\n')
    const limit = await readFile(
      `/sys/fs/cgroup/memory/${server.cgroupPrefix}-runc/${sb.id}/memory.limit_in_bytes`,
      'utf8',
    )
    expect(Number(limit)).toBe(128 * 1024 * 1024)
    await client.sandboxes.delete(sb.id)
    const updated = await client.templates.update('tiny', {
      spec: { mainContainer: { image: 's0/busybox', resources: { memory: '256Mi' } } },
    })
    expect(updated.spec.mainContainer?.resources.memory).toBe('256Mi')
    await client.templates.delete('tiny')
    expect((await sdkError(client.templates.get('tiny'))).statusCode).toBe(404)

    // s0 extension: a template may pick the OCI runtime (the SDK drops unknown spec fields: raw HTTP).
    const spec = {
      mainContainer: { image: 's0/busybox', resources: { memory: '128Mi' } },
      runtime: { driver: 'crun' },
    }
    expect((await api('POST', '/api/v1/templates', { template_id: 'on-crun', spec })).status).toBe(201)
    const onCrun = await client.sandboxes.claim('on-crun')
    expect((await onCrun.cmd('echo via crun')).stdout).toBe('via crun\n')
    const got = await api('GET', `/api/v1/sandboxes/${onCrun.id}`)
    expect(got.json.data).toMatchObject({ runtime: { driver: 'crun' } })
    await client.sandboxes.delete(onCrun.id)
  })

  it('keeps state in a node REPL context (default template)', async () => {
    const sb = await client.sandboxes.claim('default')
    await sb.run('node', 'let x = 41')
    expect((await sb.run('node', 'x + 1')).outputRaw).toBe('42\n')
    await client.sandboxes.delete(sb.id)
  }, 60_000)

  it('a call that comes as a pause ends waits for it, then wakes the sandbox (auto_resume)', async () => {
    const sb = await client.sandboxes.claim('busybox')
    await sb.writeFile('/root/p.txt', 'kept')
    const pausing = client.sandboxes.pause(sb.id)
    // The row says paused a moment before the pause has finished: call right then.
    const deadline = Date.now() + 30_000
    while ((await client.sandboxes.get(sb.id)).status === 'running' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10))
    expect((await sb.cmd('cat /root/p.txt')).stdout).toBe('kept')
    await pausing
    expect((await client.sandboxes.get(sb.id)).status).toBe('running')
    await client.sandboxes.delete(sb.id)
  }, 60_000)

  it('pauses a sandbox when its ttl expires (a later call wakes it, files kept) and deletes it at hard_ttl', async () => {
    const soft = await client.sandboxes.claim('busybox', { ttl: 1 })
    await soft.writeFile('/root/before-ttl.txt', 'still here')
    const hard = await client.sandboxes.claim('busybox', { hardTtl: 1 })
    const deadline = Date.now() + 15_000
    let s = await client.sandboxes.get(soft.id)
    while (s.status === 'running' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100))
      s = await client.sandboxes.get(soft.id)
    }
    expect(s.status).toBe('paused')
    expect(s.paused).toBe(true)
    const raw = await api('GET', `/api/v1/sandboxes/${soft.id}`)
    expect((raw.json.data as { status_reason: string }).status_reason).toMatch(/its ttl expired/)
    // auto_resume (the default): the call wakes it, in a new runtime generation, with its files.
    const out = await soft.cmd('cat /root/before-ttl.txt')
    expect(out.stdout).toBe('still here')
    const after = await client.sandboxes.get(soft.id)
    expect(after.status).toBe('running')
    expect(after.runtimeGeneration).toBe(s.runtimeGeneration + 1)
    while ((await client.sandboxes.get(hard.id).catch(() => undefined)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100))
    expect((await sdkError(client.sandboxes.get(hard.id))).statusCode).toBe(404)
    await client.sandboxes.delete(soft.id)
  }, 60_000)

  it('reconciles at start: adopts running sandboxes, fails lost ones, removes leaks', async () => {
    const sb = await client.sandboxes.claim('busybox')
    await sb.writeFile('/root/keep.txt', 'kept')
    await server.t.tdb.db.query(
      `INSERT INTO sandboxes (id, team_id, template_id, status, config, driver, host)
       VALUES ('sb-lost00000000', 'team-x', 'busybox', 'running', '{}', 'runc', $1)`,
      [server.hostId],
    )
    const leak = `${server.netnsPrefix}r-sb-leak00000000`
    await runCliOk('ip', ['netns', 'add', leak])
    // A second service on the same state: what a restarted server does.
    const again = await SandboxService.open({
      db: server.t.tdb.db,
      templates: new TemplateStore({ dir: TEMPLATE_CACHE_DIR }),
      stateDir: path.join(server.stateDir, 'runtime'),
      hostId: server.hostId,
      preference: ['runc'],
      cgroupPrefix: server.cgroupPrefix,
      netnsPrefix: server.netnsPrefix,
    })
    try {
      const teamId = asTeamId('team-x')
      expect((await again.get(teamId, 'sb-lost00000000')).status).toBe('failed')
      expect(await listNetns(server.netnsPrefix)).not.toContain(leak)
      const row = await server.t.tdb.db.query<{ team_id: string }>(
        'SELECT team_id FROM sandboxes WHERE id = $1',
        [sb.id],
      )
      const owner = asTeamId(row.rows[0]?.team_id as string)
      expect((await again.running(owner, sb.id)).status).toBe('running')
      const ctx = await again.contexts.create(sb.id as SandboxId, {
        type: 'cmd',
        command: ['cat', '/root/keep.txt'],
        env: {},
      })
      await ctx.waitExit()
      expect(ctx.result().stdout).toBe('kept')
    } finally {
      await again.close()
    }
    await client.sandboxes.delete(sb.id)
  })
})
