// `s0 sandbox` and `s0 events` in-process against a listening server running real sandboxes
// (runc): claim, list, exec with its exit code, pause/resume/fork/snapshot, events and logs
// (listed, exported as JSON lines and verified offline, tampered and refused), rm, bad input.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { run as events } from '../../src/cli/events-command.js'
import { EventSigner } from '../../src/core/event-signing.js'
import { run as sandbox } from '../../src/cli/sandbox-command.js'
import { startSandboxServer, type SandboxTestServer } from '../api/sandbox-fixture.js'
import { runCommand } from '../support/cli.js'

let server: SandboxTestServer
let tmp: string

beforeAll(async () => {
  server = await startSandboxServer()
  tmp = await mkdtemp(path.join(os.tmpdir(), 's0-cli-sbx-'))
  vi.stubEnv('S0_API_URL', server.url)
  vi.stubEnv('S0_TOKEN', server.token)
})

afterAll(async () => {
  vi.unstubAllEnvs()
  await server?.close()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

async function ok(...args: string[]): Promise<string> {
  const r = await runCommand(sandbox, args)
  expect(r.err, `s0 sandbox ${args.join(' ')}`).toBe('')
  expect(r.code, `s0 sandbox ${args.join(' ')}`).toBe(0)
  return r.out
}

describe('s0 sandbox', () => {
  it('claims, runs, pauses, resumes, forks, snapshots, shows events and logs, and deletes', async () => {
    const id = (await ok('claim', 'default', '--ttl', '600')).trim()
    expect(id).toMatch(/^sb-[0-9a-f]{12}$/)
    expect(await ok('ls')).toMatch(new RegExp(`^${id}\\s+default\\s+running`, 'm'))
    expect(await ok('get', id)).toMatch(/status\s+running/)

    const r = await runCommand(sandbox, ['exec', id, '--', 'sh', '-c', 'echo out; echo err >&2; exit 7'])
    expect(r).toMatchObject({ code: 7, out: 'out\n', err: 'err\n' })
    const snap = (await ok('snapshot', id, '--name', 'cli')).trim()
    expect(snap).toMatch(/^rootfs-snapshot-/)
    expect(await ok('pause', id)).toBe('paused\n')
    const child = (await ok('fork', id)).trim()
    expect(child).toMatch(/^sb-/)
    expect(await ok('resume', id)).toBe('resumed\n')

    const listed = await ok('events', id, '--all')
    expect(listed).toMatch(/lifecycle\s+sandbox\.pause\/result\s+succeeded\s+api_key:\S+\s+verified/)
    expect(await ok('logs', id, '--stream', 'stderr')).toBe('err\n')
    const exported = await ok('events', id, '--all', '--json')
    const file = path.join(tmp, 'events.ndjson')
    await writeFile(file, exported)
    // The fixture's event log signs with a key of its own; a server's is under its state directory.
    const pub = server.events.signer.verifier.publicKey.toString('base64')
    vi.stubEnv('S0_STATE_DIR', tmp)
    const missing = await runCommand(events, ['public-key'])
    expect(missing.code).toBe(1)
    expect(missing.err).toMatch(/no event-signing key/)
    const own = await EventSigner.load(tmp)
    expect((await runCommand(events, ['public-key'])).out).toBe(
      `${own.verifier.publicKey.toString('base64')}  ${own.keyId}\n`,
    )
    const verified = await runCommand(events, ['verify', file, '--public-key', pub])
    expect(verified.code).toBe(0)
    expect(verified.out).toMatch(/^(\d+) verified, 0 invalid, 0 unavailable/m)
    const lines = exported.trim().split('\n')
    const edited = JSON.parse(lines[0] as string) as { outcome: string }
    edited.outcome = edited.outcome === 'failed' ? 'succeeded' : 'failed'
    await writeFile(file, [JSON.stringify(edited), ...lines.slice(1)].join('\n'))
    const refused = await runCommand(events, ['verify', file, '--public-key', pub])
    expect(refused.code).toBe(1)
    expect(refused.out).toMatch(/^invalid: /m)

    await ok('rm', child)
    await ok('rm', id)
    const gone = await runCommand(sandbox, ['get', id])
    expect(gone.code).toBe(1)
    expect(gone.err).toMatch(/not_found/)
  })

  it('refuses bad command lines with the usage', async () => {
    for (const args of [['exec', 'sb-000000000000', 'ls'], ['claim', '--ttl', '-1'], ['nope'], ['events']]) {
      const r = await runCommand(sandbox, args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.err).toMatch(/usage:/)
    }
  })
})
