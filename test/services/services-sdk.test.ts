// App services end to end with the official SDK (npm sandbox0@0.9.5), unchanged: a `cmd`
// service (`python3 -m http.server`) reached by its public URL through the ingress proxy, a
// `function` service answering JSON, clearServices, services at claim, wake-on-request of a
// paused sandbox, and a fork's services. Real server, runc sandboxes on the sandbox network, the Debian template.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hostOf, ingress, startServicesServer, until } from './support.js'

let server: Awaited<ReturnType<typeof startServicesServer>>
let client: Client

beforeAll(async () => {
  server = await startServicesServer()
  client = new Client({ token: server.token, baseUrl: server.url })
}, 120_000)

afterAll(async () => {
  await server?.cleanup()
})

const quick = { timeoutMs: 60_000, pollIntervalMs: 200 }

describe('sandbox0 SDK 0.9.5: services', () => {
  it('exposes a cmd service by its public URL, reports it, and clears it', async () => {
    const sandbox = await client.sandboxes.claim('default')
    await sandbox.writeFile('/srv/site/index.html', '<h1>hello from the sandbox</h1>')
    const updated = await sandbox.updateServices([
      {
        id: 'web',
        displayName: 'Web',
        port: 8000,
        runtime: { type: 'cmd', command: ['python3', '-m', 'http.server', '8000'], cwd: '/srv/site' },
        ingress: { _public: true, routes: [{ id: 'all', pathPrefix: '/', resume: true }] },
        healthCheck: { path: '/' },
      },
    ])
    expect(updated.sandboxId).toBe(sandbox.id)
    expect(updated.services[0]?.id).toBe('web')
    const port = new URL(server.url).port
    const view = await until(async () => {
      const v = await sandbox.getServices()
      return v.services[0]?.publishable ? v : undefined
    }, 'the service to be publishable')
    const web = view.services[0]
    expect(web?.publicUrl).toBe(`http://web--${sandbox.id}.localhost:${port}`)
    expect(web?.publishBlockers ?? []).toEqual([])

    const page = await ingress(server.url, hostOf(web?.publicUrl as string), '/')
    expect(page.status).toBe(200)
    expect(page.text).toBe('<h1>hello from the sandbox</h1>')
    // curl resolves *.localhost to loopback by itself: the URL works as printed, no DNS.
    const curl = await promisify(execFile)('curl', [
      '-sS',
      '--max-time',
      '20',
      `${web?.publicUrl}/index.html`,
    ])
    expect(curl.stdout).toBe('<h1>hello from the sandbox</h1>')

    // The Sandbox view carries the services too.
    const got = await client.sandboxes.get(sandbox.id)
    expect(got.services?.map((s) => s.id)).toEqual(['web'])

    const cleared = await sandbox.clearServices()
    expect(cleared.services).toEqual([])
    const gone = await ingress(server.url, hostOf(web?.publicUrl as string), '/')
    expect(gone.status).toBe(404)
    await client.sandboxes.delete(sandbox.id)
  })

  it('reports why a service is not publishable', async () => {
    const sandbox = await client.sandboxes.claim('default')
    await sandbox.updateServices([
      { id: 'nothing', port: 3000, runtime: { type: 'manual' }, ingress: { _public: true, routes: [] } },
      { id: 'private', port: 3001, ingress: { _public: false } },
    ])
    const v = await sandbox.getServices()
    const [nothing, priv] = v.services
    expect(nothing?.publishable).toBe(false)
    expect(nothing?.publishBlockers?.join(' ')).toContain('nothing listens on port 3000')
    expect(priv?.publicUrl).toBeUndefined()
    expect(priv?.publishBlockers?.join(' ')).toContain('ingress.public is false')
    // A private service has no URL: its host name is answered like an unknown one.
    const port = new URL(server.url).port
    const r = await ingress(server.url, `private--${sandbox.id}.localhost:${port}`, '/')
    expect(r.status).toBe(404)
    await client.sandboxes.delete(sandbox.id)
  })

  it('serves a function service answering JSON', async () => {
    const sandbox = await client.sandboxes.claim('default')
    const code = [
      'import json',
      'def handler(request):',
      '    name = request["query"].get("name", "world")',
      '    return {"hello": name, "method": request["method"], "body": request["json"]}',
    ].join('\n')
    await sandbox.updateServices([
      {
        id: 'fn',
        runtime: {
          type: 'function',
          _function: { runtime: 'python', handler: 'handler', source: { type: 'inline', code } },
        },
        ingress: { _public: true, routes: [{ id: 'api', resume: true }] },
      },
    ])
    const view = await until(async () => {
      const v = await sandbox.getServices()
      return v.services[0]?.publishable ? v : undefined
    }, 'the function service to be publishable')
    const host = hostOf(view.services[0]?.publicUrl as string)
    const r = await ingress(server.url, host, '/x?name=s0', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: 1 }),
    })
    expect(r.status).toBe(200)
    expect(r.headers['content-type']).toBe('application/json')
    expect(JSON.parse(r.text)).toEqual({ hello: 's0', method: 'POST', body: { n: 1 } })
    await client.sandboxes.delete(sandbox.id)
  })

  it('refuses a bad service list and changes nothing', async () => {
    const sandbox = await client.sandboxes.claim('default')
    await sandbox.updateServices([{ id: 'a', port: 3000, ingress: { _public: true } }])
    for (const bad of [
      [
        { id: 'a', port: 3000, ingress: { _public: true } },
        { id: 'a', port: 3001, ingress: { _public: true } },
      ],
      [{ id: 'Bad_Name', port: 3000, ingress: { _public: true } }],
      [{ id: 'a--b', port: 3000, ingress: { _public: true } }],
      [{ id: 'm', ingress: { _public: true } }], // a manual service needs its port
      [{ id: 'c', port: 3000, runtime: { type: 'cmd' }, ingress: { _public: true } }],
      [
        {
          id: 'h',
          port: 3000,
          ingress: { _public: true, routes: [{ id: 'r', auth: { mode: 'bearer' }, resume: true }] },
        },
      ],
      [
        {
          id: 'p',
          port: 3000,
          ingress: { _public: true, routes: [{ id: 'r', pathPrefix: '/../x', resume: true }] },
        },
      ],
    ] as never[]) {
      await expect(sandbox.updateServices(bad)).rejects.toMatchObject({
        statusCode: 400,
        code: 'invalid_request',
      })
    }
    expect((await sandbox.getServices()).services.map((s) => s.id)).toEqual(['a'])
    await client.sandboxes.delete(sandbox.id)
  })

  it('starts the services of a claim that takes a warm sandbox', async () => {
    await client.templates.create({
      templateId: 'warm-web',
      spec: {
        mainContainer: { image: 's0/default', resources: { memory: '256Mi' } },
        pool: { minIdle: 1, maxIdle: 1 },
      },
    })
    const idle = async (): Promise<number> => {
      const { rows } = await server.t.tdb.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM sandboxes WHERE status = 'idle' AND template_id = 'warm-web'`,
      )
      return rows[0]?.n ?? 0
    }
    await until(async () => ((await idle()) >= 1 ? true : undefined), 'a warm sandbox', 60_000)
    const warm = await server.t.tdb.db.query<{ id: string }>(
      `SELECT id FROM sandboxes WHERE status = 'idle' AND template_id = 'warm-web'`,
    )
    const warmIds = warm.rows.map((r) => r.id)
    const sandbox = await client.sandboxes.claim('warm-web', {
      config: {
        services: [
          {
            id: 'web',
            port: 8000,
            runtime: { type: 'cmd', command: ['python3', '-m', 'http.server', '8000'], cwd: '/etc' },
            ingress: { _public: true },
          },
        ],
      },
    } as never)
    // The warm one was taken (the pool refills behind it), and its service runs.
    expect(warmIds).toContain(sandbox.id)
    const port = new URL(server.url).port
    const r = await until(async () => {
      const a = await ingress(server.url, `web--${sandbox.id}.localhost:${port}`, '/hostname')
      return a.status === 200 ? a : undefined
    }, 'the warm sandbox service')
    expect(r.text.length).toBeGreaterThan(0)
    await client.sandboxes.delete(sandbox.id)
    await client.templates.delete('warm-web')
  })

  it('takes services at claim, keeps them across pause, and wakes the sandbox on a request', async () => {
    const sandbox = await client.sandboxes.claim('default', {
      config: {
        services: [
          {
            id: 'web',
            port: 8000,
            runtime: { type: 'cmd', command: ['python3', '-m', 'http.server', '8000'], cwd: '/etc' },
            ingress: {
              _public: true,
              routes: [{ id: 'wake', pathPrefix: '/', resume: true, timeoutSeconds: 60 }],
            },
          },
          {
            id: 'sleepy',
            port: 8001,
            runtime: { type: 'cmd', command: ['python3', '-m', 'http.server', '8001'], cwd: '/etc' },
            ingress: { _public: true, routes: [{ id: 'nowake', pathPrefix: '/', resume: false }] },
          },
        ],
      },
    } as never)
    const port = new URL(server.url).port
    const web = `web--${sandbox.id}.localhost:${port}`
    await until(
      async () => ((await ingress(server.url, web, '/hostname')).status === 200 ? true : undefined),
      'web up',
    )
    await client.sandboxes.pauseAndWait(sandbox.id, quick)

    const v = await sandbox.getServices()
    expect(v.services.find((s) => s.id === 'web')?.publishable).toBe(true)
    const sleepy = v.services.find((s) => s.id === 'sleepy')
    expect(sleepy?.publishable).toBe(false)
    expect(sleepy?.publishBlockers?.join(' ')).toContain('route nowake has no resume')

    const refused = await ingress(server.url, `sleepy--${sandbox.id}.localhost:${port}`, '/hostname')
    expect(refused.status).toBe(503)
    expect(refused.text).toContain('does not resume it')
    expect((await client.sandboxes.get(sandbox.id)).status).toBe('paused')

    // The request is held while the sandbox resumes and its service starts again.
    const woken = await ingress(server.url, web, '/hostname')
    expect(woken.status).toBe(200)
    expect(woken.text.trim()).toBe(
      (await sandbox.readFile('/etc/hostname').then((b) => Buffer.from(b).toString())).trim(),
    )
    const after = await client.sandboxes.get(sandbox.id)
    expect(after.status).toBe('running')
    expect(after.runtimeGeneration).toBeGreaterThan(1)

    // A fork takes the services along: its own URL wakes it, and its cmd service starts there.
    const { sandbox: child } = await client.sandboxes.fork(sandbox.id)
    expect((await client.sandboxes.get(child.id)).status).toBe('paused')
    const childWeb = await ingress(server.url, `web--${child.id}.localhost:${port}`, '/hostname')
    expect(childWeb.status).toBe(200)
    expect((await client.sandboxes.get(child.id)).status).toBe('running')
    await client.sandboxes.delete(child.id)
    await client.sandboxes.delete(sandbox.id)
  })
})
