// `s0 sandbox` and `s0 events` in-process against a listening server running real sandboxes
// (runc): claim, list, exec with its exit code, pause/resume/fork/snapshot, events and logs
// (listed, exported as JSON lines and verified offline, tampered and refused), rm, bad input;
// the REPL over piped stdin, cp both ways, metrics, rootfs restore, the network policy.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { run as events } from '../../src/cli/events-command.js'
import { EventSigner } from '../../src/core/event-signing.js'
import { run as sandbox } from '../../src/cli/sandbox-command.js'
import { startSandboxServer, type SandboxTestServer } from '../api/sandbox-fixture.js'
import { runCommand } from '../support/cli.js'

let server: SandboxTestServer
let tmp: string

beforeAll(async () => {
  server = await startSandboxServer({ metrics: { intervalMs: 200 } })
  tmp = await mkdtemp(path.join(os.tmpdir(), 's0-cli-sbx-'))
  vi.stubEnv('S0_API_URL', server.url)
  vi.stubEnv('S0_TOKEN', server.token)
})

afterAll(async () => {
  vi.unstubAllEnvs()
  await server?.close()
  if (tmp) await rm(tmp, { recursive: true, force: true })
})

/** Runs `fn` with `text` as process.stdin (a pipe, not a terminal). */
async function withStdin<T>(text: string, fn: () => Promise<T>): Promise<T> {
  const real = Object.getOwnPropertyDescriptor(process, 'stdin') as PropertyDescriptor
  Object.defineProperty(process, 'stdin', { value: Readable.from([Buffer.from(text)]), configurable: true })
  try {
    return await fn()
  } finally {
    Object.defineProperty(process, 'stdin', real)
  }
}

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
    // Output streams while the command runs: it waits (bounded) for a file the test writes only
    // once it has seen the first line on stdout.
    const streamed = runCommand(sandbox, [
      'exec',
      id,
      '--',
      'sh',
      '-c',
      'echo first; i=0; while [ ! -e /tmp/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; ls /tmp/go && echo second',
    ])
    // runCommand captures stdout: see each write it takes.
    const capture = process.stdout.write
    const seenFirst = new Promise<void>((resolve) => {
      process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        if (String(chunk).includes('first')) resolve()
        return (capture as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest)
      }) as typeof process.stdout.write
    })
    void seenFirst.then(() =>
      fetch(`${server.url}/api/v1/sandboxes/${id}/files?path=/tmp/go`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/octet-stream' },
        body: 'go',
      }),
    )
    expect(await streamed).toMatchObject({ code: 0, out: 'first\n/tmp/go\nsecond\n' })
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

  it('runs a REPL from piped stdin: state kept across lines, blocks, errors; bash too', async () => {
    const id = (await ok('claim', 'default', '--ttl', '600')).trim()
    const script =
      'x = 41\nprint(x + 1)\ndef f(a):\n    return a * 2\n\nprint(f(21))\nraise ValueError("boom")\nprint("after")\n'
    const r = await withStdin(script, () => runCommand(sandbox, ['run', id]))
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^42\n42\n[\s\S]*ValueError: boom\n[\s\S]*after\n$/)
    const asJson = await withStdin('echo $((6 * 7))', () =>
      runCommand(sandbox, ['run', id, '--language', 'bash', '--json']),
    )
    expect(asJson.code).toBe(0)
    expect(JSON.parse(asJson.out.trim())).toMatchObject({ output_raw: '42\n' })
    // Each session's context is deleted when it ends.
    const { contexts } = (
      await fetch(`${server.url}/api/v1/sandboxes/${id}/contexts`, {
        headers: { authorization: `Bearer ${server.token}` },
      }).then((res) => res.json() as Promise<{ data: { contexts: unknown[] } }>)
    ).data
    expect(contexts).toEqual([])
    const bad = await withStdin('', () => runCommand(sandbox, ['run', id, '--language', 'cobol']))
    expect(bad.code).toBe(1)
    expect(bad.err).toMatch(/cobol/)
    await ok('rm', id)
  })

  it('runs a REPL on a terminal: prompts, Ctrl-C interrupts the running statement, Ctrl-D leaves', async () => {
    const id = (await ok('claim', 'default', '--ttl', '600')).trim()
    // A terminal as readline sees one: a TTY input in raw mode, keys as bytes.
    const input = Object.assign(new PassThrough(), { isTTY: true, setRawMode: () => input })
    const real = Object.getOwnPropertyDescriptor(process, 'stdin') as PropertyDescriptor
    const tty = process.stdout.isTTY
    Object.defineProperty(process, 'stdin', { value: input, configurable: true })
    process.stdout.isTTY = true
    try {
      const session = runCommand(sandbox, ['run', id])
      input.write('x = 6\r')
      input.write('import time; print("sleeping", flush=True); time.sleep(60)\r')
      // Bounded wait until the statement runs (its output reaches the sandbox's logs).
      for (let i = 0; i < 150; i++) {
        const res = await fetch(`${server.url}/api/v1/sandboxes/${id}/observability/logs`, {
          headers: { authorization: `Bearer ${server.token}` },
        })
        const { data } = (await res.json()) as { data: { logs: { message: string }[] } }
        if (data.logs.some((l) => l.message.includes('sleeping'))) break
        await new Promise((r) => setTimeout(r, 200))
      }
      input.write('\x03')
      input.write('print(x * 7)\r')
      input.write('\x04')
      const r = await session
      expect(r.err).toBe('')
      expect(r.code).toBe(0)
      expect(r.out).toContain('>>> ')
      expect(r.out).toContain('KeyboardInterrupt')
      expect(r.out).toMatch(/42\r?\n/)
    } finally {
      Object.defineProperty(process, 'stdin', real)
      process.stdout.isTTY = tty
    }
    await ok('rm', id)
  })

  it('copies files both ways, restores the root file system, shows metrics, gets and sets the network policy', async () => {
    const id = (await ok('claim', 'default', '--ttl', '600')).trim()
    const local = path.join(tmp, 'up.bin')
    const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7)
    await writeFile(local, data)
    await ok('cp', local, `${id}:/root/`)
    expect(
      (await runCommand(sandbox, ['exec', id, '--', 'sh', '-c', 'wc -c < /root/up.bin'])).out.trim(),
    ).toBe(String(data.length))
    // On a terminal a progress line is drawn on stderr (and cleared); the file is whole.
    const tty = process.stderr.isTTY
    process.stderr.isTTY = true
    const down = await runCommand(sandbox, ['cp', `${id}:/root/up.bin`, path.join(tmp, 'down.bin')]).finally(
      () => (process.stderr.isTTY = tty),
    )
    expect(down.code).toBe(0)
    expect(down.err.startsWith('\r\x1b[Kdownloading /root/up.bin: ')).toBe(true)
    expect(down.err).toContain('of 3.0 MiB')
    expect(down.err.endsWith('\r\x1b[K')).toBe(true)
    expect((await readFile(path.join(tmp, 'down.bin'))).equals(data)).toBe(true)
    await withStdin('from stdin\n', () => ok('cp', '-', `${id}:/tmp/s.txt`))
    expect(await ok('cp', `${id}:/tmp/s.txt`, '-')).toBe('from stdin\n')
    const missing = await runCommand(sandbox, ['cp', `${id}:/nope`, path.join(tmp, 'x')])
    expect(missing.code).toBe(1)
    expect(missing.err).toMatch(/not_found|no such/i)
    expect((await runCommand(sandbox, ['cp', 'a', 'b'])).code).toBe(2)

    // restore: a file written after the snapshot is gone afterwards.
    const snap = (await ok('snapshot', id, '--name', 'before')).trim()
    await ok('exec', id, '--', 'sh', '-c', 'echo later > /root/later.txt')
    const running = await runCommand(sandbox, ['restore', id, snap])
    expect(running.code).toBe(1)
    expect(running.err).toMatch(/paused/)
    await ok('pause', id)
    expect(await ok('restore', id, snap)).toMatch(/^restored/)
    await ok('resume', id)
    const after = await runCommand(sandbox, ['exec', id, '--', 'ls', '/root'])
    expect(after.out).toContain('up.bin')
    expect(after.out).not.toContain('later.txt')

    // metrics: sampled every 200 ms by this server; bounded wait for the first point.
    let text = ''
    for (let i = 0; i < 100 && !/sandbox\.memory\.\S+\s+\S*\s+\d/.test(text); i++) {
      text = await ok('metrics', id)
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(text).toMatch(/^METRIC\s+DIMENSIONS\s+VALUE\s+UNIT\s+TIME/)
    expect(text).toMatch(/sandbox\.memory\.\S+\s+\S*\s*\d+/)
    expect(text).toMatch(/^freshness: /m)
    const one = JSON.parse(await ok('metrics', id, '--metrics', 'sandbox.cpu.usage', '--json')) as {
      series: { metric: string }[]
    }
    expect(new Set(one.series.map((s) => s.metric))).toEqual(new Set(['sandbox.cpu.usage']))

    const policy = JSON.parse(await ok('network', 'get', id)) as { mode: string }
    expect(policy.mode).toBeTruthy()
    const file = path.join(tmp, 'policy.json')
    await writeFile(file, JSON.stringify({ mode: 'allow-all' }))
    expect(await ok('network', 'set', id, '--file', file)).toBe('network policy replaced\n')
    expect(JSON.parse(await ok('network', 'get', id))).toMatchObject({ mode: 'allow-all' })
    await withStdin(JSON.stringify({ mode: 'block-all' }), () => ok('network', 'set', id, '--file', '-'))
    expect(JSON.parse(await ok('network', 'get', id))).toMatchObject({ mode: 'block-all' })
    await writeFile(file, '{ not json')
    const badJson = await runCommand(sandbox, ['network', 'set', id, '--file', file])
    expect(badJson.code).toBe(1)
    expect(badJson.err).toMatch(/invalid_json/)
    await writeFile(file, JSON.stringify({ mode: 'sideways' }))
    expect((await runCommand(sandbox, ['network', 'set', id, '--file', file])).code).toBe(1)
    expect((await runCommand(sandbox, ['network', 'set', id])).code).toBe(2)
    expect((await runCommand(sandbox, ['network', 'drop', id])).code).toBe(2)
    await ok('rm', id)
  })
})
