// `s0 template` and `s0 credential-source` in-process against a listening server running real
// sandboxes (runc): templates created from a spec file and from an image, claimed from, captured
// from a sandbox with --wait (the progress line on a terminal), deleted; credential sources
// created and rotated from a secret file and from stdin, the secret never printed, never taken
// from an argument.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { run as credentialSource } from '../../src/cli/credential-source-command.js'
import { main } from '../../src/cli/main.js'
import { run as sandbox } from '../../src/cli/sandbox-command.js'
import { run as template } from '../../src/cli/template-command.js'
import { startSandboxServer, type SandboxTestServer } from '../api/sandbox-fixture.js'
import { runCommand } from '../support/cli.js'

let server: SandboxTestServer
let tmp: string

beforeAll(async () => {
  server = await startSandboxServer()
  tmp = await mkdtemp(path.join(os.tmpdir(), 's0-cli-tpl-'))
  vi.stubEnv('S0_API_URL', server.url)
  vi.stubEnv('S0_TOKEN', server.token)
})

afterAll(async () => {
  vi.unstubAllEnvs()
  await server?.close()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

async function withStdin<T>(text: string, fn: () => Promise<T>): Promise<T> {
  const real = Object.getOwnPropertyDescriptor(process, 'stdin') as PropertyDescriptor
  Object.defineProperty(process, 'stdin', { value: Readable.from([Buffer.from(text)]), configurable: true })
  try {
    return await fn()
  } finally {
    Object.defineProperty(process, 'stdin', real)
  }
}

async function ok(run: (args: string[]) => Promise<number>, ...args: string[]): Promise<string> {
  const r = await runCommand(run, args)
  expect(r.err, args.join(' ')).toBe('')
  expect(r.code, args.join(' ')).toBe(0)
  return r.out
}

describe('s0 template', () => {
  it('lists, creates from a spec file and from an image, claims from it, captures a sandbox, deletes', async () => {
    expect(await ok(template, 'ls')).toMatch(/^default\s+public\s+ready\s/m)
    const listed = JSON.parse(await ok(template, 'ls', '--json')) as { template_id: string }[]
    expect(listed.map((t) => t.template_id)).toEqual(expect.arrayContaining(['default', 'busybox']))

    const spec = path.join(tmp, 'tiny.json')
    await writeFile(
      spec,
      JSON.stringify({
        displayName: 'Tiny',
        mainContainer: { image: 's0/busybox', resources: { memory: '128Mi' } },
        envVars: { GREETING: 'hi' },
      }),
    )
    expect(await ok(template, 'create', 'tiny', '--file', spec)).toBe('tiny\n')
    const got = JSON.parse(await ok(template, 'get', 'tiny')) as {
      scope: string
      spec: { displayName: string }
    }
    expect(got).toMatchObject({ scope: 'team', spec: { displayName: 'Tiny' } })
    const id = (await ok(sandbox, 'claim', 'tiny', '--ttl', '600')).trim()
    expect((await runCommand(sandbox, ['exec', id, '--', 'sh', '-c', 'echo $GREETING'])).out).toBe('hi\n')
    const dup = await runCommand(template, ['create', 'tiny', '--file', spec])
    expect(dup.code).toBe(1)
    expect(dup.err).toMatch(/\[\w+\]$/m)

    expect(await ok(template, 'create', 'bb', '--image', 's0/busybox', '--memory', '256Mi', '--wait')).toBe(
      'bb\n',
    )
    expect(await ok(template, 'ls')).toMatch(/^bb\s+team\s+ready\s+s0\/busybox/m)

    // Captured in the background; --wait draws a progress line on a terminal until it is ready.
    await ok(sandbox, 'exec', id, '--', 'sh', '-c', 'echo captured > /root/mark')
    const tty = process.stderr.isTTY
    process.stderr.isTTY = true
    const cap = await runCommand(template, ['from-sandbox', id, 'captured', '--wait']).finally(
      () => (process.stderr.isTTY = tty),
    )
    expect(cap.code, cap.err).toBe(0)
    expect(cap.out).toBe('captured\n')
    expect(cap.err).toContain('creating template captured: ')
    const child = (await ok(sandbox, 'claim', 'captured', '--ttl', '600')).trim()
    expect((await runCommand(sandbox, ['exec', child, '--', 'cat', '/root/mark'])).out).toBe('captured\n')

    await ok(sandbox, 'rm', child)
    await ok(sandbox, 'rm', id)
    for (const t of ['tiny', 'bb', 'captured']) await ok(template, 'rm', t)
    const gone = await runCommand(template, ['get', 'tiny'])
    expect(gone.code).toBe(1)
    expect(gone.err).toMatch(/not_found/)
    const builtin = await runCommand(template, ['rm', 'default'])
    expect(builtin.code).toBe(1)
  }, 300_000)

  it('refuses bad command lines with the usage', async () => {
    const spec = path.join(tmp, 'any.json')
    await writeFile(spec, '{}')
    for (const args of [
      ['create', 'x'],
      ['create', 'x', '--file', spec, '--image', 'a'],
      ['create', 'x', '--file', spec, '--memory', '1Gi'],
      ['from-sandbox', 'sb-1'],
      ['from-sandbox', 'sb-1', 't', '--timeout', '0'],
      ['get'],
      ['nope'],
    ]) {
      const r = await runCommand(template, args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.err).toMatch(/usage:/)
    }
    await writeFile(spec, '{ nope')
    const bad = await runCommand(template, ['create', 'x', '--file', spec])
    expect(bad.code).toBe(1)
    expect(bad.err).toMatch(/invalid_json/)
  })
})

describe('s0 credential-source', () => {
  const token = 'ghp_cliNeedleToken0123456789'
  const rotated = 'ghp_cliRotatedNeedle9876543210'

  it('creates from a file, rotates from stdin, lists without the secret, deletes', async () => {
    const file = path.join(tmp, 'gh.json')
    await writeFile(file, JSON.stringify({ values: { Authorization: `Bearer ${token}` } }))
    const created = await runCommand(credentialSource, [
      'create',
      'gh',
      '--kind',
      'static_headers',
      '--secret-file',
      file,
    ])
    expect(created).toMatchObject({ code: 0, err: '', out: 'gh (version 1)\n' })
    // The whole spec form, from stdin.
    const updated = await withStdin(
      JSON.stringify({ staticHeaders: { values: { Authorization: `Bearer ${rotated}` } } }),
      () => runCommand(credentialSource, ['update', 'gh', '--secret-stdin']),
    )
    expect(updated).toMatchObject({ code: 0, out: 'gh (version 2)\n' })
    const ls = await ok(credentialSource, 'ls')
    expect(ls).toMatch(/^gh\s+static_headers\s+2\s+\S+/m)
    const json = await ok(credentialSource, 'ls', '--json')
    expect(JSON.parse(json)).toEqual([expect.objectContaining({ name: 'gh', currentVersion: 2 })])
    expect(await ok(credentialSource, 'get', 'gh')).toMatch(/^kind\s+static_headers$/m)
    for (const out of [ls, json, created.out, updated.out]) {
      expect(out).not.toContain(token)
      expect(out).not.toContain(rotated)
    }
    // Through the top-level dispatcher too.
    await ok(main, 'credential-source', 'rm', 'gh')
    expect((await runCommand(credentialSource, ['get', 'gh'])).code).toBe(1)
  })

  it('never takes a secret from an argument', async () => {
    for (const args of [
      ['create', 'gh', '--kind', 'static_headers', '--secret', token],
      ['create', 'gh', '--kind', 'static_headers', '--password', token],
      ['create', 'gh', '--kind', 'static_headers', token],
      ['create', 'gh', '--kind', 'static_headers', `--secret=${token}`, '--secret-stdin'],
      ['update', 'gh', '--token', token],
    ]) {
      const r = await runCommand(credentialSource, args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.err).toMatch(/usage:/)
    }
    const named = await runCommand(credentialSource, [
      'create',
      'gh',
      '--kind',
      'static_headers',
      '--secret',
      token,
    ])
    expect(named.err).toMatch(/never taken from the command line/)
    // Nothing was stored by any of them.
    expect(JSON.parse(await ok(credentialSource, 'ls', '--json'))).toEqual([])
    for (const args of [
      ['create', 'gh', '--kind', 'static_headers'],
      ['create', 'gh', '--kind', 'nope', '--secret-stdin'],
      ['create', 'gh', '--secret-stdin'],
    ]) {
      const r = await runCommand(credentialSource, args)
      expect(r.code, args.join(' ')).toBe(2)
    }
    const notJson = await withStdin(`Bearer ${token}`, () =>
      runCommand(credentialSource, ['create', 'gh', '--kind', 'static_headers', '--secret-stdin']),
    )
    expect(notJson.code).toBe(1)
    expect(notJson.err).toMatch(/not JSON/)
    expect(notJson.err).not.toContain(token)
  })
})
